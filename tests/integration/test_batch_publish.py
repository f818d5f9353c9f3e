"""Batch scores are published whole: a `score batch` killed between its parquet and CSV files
leaves readers the previous run's pair (real models, real Feast, real files)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from crmscore import steps
from crmscore.settings import load_settings
from tests.integration.conftest import Trained


class Crash(RuntimeError):
    """The simulated crash."""


def test_a_batch_killed_between_files_leaves_the_previous_pair(
    trained: Trained, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = load_settings(trained.workspace, dataset=str(trained.dataset))
    paths = settings.paths
    parquet, csv = paths.scores_file(trained.latest), paths.scores_file(trained.latest, ".csv")
    before = pd.read_parquet(parquet), csv.read_bytes()
    # The next run's scores differ (another model version column), then it dies at the CSV.
    real = pd.DataFrame.to_parquet

    def to_parquet(self: pd.DataFrame, *args: Any, **kwargs: Any) -> Any:
        if "churn_model_version" in self:
            self = self.assign(churn_model_version="rerun")
        return real(self, *args, **kwargs)

    def to_csv(self: pd.DataFrame, *args: Any, **kwargs: Any) -> Any:
        raise Crash("killed while writing the CSV")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", to_parquet)
    monkeypatch.setattr(pd.DataFrame, "to_csv", to_csv)
    with pytest.raises(Crash):
        steps.score_batch(settings, pd.Timestamp(trained.latest).date())
    monkeypatch.undo()
    pd.testing.assert_frame_equal(pd.read_parquet(parquet), before[0])
    assert csv.read_bytes() == before[1]
    assert paths.scores_files() == [parquet]
    leftovers = [p for p in Path(paths.scores_dir).rglob("*") if p.name.startswith(".")]
    assert leftovers == []
