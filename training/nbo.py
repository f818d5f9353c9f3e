"""Next-best-offer: candidates from the customer's history and popular offers, ranked by a
LightGBM classifier over (customer, offer) pairs, then business rules and expected value."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from features.labels import ACCEPTED
from features.names import CUSTOMER_ID, EVENT_TIMESTAMP, OFFER_ID
from training.config import NboParams
from training.frames import FeatureSpec, fit_early_stopped

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
SCORE = "score"


def candidates(
    affinity: pd.DataFrame, offers: pd.DataFrame, customers: pd.DataFrame, params: NboParams
) -> pd.DataFrame:
    """(customer, offer, cutoff) pairs to rank: each customer's most bought offers in the last
    year plus the cutoff's most popular offers. `customers` has customer_id, event_timestamp."""
    keys = [CUSTOMER_ID, EVENT_TIMESTAMP]
    history = affinity.merge(customers[keys], on=keys)
    history = history.sort_values(
        [*keys, "affinity_orders_365d", "affinity_recency_days"],
        ascending=[True, True, False, True],
        kind="stable",
    )
    history = history.groupby(keys, sort=False).head(params.history_candidates)[[*keys, OFFER_ID]]
    popular = offers.sort_values(
        [EVENT_TIMESTAMP, "offer_buyers_30d", OFFER_ID],
        ascending=[True, False, True],
        kind="stable",
    )
    popular = popular.groupby(EVENT_TIMESTAMP).head(params.popular_candidates)
    popular = customers[keys].merge(popular[[EVENT_TIMESTAMP, OFFER_ID]], on=EVENT_TIMESTAMP)
    pairs = pd.concat([history, popular], ignore_index=True).drop_duplicates()
    return pairs.sort_values([*keys, OFFER_ID], kind="stable").reset_index(drop=True)


def with_labels(pairs: pd.DataFrame, labels: pd.DataFrame) -> np.ndarray:
    """1 where the customer accepted the offer in the horizon after the pair's cutoff."""
    keys = [CUSTOMER_ID, OFFER_ID, EVENT_TIMESTAMP]
    merged = pairs[keys].merge(labels[[*keys, ACCEPTED]], on=keys, how="left")
    return merged[ACCEPTED].fillna(0).to_numpy(dtype=int)


@dataclass
class NboModel:
    """Scores (customer, offer) pairs; `top_k` applies the rules."""

    spec: FeatureSpec
    booster: lgb.Booster
    top_k: int
    exclude_bought_within_days: int | None

    def predict(self, pairs: pd.DataFrame) -> np.ndarray:
        """P(the customer accepts the offer in the horizon)."""
        return np.asarray(self.booster.predict(self.spec.matrix(pairs)), dtype=float)

    def recommend(
        self, pairs: pd.DataFrame, allowed: set[str] | None = None, k: int | None = None
    ) -> pd.DataFrame:
        """Top-k offers per customer and cutoff with probability and expected value.

        Rules: only `allowed` offers (the catalog filter / eligibility) when given, and no offer
        bought within `exclude_bought_within_days` days when set."""
        scored = pairs.assign(probability=self.predict(pairs))
        if allowed is not None:
            scored = scored[scored[OFFER_ID].isin(allowed)]
        if self.exclude_bought_within_days is not None:
            recent = scored["affinity_recency_days"] < self.exclude_bought_within_days
            scored = scored[~recent.fillna(False)]
        scored["expected_value"] = scored["probability"] * scored["offer_value"].fillna(0)
        keys = [CUSTOMER_ID, EVENT_TIMESTAMP]
        ranked = scored.sort_values(
            [*keys, "probability", OFFER_ID], ascending=[True, True, False, True], kind="stable"
        )
        top = ranked.groupby(keys, sort=False).head(k or self.top_k).copy()
        top["rank"] = top.groupby(keys, sort=False).cumcount() + 1
        return top[[*keys, "rank", OFFER_ID, "probability", "expected_value"]].reset_index(
            drop=True
        )


def train_nbo(
    train: pd.DataFrame,
    y_train: np.ndarray,
    valid: pd.DataFrame,
    y_valid: np.ndarray,
    features: list[str],
    params: NboParams,
    seed: int,
) -> tuple[NboModel, dict[str, Any]]:
    """Fit the pair classifier with early stopping on the validation cutoff."""
    spec = FeatureSpec.fit(train, features)
    lgbm = {**DEFAULT_LGBM, **params.lgbm}
    booster = fit_early_stopped(
        lgbm, spec.matrix(train), y_train, spec.matrix(valid), y_valid, seed, ROUNDS, patience=50
    )
    model = NboModel(spec, booster, params.top_k, params.exclude_bought_within_days)
    return model, {
        "best_iteration": booster.best_iteration,
        "lgbm_params": lgbm,
        "train_pairs": len(train),
        "train_positive_rate": float(y_train.mean()),
    }
