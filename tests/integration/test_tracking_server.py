"""An MLflow tracking server on PostgreSQL with proxied artifacts: one workspace trains
through it and keeps nothing of MLflow locally; a second workspace directory (standing in
for another host) promotes, rolls back, serves, batch-scores and checks drift using only
the server."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import httpx
import pandas as pd
import pytest

from crmscore import steps
from crmscore.settings import Settings, load_settings
from features.model_spec import CHALLENGER, CHAMPION, model_spec
from tests.integration.conftest import USER_KEY, Trained, serving

pytestmark = pytest.mark.slow


def _host(trained: Trained, folder: Path, url: str) -> Settings:
    """A copy of the trained workspace without its MLflow store, on the tracking server."""
    shutil.copytree(
        trained.workspace, folder, symlinks=True, ignore=shutil.ignore_patterns("mlflow")
    )
    settings = load_settings(
        folder, dataset=str(trained.dataset), env={**os.environ, "MLFLOW_TRACKING_URI": url}
    )
    steps.apply(settings)  # the Feast sources of this folder
    return settings


def test_a_second_host_promotes_serves_and_scores_through_the_server(
    trained: Trained, tracking_server: tuple[str, Path], tmp_path: Path
) -> None:
    url, artifacts = tracking_server
    trainer = _host(trained, tmp_path / "trainer", url)
    other = _host(trained, tmp_path / "other", url)

    trained_models = steps.train(trainer)
    assert {m["model"] for m in trained_models["models"]} == {"churn", "clv", "nbo"}
    # The server chose the artifact locations and holds the artifacts.
    assert not trainer.paths.mlflow_dir.exists()
    client = steps.mlflow_client(other)
    for kind in ("churn", "clv", "nbo"):
        experiment = client.get_experiment_by_name(f"crmscore-{kind}")
        assert experiment.artifact_location.startswith("mlflow-artifacts:")
    assert len(list(artifacts.rglob("MLmodel"))) >= 3

    # Promote and roll back from the other host.
    name = model_spec("churn").registry_name
    first = client.get_model_version_by_alias(name, CHAMPION)
    # A second version of the same model: a registry-level copy the server resolves.
    second = client.create_model_version(name, f"models:/{name}/{first.version}", first.run_id)
    client.set_registered_model_alias(name, CHALLENGER, second.version)
    decision = steps.promote(other, ["churn"])["decisions"][0]
    assert decision["promoted"], decision
    assert client.get_model_version_by_alias(name, CHAMPION).version == second.version
    assert steps.rollback(other, "churn")["promoted"]
    assert client.get_model_version_by_alias(name, CHAMPION).version == first.version

    # Batch scores on both hosts are the same; the API of the other host answers the same.
    as_of = pd.Timestamp(trained.latest).date()
    for host in (trainer, other):
        steps.score_batch(host, as_of)
    batch = pd.read_parquet(other.paths.scores_file(trained.latest))
    pd.testing.assert_frame_equal(batch, pd.read_parquet(trainer.paths.scores_file(trained.latest)))
    ids = [str(c) for c in batch["customer_id"].iloc[:50]]
    base = ["--workspace", str(other.workspace), "--dataset", str(trained.dataset)]
    log = tmp_path / "server.log"
    with serving(base, log, {"MLFLOW_TRACKING_URI": url}) as api:
        headers = {"Authorization": f"Bearer {USER_KEY}"}
        response = httpx.post(
            f"{api}/v1/score", json={"customer_ids": ids}, headers=headers, timeout=60
        )
    assert response.status_code == 200, response.text
    expected = batch.set_index("customer_id")
    for answer in response.json()["scores"]:
        row = expected.loc[answer["customer_id"]]
        assert answer["churn"]["probability"] == pytest.approx(row["churn_probability"], abs=1e-6)
        assert answer["clv"]["value"] == pytest.approx(row["clv"], abs=0.01)
        assert answer["model_versions"]["churn"] == f"{first.version}@champion"

    # Drift from the other host reads each model's reference through the server.
    drift = steps.drift(other, dashboard=False).as_dict()
    assert {m["model"] for m in drift["models"]} >= {"churn", "clv"}
    assert not other.paths.mlflow_dir.exists()
