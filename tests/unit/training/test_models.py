"""Training building blocks on generated data with a known structure."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.retrieval import service_features
from serving.models import churn_band, reason_codes
from training.churn import refit_churn, train_churn
from training.clv import fit_formulation, refit_clv, train_clv
from training.config import ChurnParams, ClvParams, SplitParams
from training.datasets import time_split
from training.frames import fit_categories
from training.metrics import (
    clv_metrics,
    lift_top_decile,
    normalized_gini,
    ranking_metrics,
    ranking_table,
    top_share_capture,
)

FEATURES = service_features("churn_v1")


def _customers(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Features for n customers; churn depends on recency and frequency, CLV on spend."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({name: rng.normal(size=n) for name in FEATURES})
    for name in ("rfm_segment", "value_tier", "lifecycle_stage", "country"):
        frame[name] = rng.choice(["a", "b", "c"], n)
    frame["recency_days"] = rng.exponential(60, n)
    frame["frequency_365d"] = rng.poisson(5, n).astype(float)
    frame["monetary_365d"] = rng.gamma(2, 200, n)
    logit = 0.03 * frame["recency_days"] - 0.4 * frame["frequency_365d"]
    churned = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    clv = np.where(churned == 1, 0.0, frame["monetary_365d"] * rng.uniform(0.3, 0.7, n))
    frame["customer_id"] = [f"c{i}" for i in range(n)]
    return frame, churned, clv


def _churn_model(seed: int = 1):
    train, y_train, _ = _customers(3000, 1)
    valid, y_valid, _ = _customers(1000, 2)
    return train_churn(train, y_train, valid, y_valid, FEATURES, ChurnParams(), seed)[0]


def test_split_keeps_outcome_windows_apart() -> None:
    cutoffs = list(pd.date_range("2020-01-01", "2021-12-01", freq="MS", tz="UTC"))
    split = time_split(cutoffs, 90, SplitParams(valid_cutoffs=2))
    assert split.test == cutoffs[-1]
    horizon = pd.Timedelta(days=90)
    assert all(v + horizon <= split.test for v in split.valid)
    assert all(t + horizon <= min(split.valid) for t in split.train)
    assert max(split.train) == pd.Timestamp("2021-05-01", tz="UTC")


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


def test_churn_model_learns_and_is_deterministic() -> None:
    test, y_test, _ = _customers(2000, 3)
    first, second = _churn_model(), _churn_model()
    p = first.predict(test)
    np.testing.assert_array_equal(p, second.predict(test))
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(y_test, p) > 0.75
    assert set(churn_band(first, p)) <= {"low", "medium", "high"}


def test_more_recent_purchase_never_raises_churn_probability() -> None:
    model = _churn_model()
    test, _, _ = _customers(2000, 4)
    before = model.predict(test)
    after = model.predict(test.assign(recency_days=test["recency_days"] * 0.5))
    assert (after <= before + 1e-12).all()
    assert (after < before).mean() > 0.3  # and it does lower it for many customers


def test_customer_id_never_changes_a_score() -> None:
    model = _churn_model()
    test, _, _ = _customers(500, 5)
    renamed = test.assign(customer_id=[f"other-{i}" for i in range(len(test))])
    np.testing.assert_array_equal(model.predict(test), model.predict(renamed))
    assert "customer_id" not in model.columns


def test_clv_model_beats_the_mean_and_never_goes_negative() -> None:
    train, _, y_train = _customers(3000, 6)
    valid, _, y_valid = _customers(1000, 7)
    test, _, y_test = _customers(1000, 8)
    model, info = train_clv(train, y_train, valid, y_valid, FEATURES, ClvParams(), 1)
    p = model.predict(test)
    assert (p >= 0).all()
    assert info["formulation"] in {"two_part", "tweedie", "btyd_tweedie"}
    assert clv_metrics(y_test, p)["mae"] < np.mean(np.abs(y_test - y_train.mean()))


def test_metrics_on_known_values() -> None:
    y = np.array([1, 0, 0, 0, 0, 0, 0, 0, 0, 1])
    p = np.linspace(1, 0, 10)  # customer 0 scored highest
    assert lift_top_decile(y, p) == pytest.approx(5.0)
    values = np.array([100.0, 0, 0, 0, 0, 0, 0, 0, 0, 25.0])
    assert top_share_capture(values, p, 0.2) == pytest.approx(0.8)
    assert normalized_gini(values, values) == pytest.approx(1.0)
    rank = ranking_metrics({"a": ["x", "y"], "b": ["z", "x"]}, {"a": {"y"}, "b": {"q"}}, 2, 4)
    assert rank["hit@2"] == pytest.approx(0.5)
    assert rank["ndcg@2"] == pytest.approx(0.5 * (1 / np.log2(3)))
    assert rank["coverage"] == pytest.approx(3 / 4)


def _ranking_by_hand(
    recs: dict[str, list[str]], actual: dict[str, set[str]], draws: list[str], k: int
) -> dict[str, float]:
    """The textbook definitions, one resampled draw at a time."""
    hits, ndcgs, shown = [], [], set()
    for customer in draws:
        truth, top = actual[customer], recs.get(customer, [])[:k]
        if not truth:
            continue
        shown.update(top)
        hits.append(any(r in truth for r in top))
        gain = sum(1 / np.log2(i + 2) for i, r in enumerate(top) if r in truth)
        ndcgs.append(gain / sum(1 / np.log2(i + 2) for i in range(min(len(truth), k))))
    return {"hit": float(np.mean(hits)), "ndcg": float(np.mean(ndcgs)), "shown": len(shown)}


def test_ranking_table_resamples_like_the_lists_it_summarises() -> None:
    rng = np.random.default_rng(4)
    items = [f"o{i}" for i in range(30)]
    customers = [f"c{i}" for i in range(40)]
    recs = {c: list(rng.choice(items, int(rng.integers(0, 8)), replace=False)) for c in customers}
    actual = {c: set(rng.choice(items, int(rng.integers(0, 4)), replace=False)) for c in customers}
    table = ranking_table(recs, actual, customers, 5, 30)
    for _ in range(20):
        idx = rng.integers(0, len(customers), len(customers))
        found = table.summary(idx)
        expected = _ranking_by_hand(recs, actual, [customers[i] for i in idx], 5)
        assert found["hit@5"] == pytest.approx(expected["hit"])
        # a list shorter than k is not rewarded as if it were full
        assert found["ndcg@5"] == pytest.approx(expected["ndcg"])
        assert found["coverage"] == pytest.approx(expected["shown"] / 30)


def test_reason_codes_name_the_drivers_in_words() -> None:
    model = _churn_model()
    test, _, _ = _customers(200, 11)
    lapsed = test.assign(recency_days=400.0, frequency_365d=0.0).head(5)
    x = model.frame_matrix(lapsed)
    reasons = reason_codes(model, x, lapsed.to_dict("records"), 3)
    assert len(reasons) == 5
    for r in reasons:
        up = [x.feature for x in r["up"]]
        assert "recency_days" in up or "frequency_365d" in up
        assert all(x.contribution > 0 for x in r["up"])
        assert all(x.contribution < 0 for x in r["down"])
        assert "raises the churn risk" in r["up"][0].text
    contrib = model.contributions(x, "churn")
    np.testing.assert_allclose(
        contrib.sum(axis=1) + model.boosters["churn"].predict(x, pred_contrib=True)[:, -1],
        model.boosters["churn"].predict(x, raw_score=True),
        rtol=1e-6,
    )


def _lognormal_spend(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Buyers (60%) spend exp(mu + 0.9 z) with mu driven by one feature: skewed, so the
    median spend is far below the mean."""
    frame, _, _ = _customers(n, seed)
    rng = np.random.default_rng(seed + 100)
    mu = 5 + 0.5 * frame["monetary_365d"].to_numpy() / 400
    buys = rng.random(n) < 0.6
    return frame, np.where(buys, np.exp(mu + 0.9 * rng.normal(size=n)), 0.0)


def test_two_part_clv_predicts_the_mean_spend_not_the_median() -> None:
    (train, y), (valid, yv), (test, yt) = (_lognormal_spend(4000, s) for s in (21, 22, 23))
    categories = fit_categories(train, FEATURES)
    model = fit_formulation("two_part", FEATURES, categories, train, y, valid, yv, ClvParams(), 1)
    assert model.meta["spend_variance"] == pytest.approx(0.81, rel=0.2)
    bias = clv_metrics(yt, model.predict(test))["total_bias"]
    median_model = model.__class__(
        **{**model.__dict__, "meta": {**model.meta, "spend_variance": 0}}
    )
    median_bias = clv_metrics(yt, median_model.predict(test))["total_bias"]
    assert abs(bias) < 0.1
    assert median_bias < -0.25  # exp(mu) alone is about a third below the mean


def test_refit_learns_from_training_and_validation_rows_for_the_validated_rounds() -> None:
    train, y_train, c_train = _customers(3000, 31)
    valid, y_valid, c_valid = _customers(1000, 32)
    observed = pd.concat([train, valid], ignore_index=True)
    churn = train_churn(train, y_train, valid, y_valid, FEATURES, ChurnParams(), 1)[0]
    refitted = refit_churn(churn, observed, np.r_[y_train, y_valid], ChurnParams(), 1)
    rounds = churn.boosters["churn"].best_iteration
    assert refitted.boosters["churn"].num_trees() == rounds
    assert refitted.meta["calibrator"] == churn.meta["calibrator"]
    assert not np.allclose(refitted.predict(valid), churn.predict(valid))
    clv, _ = train_clv(train, c_train, valid, c_valid, FEATURES, ClvParams(), 1)
    clv_refitted = refit_clv(clv, observed, np.r_[c_train, c_valid], ClvParams(), 1)
    for name, booster in clv.boosters.items():
        assert clv_refitted.boosters[name].num_trees() == booster.best_iteration
    assert clv_refitted.meta == clv.meta


def test_a_short_history_validates_on_fewer_cutoffs_rather_than_none() -> None:
    cutoffs = list(pd.date_range("2020-01-01", "2020-09-01", freq="MS", tz="UTC"))
    split = time_split(cutoffs, 100, SplitParams(valid_cutoffs=2))
    horizon = pd.Timedelta(days=100)
    assert split.test == cutoffs[-1] and len(split.valid) == 1
    assert all(t + horizon <= split.valid[0] for t in split.train) and split.train


CLV_FEATURES = service_features("clv_v1")


def _classical_value_with_a_missed_driver(
    n: int, seed: int
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """A classical expected spend that is right except for one driver it cannot see: the
    true mean is base x exp(0.6 x driver), spend is drawn around it (zero for 40%)."""
    frame, _, _ = _customers(n, seed)
    for name in CLV_FEATURES:
        if name not in frame:
            frame[name] = np.random.default_rng(seed + 7).normal(size=n)
    rng = np.random.default_rng(seed + 200)
    base = rng.gamma(2, 150, n)
    frame["btyd_expected_spend_clv_horizon"] = base
    driver = frame["frequency_365d"].to_numpy() - 5
    mean = base * np.exp(0.6 * driver / 2)
    buys = rng.random(n) < 0.6
    spend = np.where(buys, rng.gamma(2, mean / 2 / 0.6), 0.0)
    return frame, spend, mean


def test_btyd_tweedie_corrects_the_classical_value_multiplicatively() -> None:
    (train, y, _), (valid, yv, _), (test, yt, truth) = (
        _classical_value_with_a_missed_driver(4000, s) for s in (41, 42, 43)
    )
    categories = fit_categories(train, CLV_FEATURES)
    params = ClvParams()
    model = fit_formulation(
        "btyd_tweedie", CLV_FEATURES, categories, train, y, valid, yv, params, 1
    )
    p = model.predict(test)
    base = test["btyd_expected_spend_clv_horizon"].to_numpy()
    # It learns the driver the classical value misses: closer to the true mean than it.
    assert np.mean(np.abs(p - truth)) < 0.6 * np.mean(np.abs(base - truth))
    assert clv_metrics(yt, p)["mae"] < clv_metrics(yt, base)["mae"]
    # A missing classical value is the training mean, and the refit uses its own.
    missing = test.assign(btyd_expected_spend_clv_horizon=np.nan)
    assert np.isfinite(model.predict(missing)).all()
    observed = pd.concat([train, valid], ignore_index=True)
    refitted = refit_clv(model, observed, np.r_[y, yv], params, 1)
    assert refitted.boosters["value"].num_trees() == model.boosters["value"].best_iteration
    expected_fill = observed["btyd_expected_spend_clv_horizon"].mean()
    assert refitted.meta["base_fill"] == pytest.approx(expected_fill)


def test_btyd_tweedie_is_not_a_choice_without_the_classical_value() -> None:
    train, _, y_train = _customers(2000, 51)
    valid, _, y_valid = _customers(800, 52)
    assert "btyd_expected_spend_clv_horizon" not in FEATURES
    _, info = train_clv(train, y_train, valid, y_valid, FEATURES, ClvParams(), 1)
    assert {name.split()[0] for name in info["validation_mae"]} == {"two_part", "tweedie"}
    categories = fit_categories(train, FEATURES)
    with pytest.raises(ValueError, match="btyd_expected_spend_clv_horizon"):
        fit_formulation(
            "btyd_tweedie", FEATURES, categories, train, y_train, valid, y_valid, ClvParams(), 1
        )
