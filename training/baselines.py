"""Baselines every model is measured against on the same test set that are not contenders
(the classical contenders, BG/NBD and RFM logistic regression, are in `training.contenders`)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from features.names import CUSTOMER_ID, OFFER_ID


def recency_rule(valid: pd.DataFrame, y_valid: np.ndarray) -> int:
    """The N (days) for which "no purchase in the last N days" best predicts churn (AUC)."""
    grid = range(15, 366, 15)
    scores = [roc_auc_score(y_valid, (valid["recency_days"] > n).astype(float)) for n in grid]
    return list(grid)[int(np.argmax(scores))]


def recency_rule_predict(frame: pd.DataFrame, days: int) -> np.ndarray:
    """1 for customers with no purchase in the last `days` days."""
    return (frame["recency_days"].to_numpy() > days).astype(float)


def monthly_spend_clv(frame: pd.DataFrame, horizon_days: int, retention: float) -> np.ndarray:
    """Average monthly spend over the last year x months in the horizon x retention rate."""
    months_active = np.clip(frame["tenure_days"].to_numpy() / 30.4, 1, 12)
    monthly = np.clip(frame["monetary_365d"].to_numpy(), 0, None) / months_active
    return monthly * (horizon_days / 30.4) * retention


def retention_rate(y_train_clv: np.ndarray) -> float:
    """Share of active customers who bought in the horizon, from the training period."""
    return float((y_train_clv > 0).mean())


def popularity(offers: pd.DataFrame, k: int) -> list[str]:
    """The k offers with the most buyers in the last 30 days (ties: last 90 days)."""
    ranked = offers.sort_values(
        ["offer_buyers_30d", "offer_buyers_90d", OFFER_ID],
        ascending=[False, False, True],
        kind="stable",
    )
    return ranked[OFFER_ID].head(k).tolist()


def buy_again(affinity: pd.DataFrame, k: int) -> dict[str, list[str]]:
    """Each customer's most often bought offers (ties: most recent)."""
    ranked = affinity.sort_values(
        [CUSTOMER_ID, "affinity_orders_365d", "affinity_recency_days", OFFER_ID],
        ascending=[True, False, True, True],
        kind="stable",
    )
    return {
        str(c): g[OFFER_ID].head(k).tolist() for c, g in ranked.groupby(CUSTOMER_ID, sort=False)
    }


def history_popularity_blend(
    affinity: pd.DataFrame,
    offers: pd.DataFrame,
    customers: list[str],
    k: int,
    half_life_days: float = 30.0,
    weight: float = 0.7,
) -> dict[str, list[str]]:
    """Time-decayed own history blended with recent popularity, both scaled to [0, 1]."""
    pop = offers.set_index(OFFER_ID)["offer_buyers_30d"].astype(float)
    pop = pop / pop.max() if len(pop) and pop.max() > 0 else pop
    own = affinity.assign(
        own=affinity["affinity_orders_365d"]
        * np.power(0.5, affinity["affinity_recency_days"] / half_life_days)
    )
    own["own"] = own["own"] / own.groupby(CUSTOMER_ID)["own"].transform("max").replace(0, 1)
    own["score"] = weight * own["own"] + (1 - weight) * own[OFFER_ID].map(pop).fillna(0)
    top_popular = pop.sort_values(ascending=False).head(k)
    out: dict[str, list[str]] = {}
    history = {c: g for c, g in own.groupby(CUSTOMER_ID, sort=False)}
    for customer in customers:
        scores = dict((1 - weight) * top_popular)
        if customer in history:
            g = history[customer]
            scores.update(zip(g[OFFER_ID], g["score"], strict=True))
        out[customer] = [o for o, _ in sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))][:k]
    return out
