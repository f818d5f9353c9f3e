"""CLV: net revenue in the horizon, by the LightGBM formulation that wins on validation.

Formulations (evaluated by `serving.models.clv_value`):
- two_part: P(buy) from a classifier x E[spend | buy] from a regressor of log spend on
  buyers (the mean of the log-normal, exp(mu + sigma^2 / 2), sigma^2 from the regressor's
  residuals on validation: exp(mu) alone is the median, about a third below the mean);
- tweedie: one regressor with a Tweedie objective (zero-inflated, skewed targets);
- l1: one regressor minimising absolute error directly (a conditional median).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from serving.models import BundleModel, clv_value
from training.config import ClvParams
from training.frames import fit_categories, fit_early_stopped, fit_frame, fit_rounds

BASE_LGBM: dict[str, Any] = {
    "learning_rate": 0.03,
    "num_leaves": 15,
    "min_child_samples": 40,
    "feature_fraction": 0.7,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 5.0,
    "verbose": -1,
}
ROUNDS = 2000


def _fit(
    params: dict[str, Any],
    x: pd.DataFrame,
    y: np.ndarray,
    xv: pd.DataFrame,
    yv: np.ndarray,
    seed: int,
    rounds: int | None,
) -> lgb.Booster:
    """Early stopped on validation, or `rounds` rounds without it (a refit)."""
    if rounds is not None:
        return fit_rounds({**BASE_LGBM, **params}, x, y, seed, rounds)
    return fit_early_stopped({**BASE_LGBM, **params}, x, y, xv, yv, seed, ROUNDS, patience=100)


def fit_formulation(
    name: str,
    features: Sequence[str],
    categories: Mapping[str, Sequence[str]],
    train: pd.DataFrame,
    y: np.ndarray,
    valid: pd.DataFrame,
    yv: np.ndarray,
    params: ClvParams,
    seed: int,
    rounds: Mapping[str, int] | None = None,
) -> BundleModel:
    """Fit one formulation with early stopping on validation, or, given each booster's
    `rounds`, for those rounds (validation then only measures the two-part spend variance)."""
    x, xv = fit_frame(train, features, categories), fit_frame(valid, features, categories)
    boosters: dict[str, lgb.Booster]
    meta: dict[str, Any] = {}
    if name == "two_part":
        buy = _fit(
            {"objective": "binary", **params.lgbm},
            x,
            (y > 0).astype(int),
            xv,
            (yv > 0).astype(int),
            seed,
            None if rounds is None else rounds["buy"],
        )
        pos, pos_v = y > 0, yv > 0
        spend = _fit(
            {"objective": "regression", **params.lgbm},
            x[pos],
            np.log1p(y[pos]),
            xv[pos_v],
            np.log1p(yv[pos_v]),
            seed,
            None if rounds is None else rounds["spend"],
        )
        boosters = {"buy": buy, "spend": spend}
        if pos_v.sum() > 1:  # a refit has no validation rows: its caller keeps the variance
            residuals = np.log1p(yv[pos_v]) - spend.predict(xv[pos_v])
            meta["spend_variance"] = float(np.var(residuals))
    else:
        objectives: dict[str, dict[str, Any]] = {
            "tweedie": {"objective": "tweedie", "tweedie_variance_power": 1.3},
            "l1": {"objective": "l1"},
        }
        objective = objectives.get(name)
        if objective is None:
            raise ValueError(f"CLV formulation '{name}': expected two_part, tweedie or l1")
        clipped, clipped_v = np.clip(y, 0, None), np.clip(yv, 0, None)
        value = _fit(
            {**objective, **params.lgbm},
            x,
            clipped,
            xv,
            clipped_v,
            seed,
            None if rounds is None else rounds["value"],
        )
        boosters = {"value": value}
    return BundleModel.create(
        "clv",
        features,
        categories,
        boosters,
        formulation=name,
        high_value_share=params.high_value_share,
        **meta,
    )


def refit_clv(
    model: BundleModel, frame: pd.DataFrame, y: np.ndarray, params: ClvParams, seed: int
) -> BundleModel:
    """The model's formulation fitted again on `frame` (the training and validation cutoffs
    together: every cutoff whose outcome is observed before the test cutoff), each booster
    for the rounds early stopping chose on validation. The spend variance (measured out of
    sample, on validation) and the other settings are kept."""
    rounds = {name: b.best_iteration for name, b in model.boosters.items()}
    refitted = fit_formulation(
        model.meta["formulation"],
        model.columns,
        model.categories,
        frame,
        y,
        frame.head(0),
        y[:0],
        params,
        seed,
        rounds,
    )
    return dataclasses.replace(model, boosters=refitted.boosters, meta=dict(model.meta))


def train_clv(
    train: pd.DataFrame,
    y_train: np.ndarray,
    valid: pd.DataFrame,
    y_valid: np.ndarray,
    features: list[str],
    params: ClvParams,
    seed: int,
) -> tuple[BundleModel, dict[str, Any]]:
    """Fit every configured formulation; keep the one with the lowest validation MAE."""
    categories = fit_categories(train, features)
    fitted, mae = {}, {}
    for name in params.formulations:
        model = fit_formulation(
            name, features, categories, train, y_train, valid, y_valid, params, seed
        )
        fitted[name] = model
        mae[name] = float(np.mean(np.abs(clv_value(model, model.frame_matrix(valid)) - y_valid)))
    best = min(mae, key=lambda n: mae[n])
    return fitted[best], {"formulation": best, "validation_mae": mae}
