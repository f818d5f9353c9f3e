"""Current data for a drift report: a batch-scoring snapshot or a window of the prediction log.

Both come back in the reference's shape: customer_hash, the model's features (raw values),
`prediction`; customer ids are hashed as soon as they are read."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd

from features.catalog import Workspace
from features.feast_repo import BTYD_VIEW, CUSTOMER_VIEW
from features.model_spec import model_spec
from features.names import CUSTOMER_ID, EVENT_TIMESTAMP
from features.privacy import resolve_id_key
from monitoring.privacy import CUSTOMER_HASH, hash_ids


def version_column(kind: str) -> str:
    """The column with the version of `kind` that scored a row, in batch scores and the
    prediction log ("churn_model_version")."""
    return f"{model_spec(kind).kind}_model_version"


@dataclass(frozen=True)
class CurrentData:
    """Current rows and where they came from."""

    frame: pd.DataFrame
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def model_version(self) -> str | None:
        """The model version that scored most rows ("3@champion"), when known."""
        value = self.info.get("model_version")
        return None if value is None else str(value)


def _utc(value: Any) -> pd.Timestamp:
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _mode(column: pd.Series) -> str | None:
    counts = column.dropna().astype(str).value_counts()
    return None if counts.empty else str(counts.index[0])


def batch_current(
    scores_path: Path, paths: Workspace, kind: str, features: list[str], salt: str = ""
) -> CurrentData:
    """A batch-scoring file with the features of its date from the workspace's feature
    snapshots; ids are replaced by their hash with `salt` (the configured key, else the
    workspace's: the one serving and training use)."""
    if not scores_path.exists():
        raise FileNotFoundError(f"{scores_path}: no such batch scores file")
    scores = pd.read_parquet(scores_path)
    prediction = model_spec(kind).prediction_column
    for needed in (CUSTOMER_ID, "as_of", prediction):
        if needed not in scores:
            raise ValueError(f"{scores_path}: column '{needed}' missing (expected batch scores)")
    as_of = _utc(scores["as_of"].iloc[0]) if len(scores) else None
    if as_of is None:
        raise ValueError(f"{scores_path}: no rows")
    snapshot = paths.snapshot(CUSTOMER_VIEW)
    if not snapshot.exists():
        raise FileNotFoundError(f"{snapshot}: feature snapshots not found")
    frame = scores[[CUSTOMER_ID, prediction]]
    # Customer features live in two views: activity and segments, and the BTYD signals.
    for view in (CUSTOMER_VIEW, BTYD_VIEW):
        path = paths.snapshot(view)
        available = set(_schema_names(path)) if path.exists() else set()
        wanted = [c for c in features if c in available and c not in frame]
        if view != CUSTOMER_VIEW and not wanted:
            continue
        filters = [(EVENT_TIMESTAMP, "==", as_of)]
        feats = pd.read_parquet(path, columns=[CUSTOMER_ID, *wanted], filters=filters)
        if feats.empty:
            raise ValueError(f"{path}: no features at {as_of.date()} (the date of {scores_path})")
        frame = frame.merge(feats, on=CUSTOMER_ID, how="left")
    key = resolve_id_key(salt, paths)
    frame.insert(0, CUSTOMER_HASH, hash_ids(frame.pop(CUSTOMER_ID), key))
    frame = frame.rename(columns={prediction: "prediction"})
    versions = version_column(kind)
    info = {
        "source": "batch",
        "path": str(scores_path),
        "as_of": as_of.date().isoformat(),
        "rows": len(frame),
        "model_version": _mode(scores[versions]) if versions in scores else None,
    }
    return CurrentData(frame, info)


def scores_model_version(scores_path: Path, kind: str) -> str | None:
    """The version of `kind` that produced a batch-scores file ("3@champion"), if recorded."""
    if not scores_path.exists():
        raise FileNotFoundError(f"{scores_path}: no such batch scores file")
    column = version_column(kind)
    if column not in _schema_names(scores_path):
        return None
    return _mode(pd.read_parquet(scores_path, columns=[column])[column])


def _schema_names(path: Path) -> list[str]:
    """The columns of a parquet file, or of a folder of them (the partitioned batch scores)."""
    import pyarrow.dataset as ds

    return list(ds.dataset(path, format="parquet").schema.names)


def log_files(paths: Workspace, start: date, end: date) -> list[Path]:
    """Prediction-log parquet files of the days in [start, end]."""
    folder = paths.predictions_dir
    if not folder.exists():
        raise FileNotFoundError(f"{folder}: no prediction log (the API writes it)")
    files = []
    for day in pd.date_range(start, end, freq="D"):
        files += sorted(paths.prediction_log_day(day.date()).glob("*.parquet"))
    if not files:
        raise FileNotFoundError(f"{folder}: no prediction log files from {start} to {end}")
    return files


def log_current(paths: Workspace, start: date, end: date, kind: str, salt: str = "") -> CurrentData:
    """The API's prediction log over [start, end]; cold-start answers (no features) are left
    out and counted."""
    prediction = model_spec(kind).prediction_column
    folder = paths.predictions_dir
    files = log_files(paths, start, end)
    frame = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    for needed in (CUSTOMER_HASH, prediction):
        if needed not in frame:
            raise ValueError(f"{folder}: column '{needed}' missing in the prediction log")
    if CUSTOMER_ID in frame:  # never keep raw ids, even if a writer logged them
        frame[CUSTOMER_HASH] = hash_ids(frame.pop(CUSTOMER_ID), resolve_id_key(salt, paths))
    cold = frame["cold_start"].fillna(False).astype(bool) if "cold_start" in frame else None
    cold_rows = int(cold.sum()) if cold is not None else 0
    if cold is not None:
        frame = frame[~cold.to_numpy()].reset_index(drop=True)
    versions = version_column(kind)
    info = {
        "source": "prediction_log",
        "path": str(folder),
        "from": start.isoformat(),
        "to": end.isoformat(),
        "files": len(files),
        "rows": len(frame),
        "cold_start_rows": cold_rows,
        "model_version": _mode(frame[versions]) if versions in frame else None,
    }
    frame = frame.rename(columns={prediction: "prediction"})
    return CurrentData(frame, info)
