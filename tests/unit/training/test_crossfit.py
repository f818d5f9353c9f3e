"""The refit's data and its out-of-sample CLV mean correction: the split's gap cutoffs and
cross-fitted values."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.retrieval import service_features
from training import contenders
from training.clv import train_clv
from training.config import ClvParams, SplitParams, TrainingParams
from training.crossfit import customer_folds
from training.datasets import time_split
from training.pipeline import clv_cross_fitted

CLV_FEATURES = service_features("clv_v1")
PARAMS = TrainingParams(
    clv=ClvParams(formulations=["tweedie"], tweedie_powers=[1.5], lgbm={"n_estimators": 200}),
)


def _frame(features: list[str], n: int, seed: int, prefix: str) -> pd.DataFrame:
    """Noise features and RFM columns; the customers are `prefix`0, `prefix`1, ..."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({name: rng.normal(size=n) for name in features})
    for name in ("rfm_segment", "value_tier", "lifecycle_stage", "country"):
        if name in frame:
            frame[name] = rng.choice(["a", "b", "c"], n)
    frame["recency_days"] = rng.exponential(60, n)
    frame["frequency_365d"] = rng.poisson(5, n).astype(float)
    frame["monetary_365d"] = rng.gamma(2, 200, n)
    frame["customer_id"] = [f"{prefix}{i}" for i in range(n)]
    return frame


def _spend(frame: pd.DataFrame, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mean = frame["monetary_365d"].to_numpy() * 0.5
    return np.where(rng.random(len(frame)) < 0.6, rng.gamma(2, mean / 2 / 0.6), 0.0)


def _clv() -> tuple[object, list[contenders.Contender], pd.DataFrame, np.ndarray]:
    train, valid = _frame(CLV_FEATURES, 2000, 1, "t"), _frame(CLV_FEATURES, 1000, 2, "v")
    y_train, y_valid = _spend(train, 1), _spend(valid, 2)
    model, _ = train_clv(train, y_train, valid, y_valid, CLV_FEATURES, PARAMS.clv, 0)
    observed = pd.concat([train, valid], ignore_index=True)
    return model, contenders.clv_contenders(model, observed), observed, np.r_[y_train, y_valid]


def test_customer_folds_keep_a_customer_together_and_use_every_fold() -> None:
    customers = pd.Series([f"c{i % 50}" for i in range(400)])
    folds = customer_folds(customers, 3, 7)
    assert set(folds) == {0, 1, 2}
    assert (pd.Series(folds).groupby(customers).nunique() == 1).all()
    np.testing.assert_array_equal(folds, customer_folds(customers, 3, 7))


def test_the_clv_mean_correction_never_sees_the_rows_it_is_measured_on() -> None:
    model, options, observed, y = _clv()
    before = clv_cross_fitted(model, options, observed, y, PARAMS)["lightgbm"]
    folds = customer_folds(observed["customer_id"], PARAMS.split.refit_folds, PARAMS.seed)
    # Ten times the spend of one fold's customers: their own values do not move (scored by
    # models fitted without them), every other row's do (their models learned it).
    held = folds == 0
    after = clv_cross_fitted(model, options, observed, np.where(held, 10 * y, y), PARAMS)
    np.testing.assert_allclose(after["lightgbm"][held], before[held])
    assert np.mean(after["lightgbm"][~held]) > 1.5 * np.mean(before[~held])


def test_the_gap_holds_the_observed_cutoffs_between_training_and_validation() -> None:
    cutoffs = list(pd.date_range("2020-01-01", "2021-12-01", freq="MS", tz="UTC"))
    split = time_split(cutoffs, 90, SplitParams(valid_cutoffs=2))
    horizon = pd.Timedelta(days=90)
    assert split.gap and all(max(split.train) < g < min(split.valid) for g in split.gap)
    assert all(g + horizon <= split.test for g in split.gap)
    # Every cutoff observed before the test cutoff is in one of train, gap or valid.
    observed = [c for c in cutoffs if c + horizon <= split.test and c >= min(split.train)]
    assert sorted([*split.train, *split.gap, *split.valid]) == observed
    stamps = pd.Series(cutoffs)
    assert set(split.part(stamps)[stamps.isin(split.gap)]) == {"gap"}
