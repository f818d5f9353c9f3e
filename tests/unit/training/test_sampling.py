"""Training on a sample of customers when the label rows exceed the limit (#11)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from training.datasets import sample_customers


def _rows(customers: int = 1_000, cutoffs: int = 6) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    churner = rng.random(customers) < 0.2  # a fifth of the customers churn at some cutoff
    ids = np.repeat([f"c{i}" for i in range(customers)], cutoffs)
    label = np.repeat(churner, cutoffs) & (np.tile(np.arange(cutoffs), customers) == cutoffs - 1)
    stamps = np.tile(pd.date_range("2021-01-01", periods=cutoffs, freq="MS", tz="UTC"), customers)
    return pd.DataFrame({"customer_id": ids, "event_timestamp": stamps, "churned": label * 1})


def test_below_the_limit_every_row_is_kept() -> None:
    rows = _rows()
    kept, sample = sample_customers(rows, "churned", len(rows), seed=1)
    assert sample is None and kept is rows


def test_a_seeded_stratified_sample_of_whole_customers() -> None:
    rows = _rows()
    kept, sample = sample_customers(rows, "churned", len(rows) // 4, seed=1)
    assert sample is not None and sample["rows"] == len(kept)
    # Whole customers: every cutoff of a sampled customer.
    assert set(kept.groupby("customer_id").size()) == {6}
    # The positive share of customers is that of the population (stratified).
    share = rows.groupby("customer_id")["churned"].max().mean()
    kept_share = kept.groupby("customer_id")["churned"].max().mean()
    assert abs(kept_share - share) < 0.01
    assert sample["customers"] == kept["customer_id"].nunique() == 250
    again, _ = sample_customers(rows, "churned", len(rows) // 4, seed=1)
    other, _ = sample_customers(rows, "churned", len(rows) // 4, seed=2)
    pd.testing.assert_frame_equal(again, kept)
    assert set(other["customer_id"]) != set(kept["customer_id"])
