"""Segments: RFM scores and named segments, value tiers and lifecycle stages.

Scores are relative to the customers scored at the same cutoff. A partition is scored against
the population of its cutoff: the sorted values of every customer (`Population`, small: a few
numbers per customer), built from all partitions before any is scored, so the scores are
those of ranking the whole snapshot at once."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.config import SegmentParams
from features.engineering import to_us
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


# What the scores rank: (column of the population, feature it is taken from, sign).
RANKED = {"recency": ("recency_days", -1.0), "frequency": ("frequency_365d", 1.0)}
RANKED["monetary"] = ("monetary_365d", 1.0)


@dataclass(frozen=True)
class Population:
    """Per cutoff (int us), the sorted values of every customer's ranked features (NaN
    dropped): `-recency_days`, `frequency_365d`, `monetary_365d`."""

    values: dict[int, dict[str, np.ndarray]]


def population_of(features: pd.DataFrame) -> Population:
    """The population of a snapshot (or of the concatenated summaries of its partitions)."""
    keys = to_us(features[EVENT_TIMESTAMP])
    values: dict[int, dict[str, np.ndarray]] = {}
    for key in np.unique(keys):
        rows = keys == key
        values[int(key)] = {
            name: np.sort(_finite(sign * features[column].to_numpy(np.float64)[rows]))
            for name, (column, sign) in RANKED.items()
        }
    return Population(values)


def _finite(values: np.ndarray) -> np.ndarray:
    return values[~np.isnan(values)]


def rank_pct(values: np.ndarray, population: np.ndarray, ascending: bool) -> np.ndarray:
    """pandas' `rank(method="average", pct=True)` of each value among `population` (sorted,
    no NaN; the values are members of it): ties share their mean rank; NaN stays NaN."""
    left = np.searchsorted(population, values, "left")
    right = np.searchsorted(population, values, "right")
    n = len(population)
    rank = (left + 1 + right) / 2 if ascending else (2 * n - left - right + 1) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(np.isnan(values), np.nan, rank / n)


def _ranked(
    features: pd.DataFrame, population: Population, name: str, ascending: bool
) -> np.ndarray:
    column, sign = RANKED[name]
    values = sign * features[column].to_numpy(np.float64)
    keys = to_us(features[EVENT_TIMESTAMP])
    out = np.full(len(features), np.nan)
    for key in np.unique(keys):
        rows = keys == key
        out[rows] = rank_pct(values[rows], population.values[int(key)][name], ascending)
    return out


def _quintile(pct: np.ndarray) -> np.ndarray:
    """1..5 from a rank percentile; missing values score 1."""
    with np.errstate(invalid="ignore"):
        score = np.clip(np.ceil(pct * 5), 1, 5)
    return np.where(np.isnan(score), 1, score).astype(np.int64)


def rfm_segment(r: pd.Series, f: pd.Series) -> pd.Series:
    """Named segment from recency and frequency scores."""
    lookup = {cell: name for name, cells in _RFM_GRID.items() for cell in cells}
    return pd.Series(
        [lookup[(a, b)] for a, b in zip(r, f, strict=True)], index=r.index, dtype="string"
    )


def add_segments(
    features: pd.DataFrame,
    params: SegmentParams,
    active_window_days: int,
    population: Population | None = None,
) -> pd.DataFrame:
    """Add r/f/m scores, RFM segment, value tier and lifecycle stage to a feature snapshot,
    ranking each row among `population` at its cutoff (default: the rows of `features`).

    Lapsed = no purchase in the active window (the same window that defines churn's population).
    """
    out = features.copy()
    population = population or population_of(out)
    # Recent purchase = high score; customers who never bought score 1.
    out["r_score"] = _quintile(_ranked(out, population, "recency", True))
    out["f_score"] = _quintile(_ranked(out, population, "frequency", True))
    out["m_score"] = _quintile(_ranked(out, population, "monetary", True))
    out["rfm_segment"] = rfm_segment(out["r_score"], out["f_score"])

    spend_rank = _ranked(out, population, "monetary", False)
    with np.errstate(invalid="ignore"):
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
