"""Churn: a LightGBM classifier with a calibrator chosen on the validation period."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss

from training.config import ChurnParams
from training.explain import Reason, reason_codes
from training.frames import FeatureSpec, fit_early_stopped

# Feature whose effect is constrained: a more recent last purchase never raises P(churn).
MONOTONE_UP = {"recency_days": 1}

DEFAULT_LGBM: dict[str, Any] = {
    "objective": "binary",
    "learning_rate": 0.03,
    "num_leaves": 7,
    "min_child_samples": 200,
    "feature_fraction": 0.7,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 5.0,
    "n_estimators": 2000,
    "verbose": -1,
}


@dataclass
class Calibrator:
    """Maps raw scores to probabilities: isotonic regression or Platt scaling."""

    method: str
    model: Any

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        if self.method == "isotonic":
            return np.asarray(self.model.predict(raw), dtype=float)
        return np.asarray(self.model.predict_proba(_logit(raw)[:, None])[:, 1], dtype=float)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def fit_calibrator(method: str, raw: np.ndarray, y: np.ndarray) -> Calibrator:
    """Fit one calibration method on (raw score, outcome) pairs."""
    if method == "isotonic":
        return Calibrator(
            method, IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(raw, y)
        )
    if method == "platt":
        return Calibrator(method, LogisticRegression().fit(_logit(raw)[:, None], y))
    raise ValueError(f"calibration '{method}': expected 'isotonic' or 'platt'")


def choose_calibrator(
    methods: list[str], raw: np.ndarray, y: np.ndarray, seed: int
) -> tuple[Calibrator, dict[str, float]]:
    """Pick the method with the lowest 2-fold cross-fitted log loss on validation, refit on
    all of it. Returns the calibrator and each method's log loss."""
    folds = np.random.default_rng(seed).integers(0, 2, len(y))
    losses = {}
    for method in methods:
        out = np.empty(len(y))
        for f in (0, 1):
            fitted = fit_calibrator(method, raw[folds != f], y[folds != f])
            out[folds == f] = fitted(raw[folds == f])
        losses[method] = float(log_loss(y, np.clip(out, 1e-6, 1 - 1e-6)))
    best = min(losses, key=lambda m: losses[m])
    return fit_calibrator(best, raw, y), losses


@dataclass
class ChurnModel:
    """Calibrated churn probability, risk band and flag."""

    spec: FeatureSpec
    booster: lgb.Booster
    calibrator: Calibrator
    threshold: float
    band_edges: tuple[float, float]

    def raw(self, frame: pd.DataFrame) -> np.ndarray:
        """Uncalibrated LightGBM probability."""
        return np.asarray(self.booster.predict(self.spec.matrix(frame)), dtype=float)

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Calibrated P(churn)."""
        return self.calibrator(self.raw(frame))

    def band(self, p: np.ndarray) -> np.ndarray:
        """low / medium / high risk."""
        low, high = self.band_edges
        return np.where(p >= high, "high", np.where(p >= low, "medium", "low"))

    def flag(self, p: np.ndarray) -> np.ndarray:
        """True where P(churn) reaches the decision threshold."""
        return p >= self.threshold

    def explain(self, frame: pd.DataFrame, top: int = 3) -> list[dict[str, list[Reason]]]:
        """Top drivers up and down of each customer's churn risk, in words."""
        return reason_codes(self.booster, self.spec, frame, "the churn risk", top)


def train_churn(
    train: pd.DataFrame,
    y_train: np.ndarray,
    valid: pd.DataFrame,
    y_valid: np.ndarray,
    features: list[str],
    params: ChurnParams,
    seed: int,
) -> tuple[ChurnModel, dict[str, Any]]:
    """Fit LightGBM with early stopping on validation, then calibrate on validation."""
    spec = FeatureSpec.fit(train, features)
    lgbm = {**DEFAULT_LGBM, **params.lgbm}
    rounds = int(lgbm.pop("n_estimators"))
    lgbm["monotone_constraints"] = [MONOTONE_UP.get(c, 0) for c in spec.columns]
    booster = fit_early_stopped(
        lgbm, spec.matrix(train), y_train, spec.matrix(valid), y_valid, seed, rounds, patience=100
    )
    model = ChurnModel(
        spec,
        booster,
        fit_calibrator("isotonic", np.zeros(2), np.array([0, 1])),
        params.threshold,
        params.band_edges,
    )
    calibrator, losses = choose_calibrator(params.calibration, model.raw(valid), y_valid, seed)
    model.calibrator = calibrator
    info = {
        "best_iteration": booster.best_iteration,
        "calibration": calibrator.method,
        "calibration_log_loss": losses,
        "lgbm_params": lgbm,
    }
    return model, info
