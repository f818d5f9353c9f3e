"""Label definitions (DESIGN.md, Definitions): churn, CLV and offer acceptance at a cutoff.

Labels read only events in [t, t + horizon); the population (active customers) reads only
events in [t - active_window, t). A cutoff whose horizon is not fully inside the observed data
is censored: it yields no label rather than a wrong one.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.config import LabelParams
from features.engineering import US_PER_DAY, Partition, _sum, _window, cutoff_us, unique_pairs
from features.names import CUSTOMER_ID, EVENT_TIMESTAMP, OFFER_ID

CHURN = "churned"
CLV = "clv"
ACCEPTED = "accepted"


def is_observed(cutoff: pd.Timestamp, horizon_days: int, observed_until: pd.Timestamp) -> bool:
    """True when [cutoff, cutoff + horizon) lies inside the data (ends at `observed_until`)."""
    return cutoff_us(cutoff) + horizon_days * US_PER_DAY <= cutoff_us(observed_until)


def active_customers(part: Partition, cutoff: pd.Timestamp, active_window_days: int) -> np.ndarray:
    """Boolean mask over partition customers: a purchase in [t - active_window, t)."""
    t = cutoff_us(cutoff)
    o = part.orders
    w = _window(o.ts, t - active_window_days * US_PER_DAY, t)
    buy = o.is_purchase[w]
    return _sum(o.customer[w][buy], len(part.customer_ids)) > 0


def churn_labels(
    part: Partition, cutoff: pd.Timestamp, params: LabelParams, observed_until: pd.Timestamp
) -> pd.DataFrame:
    """Active customers at `cutoff` with churned = 1 when they make no purchase in the horizon."""
    if not is_observed(cutoff, params.churn_horizon_days, observed_until):
        return _empty(CHURN)
    t, n = cutoff_us(cutoff), len(part.customer_ids)
    active = active_customers(part, cutoff, params.active_window_days)
    o = part.orders
    h = _window(o.ts, t, t + params.churn_horizon_days * US_PER_DAY)
    bought = _sum(o.customer[h][o.is_purchase[h]], n) > 0
    return _frame(part, cutoff, active, CHURN, (~bought).astype(np.int64))


def clv_labels(
    part: Partition, cutoff: pd.Timestamp, params: LabelParams, observed_until: pd.Timestamp
) -> pd.DataFrame:
    """Active customers at `cutoff` with their net revenue in the horizon (0 if none)."""
    if not is_observed(cutoff, params.clv_horizon_days, observed_until):
        return _empty(CLV)
    t, n = cutoff_us(cutoff), len(part.customer_ids)
    active = active_customers(part, cutoff, params.active_window_days)
    o = part.orders
    h = _window(o.ts, t, t + params.clv_horizon_days * US_PER_DAY)
    return _frame(part, cutoff, active, CLV, _sum(o.customer[h], n, o.amount[h]))


def offer_labels(
    part: Partition,
    cutoff: pd.Timestamp,
    params: LabelParams,
    observed_until: pd.Timestamp,
    offer_codes: np.ndarray,
    offer_ids: np.ndarray,
) -> pd.DataFrame:
    """(customer, offer) pairs where an active customer buys the offer in the horizon.

    `offer_codes` gives each partition line's offer (-1 for none); `offer_ids` maps codes to
    offer ids. Only accepted pairs are listed: every other active pair is a negative."""
    columns = [CUSTOMER_ID, OFFER_ID, EVENT_TIMESTAMP, ACCEPTED]
    if not is_observed(cutoff, params.offer_horizon_days, observed_until):
        return pd.DataFrame(columns=columns)
    t = cutoff_us(cutoff)
    active = active_customers(part, cutoff, params.active_window_days)
    ln = part.lines
    h = _window(ln.ts, t, t + params.offer_horizon_days * US_PER_DAY)
    c, k, g = ln.customer[h], offer_codes[h], ln.gross[h]
    keep = (k >= 0) & active[c] & (g > 0)
    customers, offers = unique_pairs(c[keep], k[keep])
    return pd.DataFrame(
        {
            CUSTOMER_ID: part.customer_ids[customers],
            OFFER_ID: offer_ids[offers],
            EVENT_TIMESTAMP: pd.Timestamp(cutoff),
            ACCEPTED: np.ones(len(customers), dtype=np.int64),
        }
    )


def _frame(
    part: Partition, cutoff: pd.Timestamp, mask: np.ndarray, name: str, values: np.ndarray
) -> pd.DataFrame:
    return pd.DataFrame(
        {
            CUSTOMER_ID: part.customer_ids[mask],
            EVENT_TIMESTAMP: pd.Timestamp(cutoff),
            name: values[mask],
        }
    )


def _empty(name: str) -> pd.DataFrame:
    return pd.DataFrame(columns=[CUSTOMER_ID, EVENT_TIMESTAMP, name])
