"""The pages analysts read, rendered in a real browser (headless Chromium): the model card of
each trained model, the drift page of freshly trained models (ok) and of planted drift
(retrain recommended), the backtest page, the Evidently dashboard served by `crmscore monitor
ui`; and what reaches MLflow and the dashboard."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from evidently.core.metric_types import CountValue, MeanStdValue, MetricResult, SingleValue
from evidently.sdk.models import DashboardPanelPlot
from evidently.ui.workspace import Workspace as EvidentlyWorkspace

from crmscore import steps
from crmscore.settings import Settings
from features.model_spec import MODEL_KINDS, model_spec
from features.names import ALL_FEATURES, EVENT_TIMESTAMP, moving_features
from monitoring.checks import BacktestRun, DriftRun, in_population, latest_scores, run_backtest
from monitoring.current import batch_current
from monitoring.dashboard import PROJECT_PREFIX
from monitoring.drift import drift_check, write_drift
from monitoring.pages import OK_WORDS, RETRAIN_WORDS
from monitoring.reference import load_reference
from serving.registry import load_registered
from tests.browser import Rendered, dashboard_panels, open_page, render
from tests.integration.conftest import PROJECT_ROOT, Trained
from tests.servers import answers, free_port, stop, wait_until
from training.metrics import explain

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def settings(trained: Trained, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A copy of the trained workspace (monitoring writes into it)."""
    return trained.copy(tmp_path_factory.mktemp("pages"))


@pytest.fixture(scope="module")
def client(settings: Settings) -> Any:
    return steps.mlflow_client(settings)


@pytest.fixture(scope="module")
def drift_run(settings: Settings) -> DriftRun:
    """`monitor drift` on the latest batch scores (its snapshots reach the dashboard)."""
    return steps.drift(settings)


@pytest.fixture(scope="module")
def backtest_run(settings: Settings, client: Any) -> BacktestRun:
    """The batch scored at the last cutoff with labels, then the backtest of every matured
    batch (its realised quality reaches the dashboard)."""
    day = min(
        pd.read_parquet(settings.paths.snapshot(model_spec(k).label_output))[EVENT_TIMESTAMP]
        .max()
        .date()
        for k in MODEL_KINDS
    )
    steps.score_batch(settings, day)
    return run_backtest(
        settings.paths, client, settings.monitoring.backtest, settings.training.nbo.top_k
    )


@pytest.fixture(scope="module")
def dashboard(
    trained: Trained,
    settings: Settings,
    drift_run: DriftRun,
    backtest_run: BacktestRun,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    """`crmscore monitor ui` on the workspace's dashboard (drift and backtests stored), on a
    free loopback port; its URL once the UI answers."""
    port = free_port()
    command = [sys.executable, "-m", "crmscore", "--workspace", str(settings.workspace)]
    command += ["--dataset", str(trained.dataset), "monitor", "ui", "--port", str(port)]
    log = tmp_path_factory.mktemp("dashboard") / "ui.log"
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(answers(f"{url}/api/version"), process, log)
        yield url
    finally:
        stop(process)


def _readable(seen: Rendered) -> None:
    """What every page must be: real headings and tables, every image loaded, no Markdown."""
    assert seen.markdown_left() == []
    assert len(seen.headings) >= 2 and seen.tables >= 1
    assert all(image["width"] > 0 for image in seen.images), seen.images


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_the_model_card_reads_in_a_browser_and_is_logged_with_the_run(
    kind: str, settings: Settings, client: Any, tmp_path: Path
) -> None:
    card = settings.paths.model_reports(kind) / f"{kind}_report.html"
    seen = render(card, tmp_path)
    _readable(seen)
    assert len(seen.images) == 2  # gains and calibration, embedded
    assert seen.text.count("Grade ") >= 1 and "the model (" in seen.text
    assert "95% interval of the paired difference" in seen.text
    # Every metric of the card is explained, in the words of the one explanation table.
    reference = load_reference(client, kind)
    keys = [k.removeprefix("model_") for k in reference.metrics if k.startswith("model_")]
    shown = [k.replace("_at_", "@") for k in keys if not k.endswith(("_ci_low", "_ci_high"))]
    assert shown
    for key in shown:
        assert explain(key) and explain(key) in seen.text, key
    # What it predicts: the horizon of the label settings, and the currency for CLV.
    horizon = int(getattr(settings.labels, model_spec(kind).horizon_setting))
    assert f"next {horizon} days" in seen.text
    if kind == "clv":
        assert "GBP" in seen.text
    # Top drivers in words, not feature names.
    described = [f.description for f in ALL_FEATURES.values()]
    assert any(words in seen.text for words in described)
    # The technical details are folded: not visible until opened.
    assert "Technical details" in seen.text
    assert "Parameters, constraints and choices" not in seen.text
    # The card is the run's report in MLflow, and the Markdown report is gone.
    logged = [a.path for a in client.list_artifacts(reference.run_id, "report")]
    assert f"report/{kind}_report.html" in logged
    assert not any(path.endswith(".md") for path in logged)


def test_drift_on_freshly_trained_models_is_ok_and_the_page_says_why(
    settings: Settings, drift_run: DriftRun, tmp_path: Path
) -> None:
    run = drift_run
    assert run.decision is not None and run.decision.status == "ok", run.as_dict()
    for found in run.models:
        assert found["status"] == "ok" and found["alarms"] == []
        seen = render(Path(found["report"]), tmp_path)
        _readable(seen)
        assert OK_WORDS in seen.text
        kind = found["model"]
        assert model_spec(kind).registry_name in seen.text
        # The features that grow with time are left out, and the page says why.
        reference = load_reference(steps.mlflow_client(settings), kind)
        moving = moving_features(reference.features)
        assert "tenure_days" in moving
        for name, why in moving.items():
            assert name in seen.text and why in seen.text
        # Reference and current dates in the header.
        assert str(pd.Timestamp(reference.frame[EVENT_TIMESTAMP].max()).date()) in seen.text
        assert f"batch scores of {Path(found['report']).stem.rpartition('_')[2]}" in seen.text


def test_planted_spend_drift_alarms_and_the_page_names_it(
    settings: Settings, client: Any, tmp_path: Path
) -> None:
    reference = load_reference(client, "clv")
    scores = latest_scores(settings.paths)
    found = batch_current(
        scores, settings.paths, "clv", reference.features, settings.id_salt.get_secret_value()
    )
    current, _ = in_population(found.frame, settings.labels.active_window_days)
    params = settings.monitoring
    before = drift_check(reference.frame, current, reference.features, params, "clv").summary
    assert before["status"] == "ok" and "monetary_90d" not in before["drifted_features"]
    # Customers spend three times as much; the registered model scores the shifted features.
    spend = [c for c in reference.features if c.startswith("monetary_") and c in current]
    shifted = current.assign(**{c: current[c] * 3 + 200 for c in spend})
    shifted["prediction"] = load_registered("clv", client).predict(shifted)
    context = {"reference": reference.describe(), "current": found.info}
    result = drift_check(reference.frame, shifted, reference.features, params, "clv", context)
    s = result.summary
    assert s["status"] == "alarm"
    assert "monetary_90d" in s["drifted_features"]
    html, _ = write_drift(result, tmp_path / "clv.html", tmp_path / "clv.json", tmp_path / "e.html")
    seen = render(html, tmp_path)
    _readable(seen)
    assert RETRAIN_WORDS in seen.text and "monetary_90d" in seen.text


def test_the_backtest_page_and_the_dashboard_show_realised_quality(
    settings: Settings, client: Any, backtest_run: BacktestRun, tmp_path: Path
) -> None:
    run = backtest_run
    assert run.page is not None
    seen = render(run.page, tmp_path)
    _readable(seen)
    matured = [r for r in run.snapshots if r["status"] in ("ok", "degraded")]
    assert {r["model"] for r in matured} == set(MODEL_KINDS)
    assert OK_WORDS in seen.text or RETRAIN_WORDS in seen.text
    assert explain("roc_auc") in seen.text and explain("mae") in seen.text
    for row in matured:
        assert row["evaluated_on"] and row["evaluated_on"] in seen.text
    # Churn and CLV backtests reach the Evidently dashboard, once per scored snapshot.
    workspace = EvidentlyWorkspace(str(settings.paths.evidently_dir))
    for kind, metric in (("churn", "RocAuc"), ("clv", "MAE")):
        (project,) = workspace.search_project(f"{PROJECT_PREFIX} {kind}")
        row = next(r for r in matured if r["model"] == kind)
        snapshot = workspace.get_run(project.id, row["dashboard_snapshot"])
        assert snapshot is not None
        names = [
            r.dict()["metric_value_location"]["metric"]["params"]["type"]
            for r in snapshot.metric_results.values()
        ]
        assert f"evidently:metric_v2:{metric}" in names
    again = run_backtest(
        settings.paths, client, settings.monitoring.backtest, settings.training.nbo.top_k
    )
    ids = {r["dashboard_snapshot"] for r in again.snapshots if r.get("dashboard_snapshot")}
    assert ids == {r["dashboard_snapshot"] for r in matured if r.get("dashboard_snapshot")}


def _values(result: MetricResult) -> list[SingleValue]:
    """The single values a stored metric result holds, as Evidently's UI plots them."""
    if isinstance(result, SingleValue):
        return [result]
    if isinstance(result, CountValue):
        return [result.count, result.share]
    if isinstance(result, MeanStdValue):
        return [result.mean, result.std]
    return []


def _recorded(
    workspace: EvidentlyWorkspace, project_id: Any, panel: DashboardPanelPlot
) -> list[float]:
    """The values `panel` plots, read from the project's stored snapshots."""
    found = []
    for snapshot_id in workspace.list_runs(project_id):
        snapshot = workspace.get_run(project_id, snapshot_id)
        assert snapshot is not None
        for result in snapshot.metric_results.values():
            for single in _values(result):
                location = single.metric_value_location
                assert location is not None
                metric = location.metric.params
                labels = {k: str(v) for k, v in location.param.items()}
                labels |= {k: str(v) for k, v in metric.items() if k != "type"}
                if any(
                    m.metric == metric["type"] and m.metric_labels.items() <= labels.items()
                    for m in panel.values
                ):
                    found.append(float(single.value))
    return found


def test_the_dashboard_shows_each_panel_with_a_value_axis_that_spans_its_values(
    settings: Settings, dashboard: str, tmp_path: Path
) -> None:
    workspace = EvidentlyWorkspace(str(settings.paths.evidently_dir))
    projects = [p for p in workspace.list_projects() if p.name.startswith(PROJECT_PREFIX)]
    names = {f"{PROJECT_PREFIX} {kind}" for kind in settings.monitoring.models}
    assert {p.name for p in projects} == names
    drawn: list[str] = []
    for project in projects:
        panels = workspace.get_dashboard(project.id).panels
        page = open_page(f"{dashboard}/projects/{project.id}", tmp_path)
        shown = {panel.title: panel for panel in dashboard_panels(page)}
        assert list(shown) == [panel.title for panel in panels], page.text()[-2000:]
        for panel in panels:
            values = sorted(_recorded(workspace, project.id, panel))
            assert values, f"{panel.title}: nothing recorded"
            if values[-1] == 0:
                continue  # an axis of zeros says nothing of its labels
            seen = shown[panel.title]
            labels = [value for value, _ in seen.ticks]
            why = (panel.title, values, seen)
            # The labels span the values (a line through one value had a single label, "0").
            assert len(set(labels)) >= 2, why
            assert min(labels) <= values[0] and values[-1] <= max(labels), why
            # Each bar reaches the height of its value on that axis.
            tolerance = (max(labels) - min(labels)) / 100
            bars = sorted(seen.value_at(top) for top in seen.bar_tops)
            assert len(bars) == len(values), why
            assert all(abs(b - v) <= tolerance for b, v in zip(bars, values, strict=True)), why
            drawn.append(panel.title)
    # At least the realised quality of churn and CLV (ROC AUC, MAE), far from zero.
    backtests = [title.split(":")[0] for title in drawn if "backtest" in title]
    assert sorted(backtests) == ["churn", "clv"], drawn
