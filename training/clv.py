"""CLV: net revenue in the horizon, by the LightGBM formulation that wins on validation.

Formulations (evaluated by `serving.models.clv_value`):
- two_part: P(buy) from a classifier x E[spend | buy] from a regressor of log spend on
  buyers (the mean of the log-normal, exp(mu + sigma^2 / 2), sigma^2 from the regressor's
  residuals on validation: exp(mu) alone is the median, about a third below the mean);
- tweedie: one regressor with a Tweedie objective (zero-inflated, skewed targets);
- btyd_tweedie: the same regressor started from the log of the classical BG/NBD x
  Gamma-Gamma expected spend (its offset), so that its trees learn a multiplicative
  correction of the classical model rather than the whole value from scratch;
- l1: one regressor minimising absolute error directly (a conditional median).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from features.names import BTYD_CLV
from serving.models import BundleModel, clv_base, clv_value
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
TWEEDIE_FORMULATIONS = ("tweedie", "btyd_tweedie")
# The btyd_tweedie offset: the classical expected spend, missing as its training mean and
# at least this share of the mean (its log must stay finite for customers it gives up on).
BASE_FLOOR_SHARE = 0.01


def _fit(
    params: dict[str, Any],
    x: pd.DataFrame,
    y: np.ndarray,
    xv: pd.DataFrame,
    yv: np.ndarray,
    seed: int,
    rounds: int | None,
    offsets: tuple[np.ndarray, np.ndarray] | None = None,
) -> lgb.Booster:
    """Early stopped on validation, or `rounds` rounds without it (a refit); from the
    rows' starting raw scores `offsets` (training, validation) if given."""
    if rounds is not None:
        start = None if offsets is None else offsets[0]
        return fit_rounds({**BASE_LGBM, **params}, x, y, seed, rounds, start)
    return fit_early_stopped(
        {**BASE_LGBM, **params}, x, y, xv, yv, seed, ROUNDS, patience=100, offsets=offsets
    )


def base_settings(train: pd.DataFrame) -> dict[str, float]:
    """How the btyd_tweedie offset treats the classical expected spend (`clv_base`): a
    missing value as the training mean, every value at least `BASE_FLOOR_SHARE` of it."""
    values = pd.to_numeric(train[BTYD_CLV], errors="coerce").to_numpy(float)
    mean = float(np.nanmean(values)) if np.isfinite(values).any() else 1.0
    mean = mean if mean > 0 else 1.0
    return {"base_fill": mean, "base_floor": BASE_FLOOR_SHARE * mean}


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
    power: float | None = None,
) -> BundleModel:
    """Fit one formulation with early stopping on validation, or, given each booster's
    `rounds`, for those rounds (validation then only measures the two-part spend variance).
    A Tweedie formulation uses variance `power` (by default the first of the settings')."""
    x, xv = fit_frame(train, features, categories), fit_frame(valid, features, categories)
    boosters: dict[str, lgb.Booster]
    meta: dict[str, Any] = {}
    tweedie = {
        "objective": "tweedie",
        "tweedie_variance_power": params.tweedie_powers[0] if power is None else power,
    }
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
    elif name == "btyd_tweedie":
        if BTYD_CLV not in features:
            raise ValueError(f"CLV formulation 'btyd_tweedie' needs the {BTYD_CLV} feature")
        meta = {**base_settings(train), "tweedie_variance_power": tweedie["tweedie_variance_power"]}
        probe = BundleModel.create("clv", features, categories, {}, **meta)
        offsets = (
            np.log(clv_base(probe, probe.frame_matrix(train))),
            np.log(clv_base(probe, probe.frame_matrix(valid))),
        )
        value = _fit(
            {**tweedie, **params.lgbm},
            x,
            np.clip(y, 0, None),
            xv,
            np.clip(yv, 0, None),
            seed,
            None if rounds is None else rounds["value"],
            offsets,
        )
        boosters = {"value": value}
    else:
        objectives: dict[str, dict[str, Any]] = {"tweedie": tweedie, "l1": {"objective": "l1"}}
        objective = objectives.get(name)
        if objective is None:
            raise ValueError(
                f"CLV formulation '{name}': expected two_part, tweedie, btyd_tweedie or l1"
            )
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
        if name == "tweedie":
            meta["tweedie_variance_power"] = tweedie["tweedie_variance_power"]
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
        model.meta.get("tweedie_variance_power"),
    )
    # The spend variance is kept; the offset settings must be the refit's own.
    offset: dict[str, Any] = {
        k: refitted.meta[k] for k in ("base_fill", "base_floor") if k in refitted.meta
    }
    return dataclasses.replace(model, boosters=refitted.boosters, meta={**model.meta, **offset})


def train_clv(
    train: pd.DataFrame,
    y_train: np.ndarray,
    valid: pd.DataFrame,
    y_valid: np.ndarray,
    features: list[str],
    params: ClvParams,
    seed: int,
) -> tuple[BundleModel, dict[str, Any]]:
    """Fit every configured formulation (each Tweedie one at each of the variance powers of
    the settings); keep the one with the lowest validation MAE (btyd_tweedie only when the
    classical expected spend is among the features)."""
    categories = fit_categories(train, features)
    fitted, mae = {}, {}
    usable = [n for n in params.formulations if n != "btyd_tweedie" or BTYD_CLV in features]
    for name in usable:
        powers: list[float | None] = (
            list(params.tweedie_powers) if name in TWEEDIE_FORMULATIONS else [None]
        )
        for power in powers:
            label = name if power is None else f"{name} power {power:g}"
            model = fit_formulation(
                name,
                features,
                categories,
                train,
                y_train,
                valid,
                y_valid,
                params,
                seed,
                power=power,
            )
            fitted[label] = model
            predicted = clv_value(model, model.frame_matrix(valid))
            mae[label] = float(np.mean(np.abs(predicted - y_valid)))
    best = min(mae, key=lambda n: mae[n])
    chosen = fitted[best]
    info = {"formulation": chosen.meta["formulation"], "validation_mae": mae}
    if "tweedie_variance_power" in chosen.meta:
        info["tweedie_variance_power"] = chosen.meta["tweedie_variance_power"]
    return chosen, info
