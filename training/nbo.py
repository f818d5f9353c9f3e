"""Next-best-offer: a LightGBM classifier over (customer, offer) pairs. Candidate pairs and
the ranking with the business rules are the serving runtime's (`serving.models.candidates`,
`serving.models.recommend`), so training evaluates exactly what is served."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from features.labels import ACCEPTED
from features.names import CUSTOMER_ID, EVENT_TIMESTAMP, OFFER_ID
from serving.models import BundleModel
from training.config import NboParams
from training.frames import fit_categories, fit_on_frames

DEFAULT_LGBM: dict[str, Any] = {
    "objective": "binary",
    "learning_rate": 0.05,
    "num_leaves": 31,
    "min_child_samples": 100,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 5.0,
    "verbose": -1,
}
ROUNDS = 1000


def with_labels(pairs: pd.DataFrame, labels: pd.DataFrame) -> np.ndarray:
    """1 where the customer accepted the offer in the horizon after the pair's cutoff."""
    keys = [CUSTOMER_ID, OFFER_ID, EVENT_TIMESTAMP]
    merged = pairs[keys].merge(labels[[*keys, ACCEPTED]], on=keys, how="left")
    return merged[ACCEPTED].fillna(0).to_numpy(dtype=int)


def train_nbo(
    train: pd.DataFrame,
    y_train: np.ndarray,
    valid: pd.DataFrame,
    y_valid: np.ndarray,
    features: list[str],
    params: NboParams,
    seed: int,
) -> tuple[BundleModel, dict[str, Any]]:
    """Fit the pair classifier with early stopping on the validation cutoff; the bundle keeps
    the candidate counts, top-k and rules that serving applies."""
    categories = fit_categories(train, features)
    lgbm = {**DEFAULT_LGBM, **params.lgbm}
    booster = fit_on_frames(
        lgbm, features, categories, train, y_train, valid, y_valid, seed, ROUNDS, 50
    )
    model = BundleModel.create(
        "nbo",
        features,
        categories,
        {"nbo": booster},
        top_k=params.top_k,
        exclude_bought_within_days=params.exclude_bought_within_days,
        history_candidates=params.history_candidates,
        popular_candidates=params.popular_candidates,
    )
    return model, {
        "best_iteration": booster.best_iteration,
        "lgbm_params": lgbm,
        "train_pairs": len(train),
        "train_positive_rate": float(y_train.mean()),
    }
