"""The model runtime (serving/models.py): the DataFrame path (batch scoring, training) and the
row-dict path (the API) give the same numbers, a saved bundle predicts what the trained one
did, and the math (calibration, CLV, percentiles, offer rules, reasons) behaves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from serving.models import (
    BundleModel,
    calibrate,
    churn_band,
    churn_flag,
    churn_probability,
    clv_percentile,
    clv_tier,
    clv_value,
    rank_offers,
    reason_codes,
    recommend,
    set_population,
)
from tests.unit.training.data import NBO_FEATURES, pairs_frame
from tests.unit.training.test_models import FEATURES, _customers
from training.churn import train_churn
from training.clv import fit_formulation
from training.config import ChurnParams, ClvParams, NboParams
from training.frames import fit_categories
from training.nbo import train_nbo

# A churn model that also reads a category, to cover unseen categories.
CHURN_FEATURES = [*FEATURES, "rfm_segment"]
CLV_FEATURES = [*FEATURES, "rfm_segment", "value_tier", "country"]


def rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Row dicts as the online store gives them: missing values are None."""
    return [
        {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()}
        for r in frame.to_dict("records")
    ]


def awkward(n: int, seed: int) -> pd.DataFrame:
    """Test customers with missing numbers, missing and never-seen categories."""
    frame, _, _ = _customers(n, seed)
    frame.loc[::7, "recency_days"] = np.nan
    frame.loc[::5, "rfm_segment"] = "never-seen"
    frame.loc[::11, "rfm_segment"] = None
    frame.loc[::3, "country"] = np.nan
    frame.loc[::13, "monetary_365d"] = np.nan
    return frame


@pytest.fixture(scope="module", params=["isotonic", "platt"])
def churn(request: pytest.FixtureRequest) -> BundleModel:
    train, y_train, _ = _customers(2000, 1)
    valid, y_valid, _ = _customers(800, 2)
    params = ChurnParams(calibration=[request.param])
    model, info = train_churn(train, y_train, valid, y_valid, CHURN_FEATURES, params, 3)
    assert info["calibration"] == request.param
    return model


@pytest.fixture(scope="module", params=["two_part", "tweedie"])
def clv(request: pytest.FixtureRequest) -> BundleModel:
    train, _, y_train = _customers(2000, 1)
    valid, _, y_valid = _customers(800, 2)
    categories = fit_categories(train, CLV_FEATURES)
    model = fit_formulation(
        request.param, CLV_FEATURES, categories, train, y_train, valid, y_valid, ClvParams(), 5
    )
    set_population(model, model.predict(_customers(500, 3)[0]))
    return model


def test_churn_frame_and_row_paths_agree(churn: BundleModel) -> None:
    test = awkward(300, 4)
    from_frame = churn_probability(churn, churn.frame_matrix(test))
    from_rows = churn_probability(churn, churn.matrix(rows(test)))
    np.testing.assert_allclose(from_frame, from_rows, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(churn.predict(test), from_frame)
    assert np.isnan(churn.frame_matrix(test)[::5, CHURN_FEATURES.index("rfm_segment")]).all()
    assert ((from_frame >= 0) & (from_frame <= 1)).all()
    np.testing.assert_array_equal(churn_band(churn, from_frame), churn_band(churn, from_rows))
    np.testing.assert_array_equal(churn_flag(churn, from_frame), from_frame >= 0.5)


def test_clv_frame_and_row_paths_agree_with_percentiles_and_tiers(clv: BundleModel) -> None:
    test = awkward(300, 4)
    from_frame = clv_value(clv, clv.frame_matrix(test))
    from_rows = clv_value(clv, clv.matrix(rows(test)))
    np.testing.assert_allclose(from_frame, from_rows, rtol=0, atol=1e-12)
    assert (from_frame >= 0).all()
    pct = clv_percentile(clv, from_frame)
    np.testing.assert_array_equal(pct, clv_percentile(clv, from_rows))
    np.testing.assert_array_equal(clv_tier(clv, pct), clv_tier(clv, clv_percentile(clv, from_rows)))
    # The percentile places a value among the test population's predictions.
    q = np.asarray(clv.meta["quantiles"])
    assert clv_percentile(clv, np.array([np.median(q)]))[0] == pytest.approx(50, abs=2)
    assert clv_percentile(clv, np.array([q[-1] + 1, -1.0])).tolist() == [100, 0]
    assert clv_tier(clv, np.array([85.0, 60.0, 10.0])).tolist() == ["high", "medium", "low"]


def test_a_saved_bundle_predicts_what_the_trained_one_did(
    churn: BundleModel, clv: BundleModel, tmp_path: Path
) -> None:
    test = awkward(200, 6)
    for model in (churn, clv):
        loaded = BundleModel.from_folder(model.save(tmp_path / model.kind), "7@champion")
        assert loaded.version == "7@champion" and loaded.meta == model.meta
        assert loaded.columns == model.columns and loaded.codes == model.codes
        np.testing.assert_array_equal(loaded.predict(test), model.predict(test))
        np.testing.assert_array_equal(
            loaded.frame_matrix(test), loaded.matrix(rows(test)), strict=True
        )


def test_encoding_of_odd_values() -> None:
    model = BundleModel.create("churn", ["recency_days", "rfm_segment"], {"rfm_segment": ["a"]}, {})
    frame = pd.DataFrame(
        {
            "recency_days": pd.Series([1, None, 3], dtype="Int64"),
            "rfm_segment": pd.Series(["a", None, "b"], dtype="string"),
        }
    )
    expected = np.array([[1.0, 0.0], [np.nan, np.nan], [3.0, np.nan]])
    np.testing.assert_array_equal(model.frame_matrix(frame), expected)
    np.testing.assert_array_equal(model.matrix(rows(frame.astype(object))), expected)
    text = pd.DataFrame({"recency_days": ["x", 2.5, None], "rfm_segment": ["a", "a", "a"]})
    np.testing.assert_array_equal(model.frame_matrix(text)[:, 0], [np.nan, 2.5, np.nan])
    assert np.isnan(model.frame_matrix(pd.DataFrame(index=range(2)))).all()  # columns absent


def test_calibrators_map_scores_like_their_fitted_form() -> None:
    raw = np.array([0.0, 0.2, 0.5, 0.9, 1.0])
    iso = {"method": "isotonic", "x": [0.1, 0.6], "y": [0.05, 0.8]}
    np.testing.assert_allclose(calibrate(iso, raw), [0.05, 0.2, 0.65, 0.8, 0.8])
    platt = {"method": "platt", "coef": 1.0, "intercept": 0.0}
    np.testing.assert_allclose(calibrate(platt, np.array([0.25, 0.5])), [0.25, 0.5])
    with pytest.raises(ValueError, match="isotonic or platt"):
        calibrate({"method": "beta"}, raw)


def test_reason_codes_explain_the_spend_of_a_two_part_clv(clv: BundleModel) -> None:
    test = awkward(5, 8)
    found = reason_codes(clv, clv.frame_matrix(test), rows(test), 2)
    assert len(found) == 5
    for r in found:
        assert len(r["up"]) <= 2 and len(r["down"]) <= 2
        assert all(x.contribution > 0 and "raises the expected value" in x.text for x in r["up"])
    booster = "spend" if clv.meta["formulation"] == "two_part" else "value"
    total = clv.contributions(clv.frame_matrix(test), booster).sum(axis=1)
    bias = clv.boosters[booster].predict(clv.frame_matrix(test), pred_contrib=True)[:, -1]
    raw = clv.boosters[booster].predict(clv.frame_matrix(test), raw_score=True)
    np.testing.assert_allclose(total + bias, raw, rtol=1e-6)


def test_rank_offers_applies_the_rules_and_breaks_ties_by_offer_id() -> None:
    groups = np.array([0, 0, 0, 0, 1, 1])
    ids = np.array(["b", "a", "c", "d", "a", "b"], dtype=object)
    p = np.array([0.5, 0.5, 0.9, 0.1, 0.2, 0.3])
    value = np.array([2.0, np.nan, 1.0, 1.0, 1.0, 1.0])
    recency = np.array([np.nan, np.nan, 3.0, np.nan, 10.0, np.nan])
    chosen, rank, expected = rank_offers(groups, ids, p, value, recency, 2)
    assert ids[chosen].tolist() == ["c", "a", "b", "a"] and rank.tolist() == [1, 2, 1, 2]
    np.testing.assert_allclose(expected, [0.9, 0.0, 0.3, 0.2])
    chosen, rank, _ = rank_offers(groups, ids, p, value, recency, 2, 7, {"a", "c", "d", "b"})
    assert ids[chosen].tolist() == ["a", "b", "b", "a"]  # c bought 3 days ago: excluded
    chosen, _, _ = rank_offers(groups, ids, p, value, recency, 5, None, {"d"})
    assert ids[chosen].tolist() == ["d"]
    chosen, rank, expected = rank_offers(groups, ids, p, value, recency, 2, None, set())
    assert len(chosen) == len(rank) == len(expected) == 0


def test_recommend_ranks_top_k_per_customer_with_expected_value() -> None:
    train, valid = pairs_frame(300, 20, 1), pairs_frame(150, 20, 2)
    params = NboParams(top_k=3, exclude_bought_within_days=20)
    model, _ = train_nbo(
        train, train["accepted"].to_numpy(), valid, valid["accepted"].to_numpy(),
        NBO_FEATURES, params, 4,
    )  # fmt: skip
    test = pairs_frame(40, 20, 3)
    top = recommend(model, test)
    assert (top.groupby("customer_id").size() == 3).all()
    assert list(top.columns) == [
        "customer_id", "event_timestamp", "rank", "offer_id", "probability", "expected_value",
    ]  # fmt: skip
    merged = top.merge(test, on=["customer_id", "event_timestamp", "offer_id"])
    assert not (merged["affinity_recency_days"] < 20).any()
    np.testing.assert_allclose(
        merged["expected_value"], merged["probability"] * merged["offer_value"].fillna(0)
    )
    probability = pd.Series(model.predict(test), index=pd.MultiIndex.from_frame(test[
        ["customer_id", "offer_id"]]))  # fmt: skip
    np.testing.assert_array_equal(
        merged["probability"], probability.loc[list(zip(merged["customer_id"],
        merged["offer_id"], strict=True))].to_numpy(),
    )  # fmt: skip
    assert (top.groupby("customer_id")["probability"].diff().dropna() <= 0).all()
