"""Drift reports on the real Online Retail features: injected drift is found and named,
random halves of one period raise nothing, odd columns give a report, not a crash; and the
CLI end to end against a real MLflow store."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from crmscore.cli import app
from crmscore.settings import load_settings
from features.catalog import Workspace
from features.config import FeatureParams
from features.feast_repo import CUSTOMER_VIEW, SERVICE_FEATURES
from features.ingest import ingest
from features.model_spec import model_spec
from features.names import CUSTOMER_ID, EVENT_TIMESTAMP
from features.privacy import resolve_id_key
from features.publish import publishing
from features.snapshots import build_snapshots, read_tables
from monitoring.config import MonitoringParams
from monitoring.decision import RETRAIN, read_decision
from monitoring.drift import drift_check
from monitoring.privacy import hash_ids
from serving.registry import configure, default_tracking_uri

pytestmark = pytest.mark.realdata

CUTOFF = pd.Timestamp("2011-09-01", tz="UTC")
CLV_FEATURES = SERVICE_FEATURES["clv_v1"]["customer_features"]


@pytest.fixture(scope="module")
def snapshot(shared_datasets: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Online Retail ingested and featurised at one cutoff: a workspace's features folder."""
    ws = tmp_path_factory.mktemp("ws")
    settings = load_settings(workspace=ws, dataset="online_retail", env={})
    ingest(settings.dataset, settings.data_root, settings.paths)
    params = FeatureParams(cutoffs=[CUTOFF.date()], partitions=settings.features.partitions)
    build_snapshots(
        read_tables(settings.paths), params, settings.labels, settings.segments, settings.paths
    )
    return settings.paths.snapshot_dir


def _score(frame: pd.DataFrame) -> np.ndarray:
    """A deterministic stand-in for a model: falls with recency, rises with frequency."""
    z = -frame["recency_days"].fillna(365) / 60 + np.log1p(frame["frequency_365d"].fillna(0))
    return np.asarray(1 / (1 + np.exp(-z)))


@pytest.fixture(scope="module")
def features(snapshot: Path) -> pd.DataFrame:
    frame = pd.read_parquet(snapshot / "customer_features.parquet")
    frame = frame[frame[EVENT_TIMESTAMP] == CUTOFF]
    # By customer: the random halves must not depend on the file's (partition) order.
    frame = frame.sort_values(CUSTOMER_ID).reset_index(drop=True)
    frame["prediction"] = _score(frame)
    return frame


def _halves(frame: pd.DataFrame, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    mask = np.random.default_rng(seed).random(len(frame)) < 0.5
    return frame[mask].reset_index(drop=True), frame[~mask].reset_index(drop=True)


def test_random_halves_of_one_period_raise_no_alarm(features: pd.DataFrame) -> None:
    reference, current = _halves(features, 1)
    result = drift_check(reference, current, CLV_FEATURES, MonitoringParams(), "clv")
    s = result.summary
    assert s["features_tested"] >= 30  # the real columns were tested, not skipped
    assert s["drifted_features"] == []
    assert not s["prediction"]["drifted"]
    assert result.alarms == [] and s["status"] == "ok"
    # Online Retail has no demographics: those columns are empty on both sides, and said so.
    assert "age_band" in s["empty_in_both"]


def test_injected_drift_is_detected_and_named(features: pd.DataFrame) -> None:
    reference, current = _halves(features, 3)
    current = current.copy()
    current["recency_days"] = current["recency_days"] + 60  # customers stopped coming
    rng = np.random.default_rng(0)
    new = rng.random(len(current)) < 0.2
    current["country"] = current["country"].astype(object).where(~new, "Atlantis")
    current["monetary_90d"] = np.nan  # a broken upstream join
    current["avg_basket_items_365d"] = "n/a"  # a column that turned into text
    current = current.drop(columns=["tenure_days"])  # a column that disappeared
    current["prediction"] = _score(current)

    s = drift_check(reference, current, CLV_FEATURES, MonitoringParams(), "clv").summary
    assert s["status"] == "alarm"
    assert "recency_days" in s["drifted_features"]
    assert s["prediction"]["drifted"]  # the score follows recency
    issues = s["quality_issues"]
    assert any(i.startswith("unseen_categories") and "Atlantis" in i for i in issues["country"])
    assert any(i.startswith("empty") for i in issues["monetary_90d"])
    assert any(i.startswith("not_numeric") for i in issues["avg_basket_items_365d"])
    assert any(i.startswith("missing_column") for i in issues["tenure_days"])
    named = " ".join(s["alarms"])
    for column in ("country", "monetary_90d", "avg_basket_items_365d", "tenure_days"):
        assert column in named
    # Untouched columns are not blamed.
    assert "frequency_365d" not in s["drifted_features"]
    assert "frequency_365d" not in issues


def test_odd_columns_give_a_report_not_a_crash(features: pd.DataFrame, tmp_path: Path) -> None:
    reference, current = _halves(features, 4)
    reference, current = reference.copy(), current.copy()
    reference["monetary_30d"] = np.nan  # empty in the reference only
    current["frequency_30d"] = 3  # constant now
    reference["gap_std_days"] = 1.5  # constant in the reference, varied now
    current["rfm_segment"] = "Never seen"  # every row a new category
    current["value_tier"] = None  # categorical, empty now
    result = drift_check(reference, current, CLV_FEATURES, MonitoringParams(), "clv")
    s = result.summary
    assert "monetary_30d" in s["not_tested"]
    assert any(i.startswith("constant") for i in s["quality_issues"]["frequency_30d"])
    assert s["features"]["gap_std_days"]["drift"]["drifted"]
    assert s["features"]["rfm_segment"]["unseen_share"] == 1.0
    assert any(i.startswith("empty") for i in s["quality_issues"]["value_tier"])
    html = tmp_path / "r.html"
    result.snapshot.save_html(str(html))
    assert html.stat().st_size > 10_000


def _register_reference(client: mlflow.MlflowClient, ws: Path, reference: pd.DataFrame) -> str:
    """A training run of crmscore-clv with its reference artifact, registered as @champion."""
    # the artifacts stay in the test's workspace (an experiment made without a location
    # would write them to ./mlruns in the current folder)
    experiment = mlflow.create_experiment("crmscore-clv", (ws / "artifacts").as_uri())
    with mlflow.start_run(experiment_id=experiment) as run:
        path = ws / "reference.parquet"
        reference.to_parquet(path, index=False)
        mlflow.log_artifact(str(path), artifact_path="reference")
        mlflow.log_metrics({"model_mae": 500.0, "model_top20_capture": 0.6})
    name = model_spec("clv").registry_name
    client.create_registered_model(name)
    run_id = run.info.run_id
    version = client.create_model_version(name, f"runs:/{run_id}/reference", run_id)
    client.set_registered_model_alias(name, "champion", version.version)
    return str(version.version)


def _workspace(tmp_path: Path, snapshot: Path, current: pd.DataFrame, version: str) -> Path:
    ws = tmp_path / "ws"
    paths = Workspace(ws)
    feats = current.drop(columns=["prediction"])
    with publishing(paths.snapshot_versions) as staged:
        feats.to_parquet(paths.staged(paths.snapshot_versions, staged).snapshot(CUSTOMER_VIEW))
    scores = pd.DataFrame(
        {
            CUSTOMER_ID: current[CUSTOMER_ID],
            "as_of": CUTOFF,
            "clv": current["prediction"],
            "churn_probability": 0.5,
            "clv_model_version": f"{version}@champion",
        }
    )
    day = str(CUTOFF.date())
    with publishing(paths.scores_versions(day)) as staged:
        scores.to_parquet(paths.staged(paths.scores_versions(day), staged).scores_file(day))
    return ws


def test_cli_reports_alarms_writes_the_decision_and_retrain_reads_it(
    features: pd.DataFrame, snapshot: Path, tmp_path: Path
) -> None:
    reference, current = _halves(features, 5)
    ref = reference[[*CLV_FEATURES, "prediction"]].copy()
    # No key configured: monitoring hashes with the workspace's key (made here first).
    key = resolve_id_key("", Workspace(tmp_path / "ws"))
    ref.insert(0, "customer_hash", hash_ids(reference[CUSTOMER_ID], key))
    ref.insert(1, EVENT_TIMESTAMP, CUTOFF)
    ref["target"] = 100.0
    shifted = current.copy()
    shifted["recency_days"] = shifted["recency_days"] + 90
    shifted["prediction"] = _score(shifted)
    ws = _workspace(tmp_path, snapshot, shifted, "1")
    client = configure(default_tracking_uri(Workspace(ws)))
    version = _register_reference(client, ws, ref)
    assert version == "1"

    runner = CliRunner()
    result = runner.invoke(app, ["--workspace", str(ws), "monitor", "drift", "--model", "clv"])
    assert result.exit_code == 1, result.output
    answer = json.loads(result.stdout)
    assert answer["decision"] == RETRAIN
    assert "recency_days" in answer["models"][0]["drifted_features"]
    report = Path(answer["models"][0]["report"])
    assert report.exists() and report.suffix == ".html"
    summary = json.loads(Path(answer["models"][0]["summary"]).read_text())
    assert summary["reference"]["version"] == "1"
    assert summary["current"]["as_of"] == str(CUTOFF.date())
    # No raw customer id reaches the outputs.
    raw = str(features[CUSTOMER_ID].iloc[0])
    assert f'"{raw}"' not in Path(answer["models"][0]["summary"]).read_text()
    decision = read_decision(ws / "monitoring" / "decision.json")
    assert decision is not None and decision.recommended and decision.models == ["clv"]

    # The same period without the shift: ok, exit 0, and the decision flips back.
    fine = _workspace(tmp_path / "b", snapshot, current.assign(prediction=_score(current)), "1")
    configure(default_tracking_uri(Workspace(fine)))
    _register_reference(mlflow.MlflowClient(), fine, ref)
    result = runner.invoke(app, ["--workspace", str(fine), "monitor", "drift", "--model", "clv"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["decision"] == "ok"
    result = runner.invoke(app, ["--workspace", str(fine), "retrain", "--if-recommended"])
    assert result.exit_code == 0 and "retrain not needed" in result.stdout
    ui = runner.invoke(app, ["--workspace", str(fine), "monitor", "ui", "--print-only"])
    assert ui.exit_code == 0 and "evidently" in ui.stdout


def test_cli_bad_input_names_the_problem(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(
        app, ["--workspace", str(tmp_path), "monitor", "drift", "--from", "2024-13-01"]
    )
    assert result.exit_code == 2 and "--from 2024-13-01" in result.output
    result = runner.invoke(app, ["--workspace", str(tmp_path), "monitor", "drift"])
    assert result.exit_code == 2 and "no batch scores" in result.output
