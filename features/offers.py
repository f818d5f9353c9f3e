"""Offer features: the offer catalog, offer popularity and customer x offer affinity.

An offer is a product category or a product (`LabelParams.offer_catalog`). Affinity is
partition-pure (one customer's lines); offer popularity is summed over partitions: partitions
hold disjoint customers, so buyer counts and revenues add up.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.engineering import (
    US_PER_DAY,
    Partition,
    _sum,
    _trend,
    _window,
    cutoff_us,
    unique_inverse,
    unique_pairs,
)
from features.names import CUSTOMER_ID, EVENT_TIMESTAMP, HISTORY_OFFERS_SEPARATOR, OFFER_ID

# Half-life of the recency weight of the time-decayed affinity (TIFU-KNN's personal vector).
AFFINITY_HALF_LIFE_DAYS = 90

OFFER_PARTIALS = [
    "buyers_30d",
    "buyers_prev_30d",
    "buyers_90d",
    "revenue_90d",
    "orders_90d",
    "buyers_30d_last_year",
    "buyers_365d",
    "repeat_buyers_365d",
]


def resolve_catalog(catalog: str, transactions: pd.DataFrame) -> str:
    """The offer catalog to use: 'auto' is category when the data has categories, else product."""
    if catalog != "auto":
        return catalog
    has_category = "category" in transactions and transactions["category"].notna().any()
    return "category" if has_category else "product"


def offer_lines(part: Partition, catalog: str) -> tuple[np.ndarray, np.ndarray]:
    """Each line's offer code (-1 for none) and the offer ids the codes stand for."""
    if catalog == "category":
        return part.lines.category, part.lines.category_ids
    if catalog == "product":
        return part.lines.product, part.lines.product_ids
    raise ValueError(f"offer catalog '{catalog}': expected 'category' or 'product'")


@dataclass(frozen=True)
class PairLines:
    """A partition's positive lines that name an offer, indexed once for the affinity at
    every cutoff: each line's (customer, offer) pair, and the lines ordered by pair, then
    order, then time (so distinct orders per pair are counted without sorting per cutoff)."""

    keys: np.ndarray  # pair -> customer * offers + offer code, ascending
    pair: np.ndarray  # each line's pair
    ts: np.ndarray
    order: np.ndarray
    gross: np.ndarray
    by_pair_order: np.ndarray  # line positions ordered by (pair, order, time)


def pair_lines(part: Partition, catalog: str) -> PairLines:
    """The `PairLines` of a partition."""
    codes, ids = offer_lines(part, catalog)
    ln = part.lines
    keep = (codes >= 0) & (ln.gross > 0)
    keys, pair = unique_inverse(ln.customer[keep] * len(ids) + codes[keep])
    order = ln.order[keep]
    by_pair_order = np.lexsort((order, pair))
    return PairLines(keys, pair, ln.ts[keep], order, ln.gross[keep], by_pair_order)


def _first_lines(lines: PairLines, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each (pair, order) among the lines in `mask`, once: its pair and the position of its
    first line."""
    inside = mask[lines.by_pair_order]
    positions = lines.by_pair_order[inside]
    p, o = lines.pair[positions], lines.order[positions]
    first = np.r_[True, (p[1:] != p[:-1]) | (o[1:] != o[:-1])] if len(p) else inside[:0]
    return p[first], positions[first]


def _orders_per_pair(lines: PairLines, mask: np.ndarray) -> np.ndarray:
    """Distinct orders of each pair among the lines in `mask` (all pairs, by pair)."""
    pair, _ = _first_lines(lines, mask)
    return np.bincount(pair, minlength=len(lines.keys)).astype(np.int64)


def _decay(age_us: np.ndarray) -> np.ndarray:
    """The weight of an order `age_us` microseconds old: halved every
    AFFINITY_HALF_LIFE_DAYS."""
    return np.asarray(0.5 ** (age_us / US_PER_DAY / AFFINITY_HALF_LIFE_DAYS), dtype=float)


def _decayed_orders_per_pair(lines: PairLines, mask: np.ndarray, t: int) -> np.ndarray:
    """Each pair's distinct orders among the lines in `mask`, each weighted by its age at
    `t` (`_decay` of its first line's time)."""
    pair, first = _first_lines(lines, mask)
    return np.bincount(pair, weights=_decay(t - lines.ts[first]), minlength=len(lines.keys))


def affinity_at(
    part: Partition,
    cutoff: pd.Timestamp,
    catalog: str,
    top_offers: int,
    lines: PairLines | None = None,
) -> pd.DataFrame:
    """Customer x offer affinity from the 365 days before `cutoff`: for each customer the
    `top_offers` offers bought in most orders (ties: most spend). Bounding the pairs keeps
    the table linear in customers whatever the catalog size. `lines`: the partition's
    `pair_lines` (computed here when not given)."""
    t = cutoff_us(cutoff)
    _, ids = offer_lines(part, catalog)
    lines = pair_lines(part, catalog) if lines is None else lines
    w = _window(lines.ts, t - 365 * US_PER_DAY, t)
    if w.stop == w.start:
        return pd.DataFrame(columns=[CUSTOMER_ID, OFFER_ID, EVENT_TIMESTAMP])
    pair, ts, g = lines.pair[w], lines.ts[w], lines.gross[w]
    # pandas' sum (compensated, in line order) rather than bincount's: the same floats as a
    # groupby of the lines, so ties in spend break the same way.
    summed = pd.Series(g).groupby(pair, sort=True).sum()
    present = summed.index.to_numpy()  # the pairs bought in the window, ascending
    spend = summed.to_numpy()
    last = np.full(len(lines.keys), np.iinfo(np.int64).min)
    np.maximum.at(last, pair, ts)
    # The window, the season a year ago (the 30 days that began 365 days before the cutoff)
    # and the last 90 days, as masks over the partition's lines.
    in_window = np.zeros(len(lines.ts), dtype=bool)
    in_window[w] = True
    last_year, recent = in_window.copy(), in_window.copy()
    last_year[w] = ts < t - 335 * US_PER_DAY
    recent[w] = ts >= t - 90 * US_PER_DAY
    orders = _orders_per_pair(lines, in_window)[present]
    keys = lines.keys[present]
    customer, code = keys // len(ids), keys % len(ids)
    # Ties are broken by offer id, not by code: codes number offers in order of appearance
    # in the partition, so they differ from one partitioning to another.
    rank = np.argsort(np.argsort(ids.astype(str), kind="stable"), kind="stable")[code]
    ranked = np.lexsort((rank, -spend, -orders, customer))
    first_of_customer = np.searchsorted(customer, customer[ranked], "left")
    ranked = ranked[np.arange(len(keys)) - first_of_customer < top_offers]
    chosen = present[ranked]
    customer, code = customer[ranked], code[ranked]
    line_customer = lines.keys[pair] // len(ids)
    total = _sum(line_customer, len(part.customer_ids), g)
    # Each order weighs 0.5 ** (age / half-life) (the time of its first line here); an
    # offer's intensity is the sum of the weights of its orders, its share that sum over the
    # weights of all the customer's orders: TIFU-KNN's time-decayed personal item vector.
    intensity = _decayed_orders_per_pair(lines, in_window, t)[chosen]
    by_order = np.lexsort((lines.order[w], line_customer))  # stable: earliest line first
    c, o = line_customer[by_order], lines.order[w][by_order]
    first = np.r_[True, (c[1:] != c[:-1]) | (o[1:] != o[:-1])]
    weights = np.bincount(
        c[first], weights=_decay(t - ts[by_order][first]), minlength=len(part.customer_ids)
    )
    return pd.DataFrame(
        {
            CUSTOMER_ID: part.customer_ids[customer],
            OFFER_ID: ids[code],
            EVENT_TIMESTAMP: pd.Timestamp(cutoff),
            "affinity_orders_365d": orders[ranked],
            "affinity_spend_365d": spend[ranked],
            "affinity_spend_share_365d": spend[ranked] / total[customer],
            "affinity_recency_days": (t - last[chosen]) / US_PER_DAY,
            "affinity_orders_30d_last_year": _orders_per_pair(lines, last_year)[chosen],
            "affinity_orders_90d": _orders_per_pair(lines, recent)[chosen],
            "affinity_intensity_90d": intensity,
            "affinity_intensity_share_90d": intensity / weights[customer],
        }
    )


def history_offers(customer_ids: pd.Series, affinity: pd.DataFrame) -> np.ndarray:
    """Each customer's affinity offers, most bought first, joined into one string (empty when
    the customer bought none): what an online lookup needs to find the customer x offer rows."""
    if affinity.empty:
        return np.full(len(customer_ids), "", dtype=object)
    codes, customers = pd.factorize(affinity[CUSTOMER_ID])
    by_customer = np.argsort(codes, kind="stable")  # each customer's rows, in their order
    offers = affinity[OFFER_ID].to_numpy()[by_customer].tolist()
    bounds = np.searchsorted(codes[by_customer], np.arange(len(customers) + 1)).tolist()
    joined = {
        customer: HISTORY_OFFERS_SEPARATOR.join(offers[bounds[i] : bounds[i + 1]])
        for i, customer in enumerate(customers)
    }
    return customer_ids.map(joined).fillna("").to_numpy(dtype=object)


def offer_partials_at(part: Partition, cutoff: pd.Timestamp, catalog: str) -> pd.DataFrame:
    """Per-offer buyer counts and revenue of this partition before `cutoff` (to be summed)."""
    t = cutoff_us(cutoff)
    codes, ids = offer_lines(part, catalog)
    ln = part.lines
    # Buyers in the season a year ago: the 30 days that began 365 days before the cutoff.
    ly = _window(ln.ts, t - 365 * US_PER_DAY, t - 335 * US_PER_DAY)
    ly_keep = (codes[ly] >= 0) & (ln.gross[ly] > 0)
    ly_buyers = _sum(unique_pairs(codes[ly][ly_keep], ln.customer[ly][ly_keep])[0], len(ids))
    # Buyers of the year, and those among them who bought the offer in two orders or more.
    y = _window(ln.ts, t - 365 * US_PER_DAY, t)
    y_keep = (codes[y] >= 0) & (ln.gross[y] > 0)
    customers = len(part.customer_ids)
    buyer = codes[y][y_keep].astype(np.int64) * customers + ln.customer[y][y_keep]
    buyer_of_order, _ = unique_pairs(buyer, ln.order[y][y_keep])  # sorted by buyer
    first = np.flatnonzero(np.diff(buyer_of_order, prepend=-1) != 0)
    orders_per_buyer = np.diff(np.r_[first, len(buyer_of_order)])
    offer_of_buyer = buyer_of_order[first] // customers
    year_buyers = _sum(offer_of_buyer, len(ids))
    repeat_buyers = _sum(offer_of_buyer[orders_per_buyer >= 2], len(ids))
    w = _window(ln.ts, t - 90 * US_PER_DAY, t)
    keep = (codes[w] >= 0) & (ln.gross[w] > 0)
    c, k, ts, o, g = (
        ln.customer[w][keep],
        codes[w][keep],
        ln.ts[w][keep],
        ln.order[w][keep],
        ln.gross[w][keep],
    )
    m = len(ids)

    def buyers(mask: np.ndarray) -> np.ndarray:
        return _sum(unique_pairs(k[mask], c[mask])[0], m)

    out = pd.DataFrame(
        {
            OFFER_ID: ids,
            "buyers_30d": buyers(ts >= t - 30 * US_PER_DAY),
            "buyers_prev_30d": buyers((ts >= t - 60 * US_PER_DAY) & (ts < t - 30 * US_PER_DAY)),
            "buyers_90d": buyers(np.ones(len(c), dtype=bool)),
            "revenue_90d": _sum(k, m, g),
            "orders_90d": _sum(unique_pairs(k, o)[0], m),
            "buyers_30d_last_year": ly_buyers,
            "buyers_365d": year_buyers,
            "repeat_buyers_365d": repeat_buyers,
        }
    )
    out[EVENT_TIMESTAMP] = pd.Timestamp(cutoff)
    # The year's buyers count even where this partition has none of the last 90 days (the
    # year holds the 90 days and last year's season).
    return out[out["buyers_365d"] > 0]


def offer_stats(partials: pd.DataFrame) -> pd.DataFrame:
    """Sum partition partials into the offer feature view rows."""
    if len(partials) == 0:
        return pd.DataFrame(columns=[OFFER_ID, EVENT_TIMESTAMP])
    total = partials.groupby([OFFER_ID, EVENT_TIMESTAMP], sort=True)[OFFER_PARTIALS].sum()
    # The view lists the offers bought in the last 90 days.
    total = total[total["buyers_90d"] > 0].reset_index()
    return pd.DataFrame(
        {
            OFFER_ID: total[OFFER_ID],
            EVENT_TIMESTAMP: total[EVENT_TIMESTAMP],
            "offer_buyers_30d": total["buyers_30d"].astype(np.int64),
            "offer_buyers_90d": total["buyers_90d"].astype(np.int64),
            "offer_revenue_90d": total["revenue_90d"],
            "offer_value": total["revenue_90d"] / total["orders_90d"],
            "offer_trend_30d": _trend(
                total["buyers_30d"].to_numpy(), total["buyers_prev_30d"].to_numpy()
            ),
            "offer_buyers_30d_last_year": total["buyers_30d_last_year"].astype(np.int64),
            "offer_repeat_share_365d": total["repeat_buyers_365d"] / total["buyers_365d"],
        }
    )
