"""Classical models and blends as contenders: chosen on validation, served from the bundle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from features.retrieval import service_features
from serving.models import BundleModel, churn_probability, clv_value, reason_codes
from training import contenders
from training.churn import choose_calibrator, train_churn
from training.clv import train_clv
from training.config import ChurnParams, ClvParams

CHURN_FEATURES = service_features("churn_v1")
CLV_FEATURES = service_features("clv_v1")
BTYD_CHURN = contenders.CHURN_BTYD[1]
BTYD_CLV = contenders.CLV_BTYD[1]


def _frame(features: list[str], n: int, seed: int) -> pd.DataFrame:
    """Noise features, plus RFM and BTYD columns the outcomes below are drawn from."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({name: rng.normal(size=n) for name in features})
    for name in ("rfm_segment", "value_tier", "lifecycle_stage", "country"):
        if name in frame:
            frame[name] = rng.choice(["a", "b", "c"], n)
    frame["recency_days"] = rng.exponential(60, n)
    frame["frequency_365d"] = rng.poisson(5, n).astype(float)
    frame["monetary_365d"] = rng.gamma(2, 200, n)
    frame[BTYD_CHURN] = rng.uniform(0, 1, n)
    if BTYD_CLV in frame:
        frame[BTYD_CLV] = rng.gamma(1.5, 100, n)
    frame.loc[frame.index[:5], BTYD_CHURN] = np.nan  # a cutoff too small to fit BTYD
    return frame


def _churned(frame: pd.DataFrame, seed: int) -> np.ndarray:
    """Churn is the BTYD probability itself: the classical model is the truth."""
    p = frame[BTYD_CHURN].fillna(0.5).to_numpy()
    return (np.random.default_rng(seed).random(len(frame)) < p).astype(int)


def _rows(frame: pd.DataFrame, columns: list[str]) -> list[dict[str, object]]:
    return [
        {k: (None if pd.isna(v) else v) for k, v in row.items()}
        for row in frame[columns].to_dict("records")
    ]


@pytest.fixture(scope="module")
def churn() -> tuple[BundleModel, pd.DataFrame, np.ndarray, pd.DataFrame, np.ndarray]:
    train, valid = _frame(CHURN_FEATURES, 3000, 1), _frame(CHURN_FEATURES, 2000, 2)
    y_train, y_valid = _churned(train, 1), _churned(valid, 2)
    params = ChurnParams(lgbm={"n_estimators": 300})
    model, _ = train_churn(train, y_train, valid, y_valid, CHURN_FEATURES, params, 0)
    return model, train, y_train, valid, y_valid


def test_the_baseline_wins_on_validation_when_it_is_the_truth(churn) -> None:  # type: ignore[no-untyped-def]
    model, train, y_train, valid, y_valid = churn
    options = contenders.churn_contenders(model, train, y_train)
    names = [c.name for c in options]
    assert "lightgbm" in names and "logistic regression on RFM" in names
    assert any(name.startswith("blend") for name in names)
    x_valid = model.frame_matrix(valid)
    valid_scores = {c.name: contenders.scores(model, x_valid, c) for c in options}
    best, figures = contenders.choose(
        options,
        lambda c, idx: roc_auc_score(y_valid[idx], valid_scores[c.name][idx]),
        len(y_valid),
        True,
        100,
        0,
    )
    # The outcome is drawn from the BTYD probability alone: no model of ours can beat it
    # by more than noise, so the classical model is the champion.
    assert best.name == contenders.CHURN_BTYD[0]
    assert figures[contenders.CHURN_BTYD[0]] > figures["lightgbm"]
    assert figures[contenders.CHURN_BTYD[0]] > figures["logistic regression on RFM"] + 0.1


def test_ours_must_beat_the_best_classical_contender_by_more_than_noise() -> None:
    ours = contenders.Contender("ours", {"kind": "lightgbm"}, contenders.MODEL)
    weak = contenders.Contender("weak", {"kind": "lightgbm"}, contenders.BASELINE)
    strong = contenders.Contender("strong", {"kind": "lightgbm"}, contenders.BASELINE)
    rng = np.random.default_rng(0)
    errors = {"weak": rng.exponential(2.0, 2000), "strong": rng.exponential(1.0, 2000)}

    def mae(c: contenders.Contender, idx: np.ndarray) -> float:
        return float(errors[c.name][idx].mean())

    options = [ours, weak, strong]
    # Clearly better: ours wins.
    errors["ours"] = errors["strong"] * 0.8
    assert contenders.choose(options, mae, 2000, False, 100, 0)[0].name == "ours"
    # Ahead by a hair (within noise): the strongest classical contender wins.
    noise = rng.normal(0, 0.05, 2000)
    errors["ours"] = errors["strong"] + noise - noise.mean() - 0.001
    best, figures = contenders.choose(options, mae, 2000, False, 100, 0)
    assert figures["ours"] < figures["strong"] and best.name == "strong"
    # Worse: the best of all wins, which is classical.
    errors["ours"] = errors["weak"] * 1.1
    assert contenders.choose(options, mae, 2000, False, 100, 0)[0].name == "strong"


def test_a_blend_must_beat_the_contenders_with_more_lightgbm_by_more_than_noise() -> None:
    lightgbm = contenders.Contender("lightgbm", {"kind": "lightgbm"}, contenders.MODEL)
    classical = contenders.Contender(
        "classical", {"kind": "feature", "column": "x", "fill": 0.0}, contenders.BASELINE
    )

    def blend(weight: float) -> contenders.Contender:
        spec = {"kind": "blend", "parts": [lightgbm.scorer, classical.scorer]}
        return contenders.Contender(
            f"blend {weight}", {**spec, "weights": [weight, 1 - weight]}, contenders.MODEL
        )

    rng = np.random.default_rng(1)
    errors = {"classical": rng.exponential(2.0, 2000), "lightgbm": rng.exponential(1.0, 2000)}

    def mae(c: contenders.Contender, idx: np.ndarray) -> float:
        return float(errors[c.name][idx].mean())

    def hair_ahead_of(name: str) -> np.ndarray:
        noise = rng.normal(0, 0.05, 2000)
        return errors[name] + noise - noise.mean() - 0.001

    # Listed before LightGBM, so that a tie on the figure alone would go to the blend.
    options = [classical, blend(0.5), blend(0.75), lightgbm]
    errors["blend 0.75"] = errors["lightgbm"] * 1.2
    # Ahead of LightGBM alone by a hair (within noise): LightGBM alone is served.
    errors["blend 0.5"] = hair_ahead_of("lightgbm")
    best, figures = contenders.choose(options, mae, 2000, False, 100, 0)
    assert figures["blend 0.5"] < figures["lightgbm"] and best.name == "lightgbm"
    # Both blends clearly ahead of LightGBM, the one with less of it by a hair: the other.
    errors["blend 0.75"] = errors["lightgbm"] * 0.8
    errors["blend 0.5"] = hair_ahead_of("blend 0.75")
    best, figures = contenders.choose(options, mae, 2000, False, 100, 0)
    assert figures["blend 0.5"] < figures["blend 0.75"] and best.name == "blend 0.75"
    # Clearly ahead of every other: the blend with less LightGBM.
    errors["blend 0.5"] = errors["blend 0.75"] * 0.8
    assert contenders.choose(options, mae, 2000, False, 100, 0)[0].name == "blend 0.5"


def test_a_classical_champion_is_served_from_its_bundle(churn, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model, train, y_train, valid, y_valid = churn
    test = _frame(CHURN_FEATURES, 500, 3)
    x_valid = model.frame_matrix(valid)
    for option in contenders.churn_contenders(model, train, y_train):
        calibrator, _ = choose_calibrator(
            ["platt"], contenders.scores(model, x_valid, option), y_valid, 0
        )
        bundle = contenders.with_scorer(model, option, calibrator=calibrator)
        loaded = BundleModel.from_folder(bundle.save(tmp_path / option.name.replace("/", "_")))
        from_frame = loaded.predict(test)
        from_rows = churn_probability(loaded, loaded.matrix(_rows(test, loaded.columns)))
        np.testing.assert_allclose(from_frame, bundle.predict(test), atol=1e-12)
        np.testing.assert_allclose(from_rows, from_frame, atol=1e-12)
        assert ((from_frame >= 0) & (from_frame <= 1)).all()
        if option.name == contenders.CHURN_BTYD[0]:
            # A missing BTYD value scores as the training mean, not as an error.
            assert np.isfinite(from_frame[:5]).all()
            # The score is monotone in the feature it reads.
            order = np.argsort(test[BTYD_CHURN].to_numpy()[5:])
            assert (np.diff(from_frame[5:][order]) >= -1e-12).all()
        reasons = reason_codes(
            loaded, loaded.frame_matrix(test.head(3)), _rows(test.head(3), loaded.columns), 3
        )
        if option.name == "logistic regression on RFM":
            named = {r.feature for found in reasons for d in ("up", "down") for r in found[d]}
            assert named and named <= set(contenders.RFM_COLUMNS)


def test_clv_mean_is_corrected_only_beyond_the_allowed_bias() -> None:
    actual = np.array([0.0, 100.0, 300.0])
    assert contenders.value_scale(actual * 1.05, actual, 0.1) == 1.0
    assert contenders.value_scale(actual * 0.5, actual, 0.1) == pytest.approx(2.0)
    assert contenders.value_scale(np.zeros(3), actual, 0.1) == 1.0


def test_clv_contenders_blend_and_scale(tmp_path: Path) -> None:
    train, valid = _frame(CLV_FEATURES, 3000, 4), _frame(CLV_FEATURES, 2000, 5)
    rng = np.random.default_rng(6)
    y_train = train[BTYD_CLV].to_numpy() * rng.gamma(2, 0.5, len(train))
    y_valid = valid[BTYD_CLV].to_numpy() * rng.gamma(2, 0.5, len(valid))
    params = ClvParams(formulations=["tweedie"], lgbm={"num_iterations": 200})
    model, _ = train_clv(train, y_train, valid, y_valid, CLV_FEATURES, params, 0)
    options = contenders.clv_contenders(model, train)
    blend = next(c for c in options if c.name.startswith("blend 0.50"))
    x = model.frame_matrix(valid)
    expected = 0.5 * contenders.scores(model, x, options[0]) + 0.5 * valid[BTYD_CLV].to_numpy()
    np.testing.assert_allclose(contenders.scores(model, x, blend), expected, rtol=1e-12)
    scaled = contenders.with_scorer(model, blend, value_scale=2.0)
    loaded = BundleModel.from_folder(scaled.save(tmp_path / "clv"))
    np.testing.assert_allclose(
        clv_value(loaded, loaded.frame_matrix(valid)), np.clip(2.0 * expected, 0, None)
    )
