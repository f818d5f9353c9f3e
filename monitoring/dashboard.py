"""The monitoring dashboard: every drift report's snapshot goes into a local Evidently
workspace, one project per model, whose dashboard plots drift and data quality over time.

Open it with `crmscore monitor ui` (Evidently's own UI on that workspace)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from evidently.core.report import Snapshot
from evidently.sdk.models import PanelMetric
from evidently.sdk.panels import line_plot_panel
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


def _panels(model: str) -> list[Any]:
    return [
        line_plot_panel(
            title=f"{model}: {title}",
            values=[
                PanelMetric(
                    legend=legend, metric=f"evidently:metric_v2:{metric}", metric_labels=labels
                )
            ],
            size="half",
        )
        for title, legend, metric, labels in _PANELS
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


def ui_command(folder: Path, host: str = "127.0.0.1", port: int = 8000) -> list[str]:
    """The command that runs Evidently's UI on the workspace at `folder`; FileNotFoundError
    when no drift report has stored a snapshot there yet."""
    if not folder.exists():
        raise FileNotFoundError(
            f"{folder}: no monitoring snapshots yet; run `crmscore monitor drift` first"
        )
    command = [sys.executable, "-m", "evidently.cli", "ui", "--workspace", str(folder)]
    return [*command, "--host", host, "--port", str(port)]
