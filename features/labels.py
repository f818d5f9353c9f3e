"""Label definitions (DESIGN.md, Definitions): churn, CLV and offer acceptance at a cutoff.

Labels read only events in [t, t + horizon); the population (active customers) reads only
events in [t - active_window, t). A cutoff whose horizon is not fully inside the observed data
is censored: it yields no label rather than a wrong one. The observed data ends where
`observed_end` says: a day after the last date of a date-only export, else at the last event.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from features.config import LabelParams
from features.engineering import (
    US_PER_DAY,
    Partition,
    _sum,
    _window,
    cutoff_us,
    to_us,
    unique_pairs,
)

# The label columns are named in features.names; re-exported here for existing imports.
from features.names import ACCEPTED as ACCEPTED
from features.names import CHURN as CHURN
from features.names import CLV as CLV
from features.names import CUSTOMER_ID, EVENT_TIMESTAMP, OFFER_ID

# Daylight-saving shifts move a local midnight by up to this much in UTC.
_DST_SHIFT_US = 3_600_000_000


def times_of_day(timestamps: pd.Series, keep: int = 3) -> np.ndarray:
    """The `keep` smallest distinct UTC times of day (us) of the timestamps: enough, combined
    over partitions (`is_date_only_at`), to tell a date-only export."""
    return np.unique(to_us(timestamps.dropna()) % US_PER_DAY)[:keep]


def is_date_only_at(times: np.ndarray) -> bool:
    """True when these distinct times of day (at least 3 when there are more) are those of a
    date-only export: one local midnight, or two an hour apart (daylight saving)."""
    times = np.unique(times)
    if len(times) == 1:
        return True
    if len(times) != 2:
        return False
    gap = int(times[1] - times[0])
    return min(gap, US_PER_DAY - gap) <= _DST_SHIFT_US


def is_date_only(timestamps: pd.Series) -> bool:
    """True when the timestamps carry no time of day: every one falls on the same local time
    (a midnight in the export's time zone). Canonical timestamps are UTC, so a date-only export
    from a zone with daylight saving shows two UTC times of day, an hour apart."""
    return is_date_only_at(times_of_day(timestamps))


def observed_end_at(last: pd.Timestamp, date_only: bool) -> pd.Timestamp:
    """`observed_end` from the last timestamp and whether the export is date-only."""
    return last + pd.Timedelta(days=1) if date_only else last


def observed_end(timestamps: pd.Series) -> pd.Timestamp:
    """Where the observed data ends, from the transactions' timestamps.

    A date-only export stamps each event with its day (at midnight), so its last day is
    observed in full: the data ends a day after the last date, and a horizon ending then is
    labelled. With times of day the data ends at its last event: the rest of that day may be
    missing (an export taken mid-day), so a horizon reaching past it stays censored. Either
    way no label reads an event before its cutoff and no feature one at or after it: this only
    decides which cutoffs get labels."""
    return observed_end_at(pd.Timestamp(timestamps.max()), is_date_only(timestamps))


def is_observed(cutoff: pd.Timestamp, horizon_days: int, observed_until: pd.Timestamp) -> bool:
    """True when [cutoff, cutoff + horizon) lies inside the data, observed until
    `observed_until` (`observed_end` of the transactions)."""
    return cutoff_us(cutoff) + horizon_days * US_PER_DAY <= cutoff_us(observed_until)


def trainable_horizon(
    horizon_days: int,
    cutoffs: Sequence[pd.Timestamp],
    observed_until: pd.Timestamp,
    parts: int = 3,
) -> int | None:
    """The longest label horizon, at most `horizon_days`, whose windows fit `parts` times
    one after the other (training, validation, test: each part's window ends by the next
    part's cutoff, the test's inside the data). A short history still trains at this
    horizon and extrapolates to the asked one. None when not even one day fits."""
    for days in range(horizon_days, 0, -1):
        limit, fits = observed_until, True
        for _ in range(parts):
            inside = [c for c in cutoffs if is_observed(c, days, limit)]
            if not inside:
                fits = False
                break
            limit = max(inside)
        if fits:
            return days
    return None


def active_customers(part: Partition, cutoff: pd.Timestamp, active_window_days: int) -> np.ndarray:
    """Boolean mask over partition customers: a purchase in [t - active_window, t)."""
    t = cutoff_us(cutoff)
    o = part.orders
    w = _window(o.ts, t - active_window_days * US_PER_DAY, t)
    buy = o.is_purchase[w]
    return _sum(o.customer[w][buy], len(part.customer_ids)) > 0


def active_by_recency(features: pd.DataFrame, active_window_days: int) -> pd.Series | None:
    """The models' population in a feature frame: customers whose last purchase is in the
    active window before the score date (`active_customers`' rule, read from the
    `recency_days` feature); None when the frame has no recency."""
    if "recency_days" not in features:
        return None
    recency = pd.to_numeric(features["recency_days"], errors="coerce")
    return recency.notna() & (recency <= active_window_days)


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
