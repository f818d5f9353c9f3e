"""Segments: RFM scores and named segments, value tiers and lifecycle stages.

Scores are relative to the customers scored at the same cutoff, so this runs on the combined
snapshot (one row per customer and cutoff), after the partition-wise features."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.config import SegmentParams
from features.names import EVENT_TIMESTAMP

# The classic RFM grid on (recency score, frequency score), both 1..5.
_RFM_GRID = {
    "Champions": [(5, 4), (5, 5), (4, 5)],
    "Loyal": [(3, 4), (3, 5), (4, 4)],
    "Potential Loyalists": [(4, 2), (4, 3), (5, 2), (5, 3)],
    "New Customers": [(5, 1)],
    "Promising": [(4, 1)],
    "Need Attention": [(3, 3)],
    "About To Sleep": [(3, 1), (3, 2)],
    "At Risk": [(1, 3), (1, 4), (2, 3), (2, 4)],
    "Cannot Lose Them": [(1, 5), (2, 5)],
    "Hibernating": [(1, 1), (1, 2), (2, 1), (2, 2)],
}
RFM_SEGMENTS: tuple[str, ...] = tuple(_RFM_GRID)
VALUE_TIERS = ("high", "medium", "low")
LIFECYCLE_STAGES = ("new", "active", "at_risk", "lapsed")


def _quintile(values: pd.Series, groups: pd.Series, ascending: bool) -> pd.Series:
    """1..5 by rank within each cutoff; ties share a score; missing values score 1."""
    pct = values.groupby(groups).rank(method="average", pct=True, ascending=ascending)
    return np.ceil(pct * 5).clip(1, 5).fillna(1).astype(np.int64)


def rfm_segment(r: pd.Series, f: pd.Series) -> pd.Series:
    """Named segment from recency and frequency scores."""
    lookup = {cell: name for name, cells in _RFM_GRID.items() for cell in cells}
    return pd.Series(
        [lookup[(a, b)] for a, b in zip(r, f, strict=True)], index=r.index, dtype="string"
    )


def add_segments(
    features: pd.DataFrame, params: SegmentParams, active_window_days: int
) -> pd.DataFrame:
    """Add r/f/m scores, RFM segment, value tier and lifecycle stage to a feature snapshot.

    Lapsed = no purchase in the active window (the same window that defines churn's population).
    """
    out = features.copy()
    by = out[EVENT_TIMESTAMP]
    # Recent purchase = high score; customers who never bought score 1.
    out["r_score"] = _quintile(-out["recency_days"], by, ascending=True)
    out["f_score"] = _quintile(out["frequency_365d"], by, ascending=True)
    out["m_score"] = _quintile(out["monetary_365d"], by, ascending=True)
    out["rfm_segment"] = rfm_segment(out["r_score"], out["f_score"])

    spend_rank = out["monetary_365d"].groupby(by).rank(method="average", pct=True, ascending=False)
    tier = np.where(
        spend_rank <= params.high_value_share,
        "high",
        np.where(spend_rank <= 1 - params.low_value_share, "medium", "low"),
    )
    out["value_tier"] = pd.Series(tier, index=out.index, dtype="string")

    recency, tenure = out["recency_days"], out["tenure_days"]
    at_risk = (out["gap_ratio"] > params.at_risk_gap_ratio) | (
        out["gap_mean_days"].isna() & (recency > params.new_customer_days)
    )
    stage = np.select(
        [
            recency.isna() | (recency >= active_window_days),
            tenure < params.new_customer_days,
            at_risk,
        ],
        ["lapsed", "new", "at_risk"],
        default="active",
    )
    out["lifecycle_stage"] = pd.Series(stage, index=out.index, dtype="string")
    return out
