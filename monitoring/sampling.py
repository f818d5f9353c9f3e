"""Sampling large inputs before an Evidently report.

Strategy: a report uses at most `max_rows` rows per side (reference and current), a uniform
random sample without replacement drawn with a fixed seed, so the same inputs always give
the same report. A uniform sample is unbiased for every column's distribution, which is all
a drift test compares; distance measures (Wasserstein, Jensen-Shannon) on 50,000 rows differ
from their full-data values by far less than the alarm thresholds (see BENCHMARKS.md). Data
quality checks (missing shares, unseen categories, empty or constant columns) are computed on
all rows with pandas, so a rare new category is never lost to sampling. Every summary records
whether and how much each side was sampled."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class SampleInfo:
    """How many rows a side had and how many the report used."""

    rows: int
    used: int

    @property
    def sampled(self) -> bool:
        """True when the report saw a sample rather than every row."""
        return self.used < self.rows

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"rows": self.rows, "used": self.used, "sampled": self.sampled}


def sample_rows(frame: pd.DataFrame, max_rows: int, seed: int) -> tuple[pd.DataFrame, SampleInfo]:
    """At most `max_rows` rows, uniformly at random without replacement (order kept)."""
    if max_rows <= 0:
        raise ValueError(f"monitoring.sample_rows {max_rows}: expected a positive number")
    if len(frame) <= max_rows:
        return frame, SampleInfo(len(frame), len(frame))
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(len(frame), size=max_rows, replace=False))
    return frame.iloc[keep].reset_index(drop=True), SampleInfo(len(frame), max_rows)
