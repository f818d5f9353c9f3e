"""Feature matrices for LightGBM: fixed column order and categories learned at training."""

from __future__ import annotations

from dataclasses import dataclass, field

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
