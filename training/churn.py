"""Churn: a LightGBM classifier with a calibrator chosen on the validation period.

The result is a `serving.models.BundleModel`: the calibrator is fitted here (scikit-learn)
and stored as numbers in the bundle; it is applied only by `serving.models.calibrate`."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pandas as pd
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss

from serving.models import BundleModel, calibrate, logit
from training.config import ChurnParams
from training.frames import fit_categories, fit_frame, fit_on_frames, fit_rounds

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


def fit_calibrator(method: str, raw: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """Fit one calibration method on (raw score, outcome) pairs; returns it as the bundle
    stores it: isotonic thresholds, or Platt's coefficient and intercept."""
    if method == "isotonic":
        iso = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(raw, y)
        return {
            "method": method,
            "x": iso.X_thresholds_.tolist(),
            "y": iso.y_thresholds_.tolist(),
        }
    if method == "platt":
        platt = LogisticRegression().fit(logit(raw)[:, None], y)
        return {
            "method": method,
            "coef": float(platt.coef_[0][0]),
            "intercept": float(platt.intercept_[0]),
        }
    raise ValueError(f"calibration '{method}': expected 'isotonic' or 'platt'")


def choose_calibrator(
    methods: list[str], raw: np.ndarray, y: np.ndarray, seed: int
) -> tuple[dict[str, Any], dict[str, float]]:
    """Pick the method with the lowest 2-fold cross-fitted log loss on validation, refit on
    all of it. Returns the calibrator and each method's log loss."""
    folds = np.random.default_rng(seed).integers(0, 2, len(y))
    losses = {}
    for method in methods:
        out = np.empty(len(y))
        for f in (0, 1):
            fitted = fit_calibrator(method, raw[folds != f], y[folds != f])
            out[folds == f] = calibrate(fitted, raw[folds == f])
        losses[method] = float(log_loss(y, np.clip(out, 1e-6, 1 - 1e-6)))
    best = min(losses, key=lambda m: losses[m])
    return fit_calibrator(best, raw, y), losses


def _lgbm(features: list[str], params: ChurnParams) -> tuple[dict[str, Any], int]:
    """LightGBM's parameters for these features, and the most rounds it may take."""
    lgbm = {**DEFAULT_LGBM, **params.lgbm}
    rounds = int(lgbm.pop("n_estimators"))
    lgbm["monotone_constraints"] = [MONOTONE_UP.get(c, 0) for c in features]
    return lgbm, rounds


def refit_churn(
    model: BundleModel, frame: pd.DataFrame, y: np.ndarray, params: ChurnParams, seed: int
) -> BundleModel:
    """The model's LightGBM fitted again on `frame` (the training, gap and validation
    cutoffs together: every cutoff whose outcome is observed before the test cutoff) for
    the rounds early stopping chose on validation. Calibrator and settings are kept as
    they are."""
    lgbm, _ = _lgbm(model.columns, params)
    rounds = model.boosters["churn"].best_iteration
    x = fit_frame(frame, model.columns, model.categories)
    booster = fit_rounds(lgbm, x, y, seed, rounds)
    return dataclasses.replace(model, boosters={"churn": booster}, meta=dict(model.meta))


def train_churn(
    train: pd.DataFrame,
    y_train: np.ndarray,
    valid: pd.DataFrame,
    y_valid: np.ndarray,
    features: list[str],
    params: ChurnParams,
    seed: int,
) -> tuple[BundleModel, dict[str, Any]]:
    """Fit LightGBM with early stopping on validation, then calibrate on validation."""
    categories = fit_categories(train, features)
    lgbm, rounds = _lgbm(features, params)
    booster = fit_on_frames(
        lgbm, features, categories, train, y_train, valid, y_valid, seed, rounds, 100
    )
    model = BundleModel.create(
        "churn",
        features,
        categories,
        {"churn": booster},
        threshold=params.threshold,
        band_edges=list(params.band_edges),
    )
    raw_valid = model.raw(model.frame_matrix(valid))
    model.meta["calibrator"], losses = choose_calibrator(
        params.calibration, raw_valid, y_valid, seed
    )
    info = {
        "best_iteration": booster.best_iteration,
        "calibration": model.meta["calibrator"]["method"],
        "calibration_log_loss": losses,
        "lgbm_params": lgbm,
    }
    return model, info
