"""Reason codes: each customer's top drivers up and down, from LightGBM contributions,
in words taken from the feature descriptions."""

from __future__ import annotations

from dataclasses import dataclass

import lightgbm as lgb
import numpy as np
import pandas as pd

from features.names import reason_text
from training.frames import FeatureSpec


@dataclass(frozen=True)
class Reason:
    """One driver: the feature, its value, its contribution (in the model's raw score) and
    a sentence for people."""

    feature: str
    value: object
    contribution: float
    text: str


def contributions(booster: lgb.Booster, spec: FeatureSpec, frame: pd.DataFrame) -> pd.DataFrame:
    """Per-row, per-feature contributions to the raw score (the last column is the bias)."""
    raw = booster.predict(spec.matrix(frame), pred_contrib=True)
    return pd.DataFrame(np.asarray(raw), index=frame.index, columns=[*spec.columns, "_bias"])


def reason_codes(
    booster: lgb.Booster, spec: FeatureSpec, frame: pd.DataFrame, target: str, top: int = 3
) -> list[dict[str, list[Reason]]]:
    """For each row: the `top` features pushing `target` up and the `top` pushing it down."""
    contrib = contributions(booster, spec, frame).drop(columns="_bias")
    out = []
    for i, (_, row) in enumerate(contrib.iterrows()):
        ordered = row.sort_values(kind="stable")
        reasons: dict[str, list[Reason]] = {"up": [], "down": []}
        for direction, names in (("up", ordered.index[::-1]), ("down", ordered.index)):
            for name in names[:top]:
                c = float(ordered[name])
                if (c > 0) != (direction == "up") or c == 0:
                    continue
                value = frame.iloc[i][name] if name in frame else None
                text = reason_text(name, value, c, target)
                reasons[direction].append(Reason(name, value, c, text))
        out.append(reasons)
    return out
