"""Campaign target lists: the best customers within the budget, and a random control group."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.publish import write_atomic
from serving.targets import target_list


def _scores(n: int = 100) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "customer_id": [f"c{i:03d}" for i in range(n)],
            "retention_priority": rng.uniform(0, 100, n),
            "clv": rng.uniform(0, 1000, n),
            "offer_1_expected_value": rng.uniform(0, 5, n),
        }
    )


def test_budget_takes_the_highest_objective() -> None:
    scores = _scores()
    out = target_list(scores, "value", 20, 0.1, seed=1)
    assert len(out) == 20
    assert set(out["customer_id"]) == set(scores.nlargest(20, "clv")["customer_id"])
    assert out["priority_rank"].tolist() == list(range(1, 21))
    assert out["objective_value"].is_monotonic_decreasing


def test_control_group_is_exact_random_and_reproducible() -> None:
    scores = _scores()
    a = target_list(scores, "retention", 50, 0.1, seed=1)
    b = target_list(scores, "retention", 50, 0.1, seed=1)
    c = target_list(scores, "retention", 50, 0.1, seed=2)
    assert (a["group"] == "control").sum() == 5
    pd.testing.assert_frame_equal(a, b)
    assert set(a.loc[a["group"] == "control", "customer_id"]) != set(
        c.loc[c["group"] == "control", "customer_id"]
    )


def test_bad_requests_are_refused_with_a_reason() -> None:
    with pytest.raises(ValueError, match="control"):
        target_list(_scores(), "value", 10, 1.5, seed=0)
    with pytest.raises(ValueError, match="budget"):
        target_list(_scores(), "value", 0, 0.1, seed=0)


def test_failed_write_keeps_the_previous_file(tmp_path: Path) -> None:
    path = tmp_path / "scores.parquet"
    write_atomic(_scores(), path)
    before = path.read_bytes()
    unwritable = pd.DataFrame({"x": [object(), object()]})  # parquet cannot store these
    with pytest.raises(Exception):  # noqa: B017 - whatever pyarrow raises
        write_atomic(unwritable, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["scores.parquet"]
