"""RFM scores, named segments, value tiers and lifecycle stages."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.config import SegmentParams
from features.segments import RFM_SEGMENTS, add_segments, rfm_segment


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
