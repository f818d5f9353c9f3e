"""The dashboard's workspace as Evidently's UI reads it: backtest snapshots stamped with an
aware score date sit beside drift snapshots Evidently stamps itself (naive)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pandas as pd
from evidently import BinaryClassification, DataDefinition, Dataset, Report
from evidently.metrics import RocAuc
from evidently.ui.service.base import SeriesFilter
from evidently.ui.service.storage.local.base import InMemoryDataStorage
from evidently.ui.workspace import Workspace

from monitoring.dashboard import add_snapshot, backtest_snapshot, project_for


def _joined(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    p = rng.random(500)
    return pd.DataFrame({"prediction": p, "outcome": rng.random(500) < p})


def test_the_ui_plots_a_backtest_beside_a_snapshot_evidently_stamped(tmp_path: Path) -> None:
    folder = tmp_path / "evidently"
    as_of = pd.Timestamp("2023-07-01 02:00", tz="Europe/Paris").to_pydatetime()
    backtest = backtest_snapshot("churn", _joined(0), as_of)
    assert backtest is not None
    add_snapshot(folder, "churn", backtest)
    # A report without a timestamp, as the drift report is: Evidently stamps it (naive).
    definition = DataDefinition(
        numerical_columns=["prediction"],
        categorical_columns=["outcome"],
        classification=[BinaryClassification(target="outcome", prediction_probas="prediction")],
    )
    frame = _joined(1).assign(outcome=lambda f: f["outcome"].astype(int))
    stamped = Report([RocAuc()]).run(Dataset.from_pandas(frame, data_definition=definition))
    add_snapshot(folder, "churn", stamped)

    workspace = Workspace(str(folder))
    project = project_for(workspace, "churn")
    (panel,) = [p for p in workspace.get_dashboard(project.id).panels if "backtest" in p.title]
    filters = [
        SeriesFilter(
            tags=v.tags, metadata=v.metadata, metric=v.metric, metric_labels=v.metric_labels
        )
        for v in panel.values
    ]
    # What the UI's dashboard asks the storage for each panel (it answered 500 on a mix).
    series = asyncio.run(
        InMemoryDataStorage(str(folder)).get_data_series(project.id, filters, None, None)
    )
    # The backtest first, at its score date in UTC (02:00 in Paris is midnight UTC).
    assert series.sources[0].timestamp.isoformat() == "2023-07-01T00:00:00"
    assert len(series.sources) == 2
    (roc,) = series.series
    values = [value for value in roc.values if value is not None]
    assert len(values) == 2 and all(0.5 < value < 1 for value in values), values
