"""Grades on paired differences: a model ahead within noise is a tie (B), not a win."""

from __future__ import annotations

import numpy as np
import pytest

from features.model_spec import Metric
from training.evaluate import grade, paired_differences, score_with_intervals
from training.metrics import churn_metrics, clv_metrics

AUC = Metric("roc_auc", True)
MAE = Metric("mae", False)


def _scored(name, metric, y, p):  # type: ignore[no-untyped-def]
    if metric is churn_metrics:  # scores as probabilities (the ranking is unchanged)
        p = 1 / (1 + np.exp(-p))

    def on(idx: np.ndarray) -> dict[str, float]:
        return metric(y[idx], p[idx])

    return score_with_intervals(name, on, len(y), 200, 0, [])


@pytest.fixture(scope="module")
def churn() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    signal = rng.normal(size=4000)
    y = (signal + rng.normal(size=4000) > 0).astype(int)
    return y, signal


def test_clearly_better_is_a(churn: tuple[np.ndarray, np.ndarray]) -> None:
    y, signal = churn
    rng = np.random.default_rng(1)
    good = _scored("model", churn_metrics, y, signal)
    weak = _scored("weak", churn_metrics, y, signal + rng.normal(scale=2.0, size=len(y)))
    paired = paired_differences(good, [weak], AUC, "roc_auc", 200, 0)
    assert paired[0].low > 0
    assert paired[0].difference == pytest.approx(good.metrics["roc_auc"] - weak.metrics["roc_auc"])
    letter, best, text = grade(good, paired, "roc_auc")
    assert (letter, best) == ("A", "weak") and "paired difference" in text


def test_ahead_within_noise_is_a_tie_not_a_win(churn: tuple[np.ndarray, np.ndarray]) -> None:
    y, signal = churn
    rng = np.random.default_rng(2)
    model = _scored("model", churn_metrics, y, signal + rng.normal(scale=0.02, size=len(y)))
    twin = _scored("twin", churn_metrics, y, signal + rng.normal(scale=0.02, size=len(y)))
    first, second = sorted([model, twin], key=lambda s: -s.metrics["roc_auc"])
    paired = paired_differences(first, [second], AUC, "roc_auc", 200, 0)
    assert paired[0].difference > 0 and paired[0].low < 0 < paired[0].high
    assert grade(first, paired, "roc_auc")[0] == "B"
    # The intervals of the two AUCs overlap almost entirely; only the paired one is narrow.
    assert paired[0].high - paired[0].low < 0.01


def test_worse_is_c_and_the_strongest_baseline_is_named(
    churn: tuple[np.ndarray, np.ndarray],
) -> None:
    y, signal = churn
    rng = np.random.default_rng(3)
    model = _scored("model", churn_metrics, y, signal + rng.normal(scale=1.0, size=len(y)))
    strong = _scored("strong", churn_metrics, y, signal)
    weak = _scored("weak", churn_metrics, y, signal + rng.normal(scale=3.0, size=len(y)))
    paired = paired_differences(model, [weak, strong], AUC, "roc_auc", 100, 0)
    letter, best, _ = grade(model, paired, "roc_auc")
    assert (letter, best) == ("C", "strong")


def test_lower_is_better_metrics_and_the_caveat_cap() -> None:
    rng = np.random.default_rng(4)
    y = np.where(rng.random(3000) < 0.4, rng.gamma(2.0, 50.0, 3000), 0.0)
    exact = _scored("model", clv_metrics, y, y * 0.9 + 1)
    zero = _scored("predict zero", clv_metrics, y, np.zeros(len(y)))
    paired = paired_differences(exact, [zero], MAE, "mae", 100, 0)
    assert paired[0].difference == pytest.approx(zero.metrics["mae"] - exact.metrics["mae"])
    assert grade(exact, paired, "mae")[0] == "A"
    letter, _, text = grade(exact, paired, "mae", caveat="total 40% below actual")
    assert letter == "B" and "capped at B: total 40% below actual" in text
