"""The whole pipeline on the production stack: a real redis-server (online store), PostgreSQL
(the Feast SQL registry and the MLflow tracking server's store) and `mlflow server` (model
registry, artifacts proxied), selected by the production profile with hosts only from the
environment. One workspace runs ingest ... promote, batch and drift; a second workspace
directory (another host) has no Feast registry file and no MLflow store: it reads the
features and serves through the servers alone, and promotes and rolls back while the API of
the first follows the registry's aliases on every worker."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pandas as pd
import pytest

from crmscore import steps
from crmscore.settings import PROFILE_VAR, Settings, load_settings
from features.catalog import Workspace
from features.feast_repo import CUSTOMER_VIEW
from features.model_spec import CHALLENGER, CHAMPION, model_spec
from features.online import OnlineFeatures
from features.store import open_store
from serving.config import REDIS_URL_VAR, REGISTRY_URL_VAR
from tests.integration.conftest import USER_KEY, Trained, serving
from tests.servers import database_uri, mlflow_process, postgres_server, stop

pytestmark = pytest.mark.slow

# Workers poll the registry every second here (the default is 10 s).
POLL_SETTINGS = "    reload_poll_seconds: 1\n"
# A guard against a reload that never comes, not a performance limit.
GUARD_SECONDS = 600


@dataclass
class Stack:
    """The servers and the environment a host of the production profile reads."""

    env: dict[str, str]
    mlflow: subprocess.Popen[bytes]  # a test cuts the registry off with it
    dataset: Path

    def settings(self, workspace: Path) -> Settings:
        """A host's settings: the production profile, hosts from the environment."""
        return load_settings(workspace, dataset=str(self.dataset), env={**os.environ, **self.env})


@pytest.fixture(scope="module")
def stack(
    trained: Trained, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """Its own PostgreSQL and MLflow server (the registry starts empty, and a test stops the
    server), the session's redis-server (a database of its own)."""
    folder = tmp_path_factory.mktemp("production")
    dataset = folder / "synthetic.yaml"
    dataset.write_text(trained.dataset.read_text() + POLL_SETTINGS)
    with postgres_server() as database, mlflow_process(database, folder) as (url, process):
        env = {
            PROFILE_VAR: "production",
            "MLFLOW_TRACKING_URI": url,
            REDIS_URL_VAR: f"{redis_url},db=9",
            REGISTRY_URL_VAR: database_uri(database, "feast"),
        }
        yield Stack(env, process, dataset)


@pytest.fixture(scope="module")
def pipeline(stack: Stack, trained: Trained, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """ingest ... promote, then batch scores and drift, on the production stack, with the
    same data as the embedded `trained` workspace."""
    settings = stack.settings(tmp_path_factory.mktemp("trainer") / "ws")
    assert settings.feast.online_store == "redis" and settings.feast.registry == "sql"
    for _, step in steps.PIPELINE:
        step(settings)
    steps.score_batch(settings, pd.Timestamp(trained.latest).date())
    return settings


def test_the_pipeline_on_the_production_stack_answers_as_the_embedded_one(
    pipeline: Settings, trained: Trained
) -> None:
    # Nothing of Feast's registry or MLflow is kept in the workspace.
    assert not pipeline.paths.feast_registry.exists()
    assert not pipeline.paths.mlflow_dir.exists()
    production = pd.read_parquet(pipeline.paths.scores_file(trained.latest))
    embedded = pd.read_parquet(Workspace(trained.workspace).scores_file(trained.latest))
    assert len(production) > 300
    versions = [c for c in embedded.columns if "version" in c]
    pd.testing.assert_frame_equal(
        production.drop(columns=versions), embedded.drop(columns=versions)
    )
    drift = steps.drift(pipeline, dashboard=False).as_dict()
    assert {m["model"] for m in drift["models"]} >= {"churn", "clv"}


def test_a_second_host_reads_the_features_through_the_sql_registry(
    pipeline: Settings, stack: Stack, tmp_path: Path
) -> None:
    other = stack.settings(tmp_path / "other")
    reader = OnlineFeatures(open_store(other.feast, other.paths))
    writer = OnlineFeatures(open_store(pipeline.feast, pipeline.paths))
    batch = pd.read_parquet(pipeline.paths.scores_files()[0])
    ids = [(str(c),) for c in batch["customer_id"]]
    names = ["recency_days", "monetary_365d", "value_tier"]
    rows = reader.read(CUSTOMER_VIEW, ids, names)
    assert sum(r is not None for r in rows) > 300
    assert rows == writer.read(CUSTOMER_VIEW, ids, names)
    assert not other.paths.feast_registry.exists()  # the views came from PostgreSQL


def _versions_seen(url: str, ids: list[str], calls: int) -> set[str]:
    """The churn versions of `calls` answers, each on a new connection (the kernel spreads
    new connections over the workers)."""
    seen = set()
    for _ in range(calls):
        response = httpx.post(
            f"{url}/v1/score",
            json={"customer_ids": ids},
            headers={"Authorization": f"Bearer {USER_KEY}"},
            timeout=60,
        )
        assert response.status_code == 200, response.text
        seen |= {a["model_versions"]["churn"] for a in response.json()["scores"]}
    return seen


def _converges(url: str, ids: list[str], version: str) -> float:
    """Seconds until 40 answers in a row carry `version` (fails after the guard)."""
    started = time.monotonic()
    while time.monotonic() - started < GUARD_SECONDS:
        if _versions_seen(url, ids, 40) == {version}:
            return time.monotonic() - started
        time.sleep(0.5)
    pytest.fail(f"the workers did not all serve {version} within {GUARD_SECONDS} s")


def _children(pid: int) -> list[int]:
    listed = Path(f"/proc/{pid}/task/{pid}/children")
    found = [int(p) for p in listed.read_text().split()] if listed.exists() else []
    return found + [g for c in found for g in _children(c)]


@pytest.fixture
def api(pipeline: Settings, stack: Stack, tmp_path: Path) -> Iterator[tuple[str, Settings]]:
    """`crmscore serve` of a second workspace directory, on the servers alone."""
    other = stack.settings(tmp_path / "api")
    base = ["--workspace", str(other.workspace), "--dataset", str(stack.dataset)]
    with serving(base, tmp_path / "server.log", stack.env) as url:
        yield url, other


def test_every_worker_follows_promotions_and_rollbacks_from_another_host(
    api: tuple[str, Settings], pipeline: Settings, stack: Stack, tmp_path: Path
) -> None:
    url, served = api
    batch = pd.read_parquet(pipeline.paths.scores_file(steps.latest_cutoff(pipeline)))
    ids = [str(c) for c in batch["customer_id"].iloc[:20]]
    promoter = stack.settings(tmp_path / "promoter")
    client = steps.mlflow_client(promoter)
    name = model_spec("churn").registry_name
    first = client.get_model_version_by_alias(name, CHAMPION)
    assert _versions_seen(url, ids, 10) == {f"{first.version}@champion"}

    # The answers of the server equal the batch scores.
    response = httpx.post(
        f"{url}/v1/score",
        json={"customer_ids": ids},
        headers={"Authorization": f"Bearer {USER_KEY}"},
        timeout=60,
    )
    expected = batch.set_index("customer_id")
    for answer in response.json()["scores"]:
        row = expected.loc[answer["customer_id"]]
        assert answer["churn"]["probability"] == pytest.approx(row["churn_probability"], abs=1e-6)
        assert answer["clv"]["value"] == pytest.approx(row["clv"], abs=0.01)

    # Promote a second version from another host: every worker follows.
    second = client.create_model_version(name, f"models:/{name}/{first.version}", first.run_id)
    client.set_registered_model_alias(name, CHALLENGER, second.version)
    assert steps.promote(promoter, ["churn"])["decisions"][0]["promoted"]
    promoted_after = _converges(url, ids, f"{second.version}@champion")
    assert steps.rollback(promoter, "churn")["promoted"]
    rolled_back_after = _converges(url, ids, f"{first.version}@champion")
    print(f"converged in {promoted_after:.1f} s (promote), {rolled_back_after:.1f} s (rollback)")

    # The registry cut off: the workers keep serving the loaded models and say why.
    for pid in _children(stack.mlflow.pid):
        os.kill(pid, 9)
    stop(stack.mlflow)
    log = served.paths.server_log
    started = time.monotonic()
    while "could not be polled" not in log.read_text():
        assert time.monotonic() - started < GUARD_SECONDS, "no registry error was logged"
        time.sleep(0.5)
    assert _versions_seen(url, ids, 10) == {f"{first.version}@champion"}
