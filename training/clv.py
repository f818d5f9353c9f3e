"""CLV: net revenue in the horizon, by the LightGBM formulation that wins on validation.

Formulations:
- two_part: P(buy) from a classifier x E[spend | buy] from a regressor on buyers;
- tweedie: one regressor with a Tweedie objective (zero-inflated, skewed targets);
- l1: one regressor minimising absolute error directly (a conditional median).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from training.config import ClvParams
from training.explain import Reason, reason_codes
from training.frames import FeatureSpec, fit_early_stopped

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
) -> lgb.Booster:
    return fit_early_stopped({**BASE_LGBM, **params}, x, y, xv, yv, seed, ROUNDS, patience=100)


@dataclass
class ClvModel:
    """Expected net revenue in the horizon (never negative)."""

    spec: FeatureSpec
    formulation: str
    boosters: dict[str, lgb.Booster]

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Expected CLV in currency."""
        x = self.spec.matrix(frame)
        if self.formulation == "two_part":
            p_buy = self.boosters["buy"].predict(x)
            spend = np.expm1(self.boosters["spend"].predict(x))
            return np.asarray(np.clip(p_buy * spend, 0, None), dtype=float)
        return np.asarray(np.clip(self.boosters["value"].predict(x), 0, None), dtype=float)

    def explain(self, frame: pd.DataFrame, top: int = 3) -> list[dict[str, list[Reason]]]:
        """Top drivers up and down of each customer's value, in words (for the two-part
        model: of the spend when buying; P(buy) drivers are the churn model's mirror)."""
        if self.formulation == "two_part":
            return reason_codes(self.boosters["spend"], self.spec, frame, "the expected spend", top)
        return reason_codes(self.boosters["value"], self.spec, frame, "the expected value", top)


def fit_formulation(
    name: str,
    spec: FeatureSpec,
    train: pd.DataFrame,
    y: np.ndarray,
    valid: pd.DataFrame,
    yv: np.ndarray,
    params: ClvParams,
    seed: int,
) -> ClvModel:
    """Fit one formulation with early stopping on validation."""
    x, xv = spec.matrix(train), spec.matrix(valid)
    if name == "two_part":
        buy = _fit(
            {"objective": "binary", **params.lgbm},
            x,
            (y > 0).astype(int),
            xv,
            (yv > 0).astype(int),
            seed,
        )
        pos, pos_v = y > 0, yv > 0
        spend = _fit(
            {"objective": "regression", **params.lgbm},
            x[pos],
            np.log1p(y[pos]),
            xv[pos_v],
            np.log1p(yv[pos_v]),
            seed,
        )
        return ClvModel(spec, name, {"buy": buy, "spend": spend})
    objectives: dict[str, dict[str, Any]] = {
        "tweedie": {"objective": "tweedie", "tweedie_variance_power": 1.3},
        "l1": {"objective": "l1"},
    }
    objective = objectives.get(name)
    if objective is None:
        raise ValueError(f"CLV formulation '{name}': expected two_part, tweedie or l1")
    clipped, clipped_v = np.clip(y, 0, None), np.clip(yv, 0, None)
    return ClvModel(
        spec, name, {"value": _fit({**objective, **params.lgbm}, x, clipped, xv, clipped_v, seed)}
    )


def train_clv(
    train: pd.DataFrame,
    y_train: np.ndarray,
    valid: pd.DataFrame,
    y_valid: np.ndarray,
    features: list[str],
    params: ClvParams,
    seed: int,
) -> tuple[ClvModel, dict[str, Any]]:
    """Fit every configured formulation; keep the one with the lowest validation MAE."""
    spec = FeatureSpec.fit(train, features)
    fitted, mae = {}, {}
    for name in params.formulations:
        fitted[name] = fit_formulation(name, spec, train, y_train, valid, y_valid, params, seed)
        mae[name] = float(np.mean(np.abs(fitted[name].predict(valid) - y_valid)))
    best = min(mae, key=lambda n: mae[n])
    return fitted[best], {"formulation": best, "validation_mae": mae}
