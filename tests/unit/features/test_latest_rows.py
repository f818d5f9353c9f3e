"""The latest row per entity that materialize reads, batch by batch, is the row stock
materialize picks (newest event time, then newest created time, then the first in the file)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from features.store import latest_per_entity

KEYS = ["customer_id", "offer_id"]
COLUMNS = [*KEYS, "value", "label", "event_timestamp", "created_timestamp"]


def _snapshot(path: Path, rows: int = 3_000, seed: int = 3) -> pd.DataFrame:
    """Rows with many ties: few event times and created times, some created times null,
    null values, in several row groups."""
    rng = np.random.default_rng(seed)
    stamps = pd.to_datetime(["2023-01-01", "2023-02-01", "2023-03-01", "2023-04-01"], utc=True)
    created = pd.Series(rng.choice(stamps[:2], rows), dtype="datetime64[ns, UTC]")
    created[rng.random(rows) < 0.2] = pd.NaT
    frame = pd.DataFrame(
        {
            "customer_id": rng.integers(0, 150, rows).astype(str),
            "offer_id": rng.choice(["a", "b", "c"], rows),
            "value": np.where(rng.random(rows) < 0.1, np.nan, np.arange(rows, dtype=float)),
            "label": pd.Series(rng.choice(["x", "y", None], rows), dtype=object),
            "event_timestamp": rng.choice(stamps, rows),
            "created_timestamp": created,
        }
    )
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, row_group_size=700)
    return frame


def _stock_choice(frame: pd.DataFrame, start: datetime, end: datetime) -> pd.DataFrame:
    """What stock materialize picks, read whole: sort, keep the first row per entity."""
    inside = frame[(frame["event_timestamp"] >= start) & (frame["event_timestamp"] <= end)]
    inside = inside.sort_values(
        ["event_timestamp", "created_timestamp"], ascending=False, kind="stable"
    )
    return inside.drop_duplicates(KEYS, keep="first")


def _by_entity(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(KEYS).reset_index(drop=True)[COLUMNS]


@pytest.mark.parametrize("batch_rows", [1, 7, 100, 10**9])
def test_any_batch_size_picks_the_rows_stock_materialize_picks(
    tmp_path: Path, batch_rows: int
) -> None:
    frame = _snapshot(tmp_path / "snapshot.parquet")
    start = datetime(2023, 1, 15, tzinfo=UTC)
    end = datetime(2023, 4, 1, tzinfo=UTC)  # inclusive: the last stamp is inside
    got = latest_per_entity(
        tmp_path / "snapshot.parquet",
        KEYS,
        COLUMNS,
        "event_timestamp",
        "created_timestamp",
        start,
        end,
        batch_rows=batch_rows,
    ).to_pandas()
    want = _stock_choice(frame, start, end)
    assert len(want) > 300 and want["value"].isna().any() and want["created_timestamp"].isna().any()
    pd.testing.assert_frame_equal(_by_entity(got), _by_entity(want))


def test_an_empty_window_gives_no_rows(tmp_path: Path) -> None:
    _snapshot(tmp_path / "snapshot.parquet")
    start = datetime(2024, 1, 1, tzinfo=UTC)
    got = latest_per_entity(
        tmp_path / "snapshot.parquet",
        KEYS,
        COLUMNS,
        "event_timestamp",
        None,
        start,
        start,
        batch_rows=5,
    )
    assert got.num_rows == 0 and got.column_names == COLUMNS
