"""Contenders for the champion: the LightGBM model, the classical models and blends of them.

Each contender is a bundle scorer (`serving.models.scorer`), so whichever wins is exported in
the same bundle and served by the same API and batch path. The classical models are the
BTYD signals of the feature views (BG/NBD P(no purchase), BG/NBD x Gamma-Gamma expected
spend: fitted per cutoff on pre-cutoff data only, `features.btyd`) and a logistic
regression on RFM fitted here. The champion is chosen on the validation cutoffs only; the
test cutoff only reports how the choice did."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from features.names import BTYD_CHURN, BTYD_CLV
from serving.models import LIGHTGBM_SCORER, BundleModel, numbers, score, signed_log
from training.metrics import bootstrap_interval

# Roles in the tables: ours (LightGBM and blends) or a classical baseline.
MODEL, BASELINE = "model", "baseline"
# Weights by 0.1 were measured: on validation CLV's champion stayed LightGBM and churn's
# moved between blends by noise (BENCHMARKS.md, #15 seventh part).
BLEND_WEIGHTS = (0.25, 0.5, 0.75)
RFM_COLUMNS = ["recency_days", "frequency_365d", "monetary_365d"]
# Classical models that are point-in-time features: (contender name, column).
CHURN_BTYD = ("BG/NBD P(no purchase)", BTYD_CHURN)
CLV_BTYD = ("BG/NBD x Gamma-Gamma", BTYD_CLV)


@dataclass(frozen=True)
class Contender:
    """A named scorer and its role."""

    name: str
    scorer: dict[str, Any]
    role: str


def feature_scorer(column: str, train: pd.DataFrame) -> dict[str, Any]:
    """One feature as the score; a missing value as the feature's training mean."""
    values = numbers(train[column])
    fill = float(np.nanmean(values)) if np.isfinite(values).any() else 0.0
    return {"kind": "feature", "column": column, "fill": fill}


def rfm_logistic_scorer(train: pd.DataFrame, y_train: np.ndarray) -> dict[str, Any]:
    """Logistic regression on log recency, frequency and monetary value, as a linear scorer."""
    x = signed_log(np.column_stack([numbers(train[c]) for c in RFM_COLUMNS]))
    center, scale = x.mean(axis=0), x.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    fitted = LogisticRegression(max_iter=1000).fit((x - center) / scale, y_train)
    return {
        "kind": "linear",
        "columns": list(RFM_COLUMNS),
        "center": center.tolist(),
        "scale": scale.tolist(),
        "coef": fitted.coef_[0].tolist(),
        "intercept": float(fitted.intercept_[0]),
        "link": "logistic",
    }


def blends(model: Contender, classical: Sequence[Contender]) -> list[Contender]:
    """The model blended with each classical contender at each of `BLEND_WEIGHTS`."""
    return [
        Contender(
            f"blend {w:.2f} {model.name} + {1 - w:.2f} {other.name}",
            {"kind": "blend", "parts": [model.scorer, other.scorer], "weights": [w, 1 - w]},
            MODEL,
        )
        for other in classical
        for w in BLEND_WEIGHTS
    ]


def churn_contenders(
    model: BundleModel, train: pd.DataFrame, y_train: np.ndarray
) -> list[Contender]:
    """LightGBM, BG/NBD P(no purchase), logistic regression on RFM and blends."""
    lightgbm = Contender("lightgbm", dict(LIGHTGBM_SCORER), MODEL)
    classical = [
        Contender(name, feature_scorer(column, train), BASELINE)
        for name, column in [CHURN_BTYD]
        if column in model.columns
    ]
    classical.append(
        Contender("logistic regression on RFM", rfm_logistic_scorer(train, y_train), BASELINE)
    )
    return [lightgbm, *classical, *blends(lightgbm, classical)]


def clv_contenders(model: BundleModel, train: pd.DataFrame) -> list[Contender]:
    """LightGBM, BG/NBD x Gamma-Gamma expected spend and blends."""
    lightgbm = Contender("lightgbm", dict(LIGHTGBM_SCORER), MODEL)
    name, column = CLV_BTYD
    classical = (
        [Contender(name, feature_scorer(column, train), BASELINE)]
        if column in model.columns
        else []
    )
    return [lightgbm, *classical, *blends(lightgbm, classical)]


def with_scorer(model: BundleModel, contender: Contender, **meta: Any) -> BundleModel:
    """The bundle scoring with `contender` (and any other `meta`, e.g. its calibrator)."""
    return dataclasses.replace(
        model, meta={**model.meta, "scorer": contender.scorer, "contender": contender.name, **meta}
    )


def choose(
    contenders: Sequence[Contender],
    figure: Callable[[Contender, np.ndarray], float],
    n: int,
    higher_is_better: bool,
    rounds: int,
    seed: int,
) -> tuple[Contender, dict[str, float]]:
    """The champion, chosen on validation (`figure(contender, rows)` computes a validation
    metric on those of its `n` rows), and every contender's figure on all rows.

    A tie is not a reason to serve a more complex model. A model of ours must beat the best
    classical contender by more than noise (the 95% bootstrap interval of the paired
    validation difference above 0), else that classical contender is the champion. Of ours
    that do, those the best of ours is not ahead of by more than noise are tied with it, and
    the tied one with the most LightGBM (`lightgbm_weight`, then the better figure) is the
    champion: a blend must beat LightGBM alone, or a blend with more of it, to be served."""
    everyone = np.arange(n)
    figures = {c.name: float(figure(c, everyone)) for c in contenders}
    sign = 1.0 if higher_is_better else -1.0

    def rank(c: Contender) -> float:
        return sign * float(np.nan_to_num(figures[c.name], nan=-np.inf))

    def ahead(a: Contender, b: Contender) -> bool:
        low, _ = bootstrap_interval(
            lambda idx: sign * (figure(a, idx) - figure(b, idx)), n, rounds, seed
        )
        return low > 0

    best = max(contenders, key=rank)
    if best.role == BASELINE:
        return best, figures
    classical = [c for c in contenders if c.role == BASELINE]
    rival = max(classical, key=rank) if classical else None
    eligible = [
        c
        for c in contenders
        if c.role == MODEL
        and np.isfinite(figures[c.name])
        and (c is best or not ahead(best, c))
        and (rival is None or ahead(c, rival))
    ]
    if not eligible:  # the best is not ahead of the classical rival by more than noise
        return (rival or best), figures
    return max(eligible, key=lambda c: (lightgbm_weight(c), rank(c))), figures


def lightgbm_weight(contender: Contender) -> float:
    """The share of LightGBM in a contender's score: 1 alone, its weight in a blend, 0 in a
    classical model."""
    if contender.role == BASELINE:
        return 0.0
    spec = contender.scorer
    if spec["kind"] == "blend":
        parts = zip(spec["weights"], spec["parts"], strict=True)
        return float(sum(w for w, part in parts if part["kind"] == "lightgbm"))
    return 1.0 if spec["kind"] == "lightgbm" else 0.0


def value_scale(predicted: np.ndarray, actual: np.ndarray, max_bias: float) -> float:
    """The factor that brings the total predicted value to the actual total, or 1 when the
    total is already within ±`max_bias` of it (the smallest correction of the mean)."""
    total = float(np.sum(predicted))
    if total <= 0:
        return 1.0
    bias = total / float(np.sum(actual)) - 1 if np.sum(actual) else 0.0
    return 1.0 if abs(bias) <= max_bias else float(np.sum(actual)) / total


def scores(model: BundleModel, x: np.ndarray, contender: Contender) -> np.ndarray:
    """The contender's uncalibrated score on model input `x`."""
    return score(model, x, contender.scorer)
