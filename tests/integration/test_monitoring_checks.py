"""The monitoring checks as plain functions (monitoring/checks.py) on a real trained workspace:
drift against the reference of the version that scored, backtests of scores whose outcomes
are known, campaign uplift of a target list; and their errors."""

from __future__ import annotations

import json
import shutil
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from crmscore import steps
from crmscore.settings import Settings
from features.catalog import Workspace
from features.model_spec import MODEL_KINDS, model_spec
from features.names import EVENT_TIMESTAMP
from monitoring.backtest import labels_at
from monitoring.checks import run_backtest, run_drift, run_uplift
from monitoring.decision import OK, RETRAIN, read_decision
from tests.integration.conftest import Trained

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def settings(trained: Trained, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A copy of the trained workspace (the checks write reports and scores into it)."""
    return trained.copy(tmp_path_factory.mktemp("checks"))


@pytest.fixture(scope="module")
def client(settings: Settings) -> Any:
    return steps.mlflow_client(settings)


@pytest.fixture(scope="module")
def matured(settings: Settings) -> str:
    """Batch scores of the latest cutoff whose outcomes are known for every model."""
    days = []
    for kind in MODEL_KINDS:
        path = settings.paths.snapshot(model_spec(kind).label_output)
        labels = pd.read_parquet(path, columns=[EVENT_TIMESTAMP])
        days.append(pd.Timestamp(labels[EVENT_TIMESTAMP].max()).date())
    day = min(days)
    steps.score_batch(settings, day)
    return day.isoformat()


def test_drift_compares_each_model_with_the_version_that_scored(
    settings: Settings, client: Any, trained: Trained
) -> None:
    paths = settings.paths
    run = run_drift(
        paths,
        client,
        settings.monitoring,
        ["churn", "clv"],
        salt=settings.id_salt.get_secret_value(),
    )
    assert [m["model"] for m in run.models] == ["churn", "clv"]
    scores = pd.read_parquet(paths.scores_file(trained.latest))
    for found in run.models:
        kind = found["model"]
        html, summary_file = paths.drift_report(kind, f"scores_{trained.latest}")
        assert found["report"] == str(html) and html.stat().st_size > 10_000
        summary = json.loads(summary_file.read_text())
        scored_by = scores[f"{kind}_model_version"].iloc[0]
        assert summary["reference"]["version"] == scored_by.partition("@")[0]
        assert summary["reference"]["registered_model"] == model_spec(kind).registry_name
        assert summary["current"]["as_of"] == trained.latest
        assert found["status"] == ("alarm" if found["alarms"] else "ok")
        assert found["dashboard_snapshot"]
    assert run.alarmed == any(m["alarms"] for m in run.models)
    answer = run.as_dict()
    assert answer["decision"] == (RETRAIN if run.alarmed else OK)
    assert answer["open"] == f"file://{run.models[0]['report']}"
    decision = read_decision(paths.decision_file)
    assert decision is not None and {"drift:churn", "drift:clv"} <= set(decision.checks)
    assert paths.evidently_dir.exists()


def test_drift_refuses_bad_input_with_a_clear_message(settings: Settings, client: Any) -> None:
    paths, params = settings.paths, settings.monitoring
    with pytest.raises(ValueError, match=r"\['nope'\] unknown; expected some of"):
        run_drift(paths, client, params, ["nope"])
    with pytest.raises(ValueError, match="--to needs --from"):
        run_drift(paths, client, params, ["churn"], end=date(2020, 1, 1))
    with pytest.raises(FileNotFoundError, match="prediction log"):
        run_drift(paths, client, params, ["churn"], start=date(2000, 1, 1))
    with pytest.raises(FileNotFoundError, match="no batch scores for 1999-01-01"):
        run_drift(paths, client, params, ["churn"], scores="1999-01-01", dashboard=False)


def test_backtest_compares_matured_scores_with_evaluation(
    settings: Settings, client: Any, matured: str, trained: Trained
) -> None:
    paths = settings.paths
    top_k = settings.training.nbo.top_k
    run = run_backtest(paths, client, settings.monitoring.backtest, top_k)
    rows = {(r["model"], r["as_of"]): r for r in run.snapshots}
    latest = pd.Timestamp(trained.latest, tz="UTC")
    for kind in MODEL_KINDS:
        if labels_at(paths, kind, latest).empty:  # the horizon has not passed yet
            assert rows[(kind, trained.latest)]["status"] == "pending"
        row = rows[(kind, matured)]
        assert row["status"] in ("ok", "degraded") and row["rows"] > 0
        assert row["model_version"]
        tracked = [t.metric.key(top_k) for t in model_spec(kind).backtest]
        assert list(row["metrics"]) == tracked
        for name in tracked:
            figures = row["metrics"][name]
            assert figures["realised"] is not None and figures["evaluation"] is not None, name
            assert figures["degraded"] == any(name in r for r in row["reasons"])
        assert run.latest[kind] == row["reasons"]
    assert f"hit@{top_k}" in rows[("nbo", matured)]["metrics"]
    assert run.degraded == any(r["reasons"] for r in rows.values() if "reasons" in r)
    assert json.loads(paths.backtest_file.read_text()) == json.loads(
        json.dumps(run.snapshots, default=str)
    )
    assert run.as_dict()["report"] == str(paths.backtest_file)
    decision = read_decision(paths.decision_file)
    assert decision is not None
    assert {f"backtest:{k}" for k in MODEL_KINDS} <= set(decision.checks)
    assert run.as_dict()["decision"] == decision.status


def test_uplift_of_a_target_list_once_outcomes_are_known(
    settings: Settings, matured: str, trained: Trained, tmp_path: Path
) -> None:
    paths, params, labels = settings.paths, settings.monitoring.uplift, settings.labels
    listed = steps.target(settings, "retention", 200, 0.25, 1, as_of=matured)
    targets = Path(listed["csv"])
    assert targets == paths.targets_file("retention", matured, 200, 0.25, 1)
    result = run_uplift(paths, targets, params, labels)
    assert result["as_of"] == matured
    assert result["treatment"] + result["control"] + result["excluded"] == 200
    for outcome in ("retention", "revenue"):
        r = result[outcome]
        assert r["ci_low"] <= r["effect"] <= r["ci_high"]
    report = Path(result["report"])
    assert report == paths.uplift_file(targets)
    assert json.loads(report.read_text()) == json.loads(
        json.dumps({k: v for k, v in result.items() if k != "report"}, default=str)
    )

    with pytest.raises(FileNotFoundError, match="no such target list"):
        run_uplift(paths, tmp_path / "targets_retention_2020-01-01.csv", params, labels)
    no_group = tmp_path / f"targets_retention_{matured}.csv"
    pd.read_csv(targets).drop(columns="group").to_csv(no_group, index=False)
    with pytest.raises(ValueError, match="column 'group' missing"):
        run_uplift(paths, no_group, params, labels)
    badly_named = tmp_path / "my_list.csv"
    shutil.copy(targets, badly_named)
    expected = r"targets_<objective>_budget<N>_control<share>_seed<N>_<YYYY-MM-DD>\.csv"
    with pytest.raises(ValueError, match=expected):
        run_uplift(paths, badly_named, params, labels)
    too_early = Path(steps.target(settings, "retention", 50, 0.2, 1, as_of=trained.latest)["csv"])
    with pytest.raises(ValueError, match=f"no outcomes for {trained.latest} yet"):
        run_uplift(paths, too_early, params, labels)


def test_backtest_without_scores_says_so(tmp_path: Path, client: Any, settings: Settings) -> None:
    empty = Workspace(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="no batch scores to backtest"):
        run_backtest(empty, client, settings.monitoring.backtest, 5)
    with pytest.raises(ValueError, match="unknown"):
        run_backtest(settings.paths, client, settings.monitoring.backtest, 5, ["churn", "x"])
