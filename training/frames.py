"""Feature matrices for LightGBM: fixed column order and categories learned at training."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from features.names import ALL_FEATURES


@dataclass(frozen=True)
class FeatureSpec:
    """Columns a model reads and the categories of its string columns (unknown -> missing)."""

    columns: tuple[str, ...]
    categories: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def fit(cls, frame: pd.DataFrame, columns: list[str]) -> FeatureSpec:
        """Learn the categories of the string columns from training rows."""
        categories = {
            c: tuple(sorted(frame[c].dropna().astype(str).unique()))
            for c in columns
            if ALL_FEATURES[c].dtype == "string"
        }
        return cls(tuple(columns), categories)

    def matrix(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The model input: numbers as float64, strings as pandas categoricals."""
        out: dict[str, object] = {}
        for c in self.columns:
            if c in self.categories:
                values = (
                    frame[c].astype("string")
                    if c in frame
                    else pd.Series(pd.NA, index=frame.index, dtype="string")
                )
                out[c] = pd.Categorical(values, categories=list(self.categories[c]))
            else:
                out[c] = (
                    pd.to_numeric(frame[c], errors="coerce").astype("float64")
                    if c in frame
                    else pd.Series(float("nan"), index=frame.index)
                )
        return pd.DataFrame(out, index=frame.index)


def fit_early_stopped(
    params: dict[str, Any],
    x: pd.DataFrame,
    y: np.ndarray,
    xv: pd.DataFrame,
    yv: np.ndarray,
    seed: int,
    rounds: int,
    patience: int,
) -> lgb.Booster:
    """LightGBM on (x, y), stopped when the validation loss has not improved for `patience`
    rounds; deterministic for a given seed (2 threads)."""
    full = {**params, "seed": seed, "deterministic": True, "num_threads": 2}
    train_set = lgb.Dataset(x, y, free_raw_data=False)
    valid_set = lgb.Dataset(xv, yv, reference=train_set)
    return lgb.train(
        full,
        train_set,
        rounds,
        valid_sets=[valid_set],
        callbacks=[lgb.early_stopping(patience, verbose=False)],
    )
