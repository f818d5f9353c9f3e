"""Multi-file outputs are all or nothing: a run that dies between two files leaves readers
the previous complete set, and no temporary file behind (real files, real ingest and build;
the crash is a write that raises)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from features.catalog import Workspace
from features.config import DatasetConfig, FeatureParams, LabelParams, SegmentParams
from features.ingest import ingest
from features.publish import CURRENT, publishing
from features.snapshots import build_snapshots, read_snapshots, read_tables, snapshots_meta
from features.synthetic import dataset_yaml, synthetic_export, write_export


class Crash(RuntimeError):
    """The simulated crash."""


def _crash_on_write(monkeypatch: pytest.MonkeyPatch, nth: int) -> None:
    """Make the `nth` parquet file written by pandas from now on raise, as a kill would stop
    the run there."""
    real = pd.DataFrame.to_parquet
    calls = {"n": 0}

    def to_parquet(self: pd.DataFrame, *args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == nth:
            raise Crash(f"killed while writing file {nth}")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(pd.DataFrame, "to_parquet", to_parquet)


def _leftovers(folder: Path) -> list[str]:
    """Everything in a set's folder but the pointer and published versions: temporary files
    and staging folders of runs, anywhere below it."""
    out = []
    for path in folder.rglob("*"):
        name = path.name
        if name.startswith(".") or name.endswith(".tmp"):
            out.append(str(path.relative_to(folder)))
    return out


def _dataset(tmp_path: Path, seed: int) -> DatasetConfig:
    csv = write_export(
        synthetic_export(lines=3000, customers=60, seed=seed, days=400), tmp_path / f"e{seed}.csv"
    )
    return DatasetConfig.model_validate(yaml.safe_load(dataset_yaml(csv)))


def test_an_ingest_killed_between_tables_leaves_the_previous_tables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = Workspace(tmp_path / "ws")
    first = ingest(_dataset(tmp_path, 1), tmp_path, paths)
    before = read_tables(paths)
    assert set(before) == {"transactions", "customers"}
    corrected = _dataset(tmp_path, 2)
    _crash_on_write(monkeypatch, 2)  # transactions written, customers not
    with pytest.raises(Crash):
        ingest(corrected, tmp_path, paths)
    monkeypatch.undo()
    after = read_tables(paths)
    for name, frame in before.items():
        pd.testing.assert_frame_equal(after[name], frame)
    assert json.loads(paths.ingest_report.read_text()) == first
    assert _leftovers(paths.data_versions) == []
    # The next run publishes all of its tables.
    report = ingest(corrected, tmp_path, paths)
    assert json.loads(paths.ingest_report.read_text()) == report != first
    assert not read_tables(paths)["transactions"].equals(before["transactions"])


def test_a_feature_build_killed_between_files_leaves_the_previous_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = Workspace(tmp_path / "ws")
    ingest(_dataset(tmp_path, 1), tmp_path, paths)
    params = (
        FeatureParams(cutoffs="monthly", min_history_days=200),
        LabelParams(churn_horizon_days=30, clv_horizon_days=30, offer_horizon_days=30),
        SegmentParams(),
    )
    build_snapshots(read_tables(paths), *params, paths)
    before, meta = read_snapshots(paths), snapshots_meta(paths)
    ingest(_dataset(tmp_path, 2), tmp_path, paths)  # corrected data
    _crash_on_write(monkeypatch, 2)
    with pytest.raises(Crash):
        build_snapshots(read_tables(paths), *params, paths)
    monkeypatch.undo()
    after = read_snapshots(paths)
    for name, frame in before.items():
        pd.testing.assert_frame_equal(after[name], frame)
    assert snapshots_meta(paths) == meta
    assert _leftovers(paths.snapshot_versions) == []
    build_snapshots(read_tables(paths), *params, paths)
    assert not read_snapshots(paths)["customer_features"].equals(before["customer_features"])


def test_a_run_killed_outright_is_cleaned_up_by_the_next(tmp_path: Path) -> None:
    folder = tmp_path / "set"
    with publishing(folder) as version:
        (version / "a.txt").write_text("1")
        (version / "b.txt").write_text("1")
    # A staging folder of a process that no longer exists (killed before it published).
    dead = os.fork()
    if dead == 0:
        os._exit(0)
    os.waitpid(dead, 0)
    abandoned = folder / f".staging-{dead}-0000"
    abandoned.mkdir()
    (abandoned / "a.txt").write_text("2")
    assert (folder / CURRENT / "a.txt").read_text() == "1"
    for text in ("3", "4"):
        with publishing(folder) as version:
            (version / "a.txt").write_text(text)
    assert not abandoned.exists()
    assert (folder / CURRENT / "a.txt").read_text() == "4"
    assert not (folder / CURRENT / "b.txt").exists()  # a set is replaced whole
    versions = sorted(p.name for p in folder.iterdir())
    assert len(versions) == 3 and versions[0] == CURRENT  # current + this and the previous one
