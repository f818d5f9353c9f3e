"""Offer features: the offer catalog, offer popularity and customer x offer affinity.

An offer is a product category or a product (`LabelParams.offer_catalog`). Affinity is
partition-pure (one customer's lines); offer popularity is summed over partitions: partitions
hold disjoint customers, so buyer counts and revenues add up.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.engineering import (
    US_PER_DAY,
    Partition,
    _sum,
    _trend,
    _window,
    cutoff_us,
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


def affinity_at(
    part: Partition, cutoff: pd.Timestamp, catalog: str, top_offers: int
) -> pd.DataFrame:
    """Customer x offer affinity from the 365 days before `cutoff`: for each customer the
    `top_offers` offers bought in most orders (ties: most spend). Bounding the pairs keeps
    the table linear in customers whatever the catalog size."""
    t = cutoff_us(cutoff)
    codes, ids = offer_lines(part, catalog)
    ln = part.lines
    w = _window(ln.ts, t - 365 * US_PER_DAY, t)
    keep = (codes[w] >= 0) & (ln.gross[w] > 0)
    c, k, g = ln.customer[w][keep], codes[w][keep], ln.gross[w][keep]
    if len(c) == 0:
        return pd.DataFrame(columns=[CUSTOMER_ID, OFFER_ID, EVENT_TIMESTAMP])
    ts = ln.ts[w][keep]
    # Ties are broken by offer id, not by code: codes number offers in order of appearance
    # in the partition, so they differ from one partitioning to another.
    by_id = np.argsort(np.argsort(ids.astype(str), kind="stable"), kind="stable")
    frame = pd.DataFrame(
        {"c": c, "k": k, "o": ln.order[w][keep], "ts": ts, "g": g, "rank": by_id[k]}
    )
    # The season a year ago (the 30 days that began 365 days before the cutoff) and the
    # last 90 days: an order id where the line falls in the window, else missing.
    last_year = (ts >= t - 365 * US_PER_DAY) & (ts < t - 335 * US_PER_DAY)
    frame["o_ly"] = frame["o"].where(last_year)
    frame["o_90"] = frame["o"].where(ts >= t - 90 * US_PER_DAY)
    # Each order weighs 0.5 ** (age / half-life); an offer's intensity is the sum of the
    # weights of its orders, its share that sum over the weights of all the customer's
    # orders: TIFU-KNN's time-decayed personal item vector.
    frame["w"] = 0.5 ** ((t - ts) / US_PER_DAY / AFFINITY_HALF_LIFE_DAYS)
    weights = frame.drop_duplicates(["c", "o"]).groupby("c")["w"].sum()
    per_offer = frame.drop_duplicates(["c", "k", "o"]).groupby(["c", "k"], sort=True)["w"].sum()
    pairs = (
        frame.groupby(["c", "k"], sort=True)
        .agg(
            affinity_orders_365d=("o", "nunique"),
            affinity_spend_365d=("g", "sum"),
            last=("ts", "max"),
            orders_ly=("o_ly", "nunique"),
            orders_90=("o_90", "nunique"),
            rank=("rank", "first"),
        )
        .reset_index()
        .assign(intensity=per_offer.to_numpy())
        .sort_values(
            ["c", "affinity_orders_365d", "affinity_spend_365d", "rank"],
            ascending=[True, False, False, True],
            kind="stable",
        )
    )
    pairs = pairs[pairs.groupby("c", sort=False).cumcount() < top_offers]
    total = _sum(c, len(part.customer_ids), g)
    return pd.DataFrame(
        {
            CUSTOMER_ID: part.customer_ids[pairs["c"].to_numpy()],
            OFFER_ID: ids[pairs["k"].to_numpy()],
            EVENT_TIMESTAMP: pd.Timestamp(cutoff),
            "affinity_orders_365d": pairs["affinity_orders_365d"].to_numpy(np.int64),
            "affinity_spend_365d": pairs["affinity_spend_365d"].to_numpy(),
            "affinity_spend_share_365d": pairs["affinity_spend_365d"].to_numpy()
            / total[pairs["c"].to_numpy()],
            "affinity_recency_days": (t - pairs["last"].to_numpy()) / US_PER_DAY,
            "affinity_orders_30d_last_year": pairs["orders_ly"].to_numpy(np.int64),
            "affinity_orders_90d": pairs["orders_90"].to_numpy(np.int64),
            "affinity_intensity_90d": pairs["intensity"].to_numpy(),
            "affinity_intensity_share_90d": pairs["intensity"].to_numpy()
            / weights.reindex(pairs["c"]).to_numpy(),
        }
    )


def history_offers(customer_ids: pd.Series, affinity: pd.DataFrame) -> np.ndarray:
    """Each customer's affinity offers, most bought first, joined into one string (empty when
    the customer bought none): what an online lookup needs to find the customer x offer rows."""
    if affinity.empty:
        return np.full(len(customer_ids), "", dtype=object)
    joined = affinity.groupby(CUSTOMER_ID, sort=False)[OFFER_ID].agg(HISTORY_OFFERS_SEPARATOR.join)
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
    year = pd.DataFrame(
        {"k": codes[y][y_keep], "c": ln.customer[y][y_keep], "o": ln.order[y][y_keep]}
    ).drop_duplicates()
    orders_per_buyer = year.groupby(["k", "c"], sort=False).size()
    offer_of_buyer = orders_per_buyer.index.get_level_values("k").to_numpy()
    year_buyers = _sum(offer_of_buyer, len(ids))
    repeat_buyers = _sum(offer_of_buyer[orders_per_buyer.to_numpy() >= 2], len(ids))
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
