"""Backtests: realised quality from outcomes with known answers, degradation flags, the
decision file, and sampling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from monitoring.backtest import degradation, realised_quality
from monitoring.config import BacktestParams
from monitoring.decision import OK, RETRAIN, read_decision, record_check
from monitoring.sampling import sample_rows

AS_OF = pd.Timestamp("2021-06-01", tz="UTC")


def _scores(n: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    ids = [f"c{i}" for i in range(n)]
    p = rng.random(n)
    churned = (rng.random(n) < p).astype(int)  # calibrated by construction
    scores = pd.DataFrame({"customer_id": ids, "as_of": AS_OF, "churn_probability": p})
    labels = pd.DataFrame({"customer_id": ids, "event_timestamp": AS_OF, "churned": churned})
    return scores, labels


def test_calibrated_scores_keep_their_quality_and_random_ones_are_flagged() -> None:
    scores, labels = _scores(5000, 0)
    good = realised_quality("churn", scores, labels, 5)
    assert good is not None and good.rows == 5000
    # AUC of uniform p against Bernoulli(p) outcomes is 5/6 in expectation; calibration ~0.
    assert abs(good.realised["roc_auc"] - 5 / 6) < 0.02
    assert good.realised["calibration_error"] < 0.03
    evaluation = {"model_roc_auc": 0.84, "model_calibration_error": 0.02}
    _, reasons = degradation(good, evaluation, BacktestParams())
    assert reasons == []

    shuffled = scores.assign(
        churn_probability=scores["churn_probability"].sample(frac=1, random_state=1).to_numpy()
    )
    bad = realised_quality("churn", shuffled, labels, 5)
    assert bad is not None
    table, reasons = degradation(bad, evaluation, BacktestParams())
    assert table["roc_auc"]["degraded"] and any("roc_auc" in r for r in reasons)


def test_clv_error_and_capture_against_evaluation() -> None:
    ids = [f"c{i}" for i in range(10)]
    truth = np.array([0, 0, 0, 0, 0, 0, 0, 0, 100, 900], dtype=float)
    scores = pd.DataFrame({"customer_id": ids, "as_of": AS_OF, "clv": truth + 10})
    labels = pd.DataFrame({"customer_id": ids, "clv": truth})
    out = realised_quality("clv", scores, labels, 5)
    assert out is not None
    assert out.realised["mae"] == 10.0 and out.realised["top20_capture"] == 1.0
    _, reasons = degradation(out, {"model_mae": 5.0, "model_top20_capture": 1.0}, BacktestParams())
    assert len(reasons) == 1 and "mae" in reasons[0]


def test_offer_hit_rate_and_no_outcomes_yet() -> None:
    scores = pd.DataFrame(
        {"customer_id": ["a", "b"], "as_of": AS_OF, "offer_1": ["x", "y"], "offer_2": ["z", "x"]}
    )
    labels = pd.DataFrame({"customer_id": ["a", "b"], "offer_id": ["z", "q"], "accepted": [1, 1]})
    out = realised_quality("nbo", scores, labels, 2)
    assert out is not None and out.realised["hit@2"] == 0.5
    assert realised_quality("nbo", scores, labels.iloc[:0], 2) is None


def test_decision_combines_checks_and_replaces_its_own_entry(tmp_path: Path) -> None:
    path = tmp_path / "decision.json"
    assert read_decision(path) is None
    record_check(path, "drift", "churn", ["churn: prediction drifted"], {})
    decision = record_check(path, "backtest", "clv", [], {})
    assert decision.status == RETRAIN and decision.models == ["churn"]
    decision = record_check(path, "drift", "churn", [], {})
    assert decision.status == OK and read_decision(path) == decision
    path.write_text("not json")
    try:
        read_decision(path)
    except ValueError as exc:
        assert str(path) in str(exc)
    else:
        raise AssertionError("a broken decision file must be refused")


def test_sampling_is_uniform_reproducible_and_says_so() -> None:
    frame = pd.DataFrame({"x": np.arange(100_000)})
    a, info = sample_rows(frame, 10_000, seed=0)
    b, _ = sample_rows(frame, 10_000, seed=0)
    assert info.sampled and info.used == 10_000 and a.equals(b)
    assert abs(a["x"].mean() - frame["x"].mean()) < 1_000  # unbiased: sd of the mean ~ 290
    small, info = sample_rows(frame.head(10), 10_000, seed=0)
    assert not info.sampled and len(small) == 10
