"""RFM scores, named segments, value tiers and lifecycle stages."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.config import SegmentParams
from features.segments import RFM_SEGMENTS, add_segments, population_of, rfm_segment


def test_every_rfm_cell_has_one_segment() -> None:
    r, f = np.meshgrid(range(1, 6), range(1, 6))
    names = rfm_segment(pd.Series(r.ravel()), pd.Series(f.ravel()))
    assert set(names) == set(RFM_SEGMENTS)
    assert rfm_segment(pd.Series([5]), pd.Series([5])).iloc[0] == "Champions"
    assert rfm_segment(pd.Series([1]), pd.Series([1])).iloc[0] == "Hibernating"


def test_scores_tiers_and_stages() -> None:
    n = 10
    t = pd.Timestamp("2021-01-01", tz="UTC")
    frame = pd.DataFrame(
        {
            "event_timestamp": t,
            "recency_days": [1.0, 2, 3, 4, 5, 6, 7, 8, 9, 400],
            "tenure_days": [30.0] + [500.0] * 9,
            "frequency_365d": np.arange(n, 0, -1),
            "monetary_365d": np.arange(n, 0, -1) * 100.0,
            "gap_mean_days": [np.nan, 1, 1, 1, 1, 1, 1, 1, 1, 10],
            "gap_ratio": [np.nan, 2, 3, 1, 1, 1, 1, 1, 1, 40],
        }
    )
    out = add_segments(frame, SegmentParams(), active_window_days=365)
    assert out["r_score"].tolist() == [5, 5, 4, 4, 3, 3, 2, 2, 1, 1]
    assert out["m_score"].iloc[0] == 5 and out["m_score"].iloc[-1] == 1
    assert out["value_tier"].tolist() == ["high"] * 2 + ["medium"] * 3 + ["low"] * 5
    assert out["lifecycle_stage"].tolist() == (
        ["new", "active", "at_risk"] + ["active"] * 6 + ["lapsed"]
    )
    # scores are relative to the same cutoff only
    later = frame.assign(event_timestamp=t + pd.Timedelta(days=30), recency_days=50.0)
    both = add_segments(pd.concat([frame, later]), SegmentParams(), 365)
    assert both["r_score"].iloc[:n].tolist() == out["r_score"].tolist()


def _pandas_quintile(values: pd.Series, groups: pd.Series) -> np.ndarray:
    """The scores as pandas ranks them over the whole snapshot at once (the reference)."""
    pct = values.groupby(groups).rank(method="average", pct=True)
    return np.ceil(pct * 5).clip(1, 5).fillna(1).astype(np.int64).to_numpy()


def test_partitions_scored_against_the_population_match_ranking_everyone_at_once() -> None:
    rng = np.random.default_rng(4)
    n = 3_000
    stamps = pd.to_datetime(["2021-01-01", "2021-02-01"], utc=True)
    frame = pd.DataFrame(
        {
            "event_timestamp": stamps[rng.integers(0, 2, n)],
            # ties (rounded values) and missing recencies (never bought)
            "recency_days": np.where(rng.random(n) < 0.1, np.nan, rng.integers(0, 60, n)),
            "tenure_days": 400.0,
            "frequency_365d": rng.poisson(2, n).astype(float),
            "monetary_365d": np.round(rng.gamma(1.0, 50.0, n), 0),
            "gap_mean_days": 10.0,
            "gap_ratio": 1.0,
        }
    )
    population = population_of(frame)
    part = rng.integers(0, 3, n)
    parts = [add_segments(frame[part == k], SegmentParams(), 365, population) for k in range(3)]
    scored = pd.concat(parts).sort_index()
    by = frame["event_timestamp"]
    assert (scored["r_score"].to_numpy() == _pandas_quintile(-frame["recency_days"], by)).all()
    assert (scored["f_score"].to_numpy() == _pandas_quintile(frame["frequency_365d"], by)).all()
    assert (scored["m_score"].to_numpy() == _pandas_quintile(frame["monetary_365d"], by)).all()
    spend = frame["monetary_365d"].groupby(by).rank(method="average", pct=True, ascending=False)
    high = scored["value_tier"].to_numpy() == "high"
    assert (high == (spend <= 0.2).to_numpy()).all()
