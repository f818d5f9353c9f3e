"""The monitoring dashboard: every drift and backtest snapshot goes into a local Evidently
workspace, one project per model, whose dashboard plots drift and quality over time.

Open it with `crmscore monitor ui` (Evidently's own UI on that workspace)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evidently.core.report import Snapshot
from evidently.sdk.models import PanelMetric
from evidently.sdk.panels import line_plot_panel
from evidently.ui.workspace import Project, Workspace

PROJECT_PREFIX = "crmscore"


def _panels(model: str) -> list[Any]:
    return [
        line_plot_panel(
            title=f"{model}: share of drifted features",
            values=[
                PanelMetric(
                    legend="share",
                    metric="evidently:metric_v2:DriftedColumnsCount",
                    metric_labels={"value_type": "share"},
                )
            ],
            size="half",
        ),
        line_plot_panel(
            title=f"{model}: prediction drift score",
            values=[
                PanelMetric(
                    legend="prediction",
                    metric="evidently:metric_v2:ValueDrift",
                    metric_labels={"column": "prediction"},
                )
            ],
            size="half",
        ),
        line_plot_panel(
            title=f"{model}: missing values (share of cells)",
            values=[
                PanelMetric(
                    legend="missing",
                    metric="evidently:metric_v2:DatasetMissingValueCount",
                    metric_labels={"value_type": "share"},
                )
            ],
            size="half",
        ),
        line_plot_panel(
            title=f"{model}: realised quality (backtests)",
            values=[
                PanelMetric(legend="ROC AUC", metric="evidently:metric_v2:RocAuc"),
                PanelMetric(legend="MAE", metric="evidently:metric_v2:MAE"),
            ],
            size="half",
        ),
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


def list_snapshots(folder: Path, model: str) -> list[str]:
    """Ids of the snapshots stored for `model` (empty when there are none)."""
    if not folder.exists():
        return []
    workspace = Workspace.create(str(folder))
    found = workspace.search_project(f"{PROJECT_PREFIX} {model}")
    return [str(s) for s in workspace.list_runs(found[0].id)] if found else []
