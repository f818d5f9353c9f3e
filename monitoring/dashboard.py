"""The monitoring dashboard: every drift report's snapshot, and an Evidently report of each
matured backtest, go into a local Evidently workspace, one project per model, whose
dashboard plots drift, data quality and realised quality over time.

Open it with `crmscore monitor ui` (Evidently's own UI on that workspace)."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from evidently import BinaryClassification, DataDefinition, Dataset, Regression, Report
from evidently.core.report import Snapshot
from evidently.metrics import MAE, RocAuc
from evidently.sdk.models import PanelMetric
from evidently.sdk.panels import bar_plot_panel
from evidently.telemetry import DO_NOT_TRACK_ENV
from evidently.ui.workspace import Project, Workspace

PROJECT_PREFIX = "crmscore"


# (title, legend, Evidently metric, labels) of each panel: what drift reports record.
_PANELS = (
    ("share of drifted features", "share", "DriftedColumnsCount", {"value_type": "share"}),
    ("prediction drift score", "prediction", "ValueDrift", {"column": "prediction"}),
    (
        "missing values (share of cells)",
        "missing",
        "DatasetMissingValueCount",
        {"value_type": "share"},
    ),
)


# (title, legend, Evidently metric, labels) of each model's backtest panel: the realised
# quality that `backtest_snapshot` records (offers have none: ranking needs a recsys layout).
_BACKTEST_PANELS = {
    "churn": ("backtest: realised ROC AUC", "roc_auc", "RocAuc", {}),
    "clv": ("backtest: realised MAE", "mae", "MAE", {"value_type": "mean"}),
}


def _panels(model: str) -> list[Any]:
    # Bars, not lines: the dashboard's line chart labels the axis of a single value (or of
    # equal ones) "0", whatever the value; a bar's axis starts at 0 and gets real ticks.
    panels = [*_PANELS, *([_BACKTEST_PANELS[model]] if model in _BACKTEST_PANELS else [])]
    return [
        bar_plot_panel(
            title=f"{model}: {title}",
            values=[
                PanelMetric(
                    legend=legend, metric=f"evidently:metric_v2:{metric}", metric_labels=labels
                )
            ],
            size="half",
        )
        for title, legend, metric, labels in panels
    ]


def project_for(workspace: Workspace, model: str) -> Project:
    """The model's project, created with its dashboard on first use."""
    name = f"{PROJECT_PREFIX} {model}"
    found = workspace.search_project(name)
    if found:
        return found[0]
    project = workspace.create_project(name, description=f"Monitoring of the {model} model")
    for panel in _panels(model):
        project.dashboard.add_panel(panel)
    project.save()
    return project


def add_snapshot(folder: Path, model: str, snapshot: Snapshot) -> str:
    """Store `snapshot` in the workspace at `folder`; returns the snapshot id."""
    workspace = Workspace.create(str(folder))
    project = project_for(workspace, model)
    ref = workspace.add_run(project.id, snapshot)
    return str(ref.id)


def naive_utc(moment: datetime) -> datetime:
    """`moment` as a naive UTC time, the kind Evidently stamps snapshots with by default (a
    drift report's): the UI sorts a project's snapshots by time, and an aware time among
    naive ones failed its dashboard (HTTP 500: offset-naive and offset-aware datetimes)."""
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(UTC).replace(tzinfo=None)


def backtest_snapshot(model: str, joined: pd.DataFrame, as_of: datetime) -> Snapshot | None:
    """An Evidently report of the realised quality of one scored snapshot, stamped with its
    score date: ROC AUC (churn) or MAE (CLV) of the prediction against the outcome
    (`monitoring.backtest.joined_outcomes`); None for a model without a backtest panel."""
    if model not in _BACKTEST_PANELS:
        return None
    if model == "churn":
        definition = DataDefinition(
            numerical_columns=["prediction"],
            categorical_columns=["outcome"],
            classification=[BinaryClassification(target="outcome", prediction_probas="prediction")],
        )
        metrics: list[Any] = [RocAuc()]
        frame = joined.assign(outcome=joined["outcome"].astype(int))
    else:
        definition = DataDefinition(
            numerical_columns=["prediction", "outcome"],
            regression=[Regression(target="outcome", prediction="prediction")],
        )
        metrics, frame = [MAE()], joined
    report = Report(metrics)
    return report.run(
        Dataset.from_pandas(frame, data_definition=definition),
        None,
        timestamp=naive_utc(as_of),
        tags=[model, "backtest"],
        metadata={"model": model, "check": "backtest"},
        name=f"{model} backtest {as_of.date()}",
    )


def ui_command(folder: Path, host: str = "127.0.0.1", port: int = 8000) -> list[str]:
    """The command that runs Evidently's UI on the workspace at `folder`; FileNotFoundError
    when no drift report has stored a snapshot there yet."""
    if not folder.exists():
        raise FileNotFoundError(
            f"{folder}: no monitoring snapshots yet; run `crmscore monitor drift` first"
        )
    command = [sys.executable, "-m", "evidently.cli", "ui", "--workspace", str(folder)]
    return [*command, "--host", host, "--port", str(port)]


def ui_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment of the UI process: `environ` with Evidently's usage telemetry off (the
    UI needs no network; it would send an event per page to Evidently's server)."""
    return {**environ, DO_NOT_TRACK_ENV: "1"}
