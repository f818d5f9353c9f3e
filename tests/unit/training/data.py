"""Generated (customer, offer) pairs with a known structure, for the offer model's tests."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.feast_repo import CUSTOMER_VIEW, OFFER_VIEW, SERVICE_FEATURES
from features.names import ALL_FEATURES

NBO_SERVICE = SERVICE_FEATURES["nbo_v1"]
NBO_FEATURES = [name for names in NBO_SERVICE.values() for name in names]
CUTOFF = pd.Timestamp("2024-01-01", tz="UTC")


def offers_frame(n_offers: int, seed: int) -> pd.DataFrame:
    """Offer statistics of `n_offers` offers "o00".. at one cutoff."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"offer_id": [f"o{j:02d}" for j in range(n_offers)]})
    for name in NBO_SERVICE[OFFER_VIEW]:
        frame[name] = rng.gamma(2.0, 10.0, n_offers)
    frame["offer_buyers_30d"] = rng.poisson(20, n_offers).astype(float)
    frame.loc[frame.index[-1], "offer_value"] = np.nan  # an offer without a value
    frame["event_timestamp"] = CUTOFF
    return frame


def customers_frame(n: int, seed: int) -> pd.DataFrame:
    """Customer features of n customers "c0000".. at one cutoff."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"customer_id": [f"c{i:04d}" for i in range(n)]})
    for name in NBO_SERVICE[CUSTOMER_VIEW]:
        if ALL_FEATURES[name].dtype == "string":
            frame[name] = rng.choice(["high", "medium", "low"], n)
        else:
            frame[name] = rng.gamma(2.0, 20.0, n)
    frame["event_timestamp"] = CUTOFF
    return frame


def affinity_frame(customers: pd.DataFrame, offers: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Customer x offer history: each customer bought about a third of the offers."""
    rng = np.random.default_rng(seed)
    pairs = customers[["customer_id", "event_timestamp"]].merge(offers[["offer_id"]], how="cross")
    pairs = pairs[rng.random(len(pairs)) < 0.35].reset_index(drop=True)
    n = len(pairs)
    pairs["affinity_orders_365d"] = rng.poisson(3, n).astype(float)
    pairs["affinity_spend_365d"] = rng.gamma(2.0, 30.0, n)
    pairs["affinity_spend_share_365d"] = rng.uniform(0, 0.5, n)
    pairs["affinity_recency_days"] = rng.exponential(60, n)
    pairs["affinity_orders_30d_last_year"] = rng.poisson(0.5, n).astype(float)
    pairs["affinity_orders_90d"] = rng.poisson(1, n).astype(float)
    pairs["affinity_intensity_90d"] = pairs["affinity_orders_365d"] * rng.uniform(0.1, 1, n)
    pairs["affinity_intensity_share_90d"] = rng.uniform(0, 1, n)
    return pairs


def pairs_frame(n_customers: int, n_offers: int, seed: int) -> pd.DataFrame:
    """Every (customer, offer) pair with its features (affinity NaN where the customer never
    bought the offer) and an acceptance that follows the customer's history."""
    rng = np.random.default_rng(seed + 1000)
    customers = customers_frame(n_customers, seed)
    offers = offers_frame(n_offers, seed + 1)
    affinity = affinity_frame(customers, offers, seed + 2)
    keys = ["customer_id", "event_timestamp"]
    pairs = customers.merge(offers, on="event_timestamp").merge(
        affinity, on=[*keys, "offer_id"], how="left"
    )
    logit = (
        -3.0
        + 0.5 * pairs["affinity_orders_365d"].fillna(0)
        - 0.01 * pairs["affinity_recency_days"].fillna(400)
        + 0.03 * pairs["offer_buyers_30d"]
    )
    pairs["accepted"] = (rng.random(len(pairs)) < 1 / (1 + np.exp(-logit))).astype(int)
    return pairs.sort_values([*keys, "offer_id"], kind="stable").reset_index(drop=True)
