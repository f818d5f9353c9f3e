"""sample_rows: bounded by max_rows, uniform without replacement, seeded, order kept."""

from __future__ import annotations

import numpy as np
import pytest

from monitoring.sampling import SampleInfo, sample_rows
from tests.unit.monitoring.generated import customers


def test_a_frame_within_the_limit_is_used_whole() -> None:
    frame = customers(0, rows=500)
    out, info = sample_rows(frame, 500, seed=0)
    assert out is frame
    assert info == SampleInfo(500, 500) and not info.sampled
    assert info.as_dict() == {"rows": 500, "used": 500, "sampled": False}


def test_a_larger_frame_is_cut_to_max_rows_without_replacement_in_order() -> None:
    frame = customers(0, rows=5000)
    out, info = sample_rows(frame, 800, seed=0)
    assert len(out) == 800 and list(out.index) == list(range(800))
    assert info.as_dict() == {"rows": 5000, "used": 800, "sampled": True}
    rows = out["row"].to_numpy()
    assert len(set(rows)) == 800  # no row twice
    assert (np.diff(rows) > 0).all()  # original order kept
    # The rows are the originals, unchanged.
    assert out.equals(frame.set_index("row").loc[rows].reset_index())


def test_the_sample_is_seeded() -> None:
    frame = customers(0, rows=5000)
    first = sample_rows(frame, 800, seed=3)[0]["row"].tolist()
    assert sample_rows(frame, 800, seed=3)[0]["row"].tolist() == first
    assert sample_rows(frame, 800, seed=4)[0]["row"].tolist() != first


def test_the_sample_is_uniform() -> None:
    frame = customers(0, rows=20_000)
    out = sample_rows(frame, 2000, seed=0)[0]
    # Rows from every part of the frame, in proportion: no head or tail bias.
    quarters = np.bincount(out["row"].to_numpy() // 5000, minlength=4)
    assert all(400 <= q <= 600 for q in quarters), quarters
    assert out["recency_days"].mean() == pytest.approx(frame["recency_days"].mean(), abs=1.5)


@pytest.mark.parametrize("bad", [0, -1])
def test_a_non_positive_limit_is_refused(bad: int) -> None:
    with pytest.raises(ValueError, match=f"monitoring.sample_rows {bad}: expected a positive"):
        sample_rows(customers(0, rows=10), bad, seed=0)
