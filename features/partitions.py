"""Canonical tables split by a hash of the customer id, read one partition at a time.

Ingest writes each table as a folder `<table>.parquet/` of files `part-NNNNN.parquet`, one per
partition: every row of a customer is in the same partition of every table, so feature
engineering and batch scoring are pure functions over one partition. A table without a
customer id (offers) is one file `part-00000.parquet` read by every partition.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from features.names import CUSTOMER_ID

PART_PREFIX = "part-"


def partition_of(customer_ids: pd.Series, partitions: int) -> np.ndarray:
    """Stable hash partition (0..partitions-1) of each customer id; the same on every machine
    and in every process (pandas' fixed-key SipHash of the text). Missing ids: partition 0."""
    hashed = pd.util.hash_pandas_object(customer_ids.astype("string"), index=False)
    return (hashed.to_numpy() % np.uint64(partitions)).astype(np.int64)


def part_name(index: int) -> str:
    """File name of partition `index` inside a table folder."""
    return f"{PART_PREFIX}{index:05d}.parquet"


def part_files(table: Path) -> list[Path]:
    """The partition files of a table folder, in partition order (one file: the table itself)."""
    if table.is_file():
        return [table]
    return sorted(table.glob(f"{PART_PREFIX}*.parquet"))


@dataclass(frozen=True)
class PartitionedTables:
    """Canonical tables as `count` customer partitions: on disk (`folder`: ingest's output)
    or in memory (`frames`, split here by `partition_of`). Picklable: the same object is
    handed to partition functions in-process or on a Ray cluster (which then needs `folder`
    on a file system every node sees)."""

    count: int
    folder: Path | None = None
    frames: dict[str, pd.DataFrame] = field(default_factory=dict)

    def names(self) -> list[str]:
        """The tables present."""
        if self.folder is None:
            return sorted(self.frames)
        return sorted(p.name.removesuffix(".parquet") for p in self.folder.glob("*.parquet"))

    def partition(
        self, index: int, columns: dict[str, list[str]] | None = None
    ) -> dict[str, pd.DataFrame]:
        """Every table's rows of partition `index` (`columns`: only these columns of a table,
        those present). Tables without a customer id come whole."""
        out = {}
        for name in self.names():
            wanted = None if columns is None else columns.get(name)
            if columns is not None and wanted is None:
                continue
            out[name] = self._read(name, index, wanted)
        return out

    def _read(self, name: str, index: int, columns: list[str] | None) -> pd.DataFrame:
        if self.folder is None:
            frame = self.frames[name]
            if columns is not None:
                frame = frame[[c for c in columns if c in frame]]
            if CUSTOMER_ID not in self.frames[name]:
                return frame
            return frame[partition_of(self.frames[name][CUSTOMER_ID], self.count) == index]
        files = part_files(self.folder / f"{name}.parquet")
        path = files[index] if len(files) > 1 else files[0]
        if columns is not None:
            present = set(pq.read_schema(path).names)
            columns = [c for c in columns if c in present]
        frame = pd.read_parquet(path, columns=columns)
        return frame.reset_index(drop=True)


def in_memory(frames: dict[str, pd.DataFrame], count: int) -> PartitionedTables:
    """Tables held in memory, split into `count` partitions when read."""
    return PartitionedTables(count=max(1, count), frames=dict(frames))


def on_disk(folder: Path) -> PartitionedTables:
    """The canonical tables ingest wrote in `folder` (a pinned data version)."""
    tx = folder / "transactions.parquet"
    if not tx.exists():
        raise FileNotFoundError(f"{tx}: not found; run `crmscore ingest`")
    return PartitionedTables(count=len(part_files(tx)), folder=folder)
