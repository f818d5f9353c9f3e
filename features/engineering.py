"""Point-in-time customer features over one partition of customers.

A partition holds all the rows of a set of customers, so every function here is pure over it
and the same code runs in-process or per partition on a cluster. At a cutoff `t` only events
with `timestamp < t` are read: the arrays are sorted by time and cut with `searchsorted`.
Population-relative features (RFM scores, tiers) are added afterwards by `features.segments`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.names import (
    CATEGORY_SLOTS,
    CUSTOMER_ACTIVITY,
    CUSTOMER_CALENDAR,
    CUSTOMER_ID,
    WINDOWS_DAYS,
)

US_PER_DAY = 86_400_000_000


def to_us(values: pd.Series | pd.DatetimeIndex) -> np.ndarray:
    """UTC timestamps as int64 microseconds since the epoch."""
    series = pd.Series(values)
    if series.dt.tz is None:
        series = series.dt.tz_localize("UTC")
    return series.dt.tz_convert("UTC").astype("datetime64[us, UTC]").astype("int64").to_numpy()


def cutoff_us(cutoff: pd.Timestamp) -> int:
    """A cutoff as int64 microseconds since the epoch (UTC)."""
    ts = pd.Timestamp(cutoff)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return int(ts.value // 1000)


@dataclass(frozen=True)
class Orders:
    """Orders of one partition, sorted by time; customers are integer codes 0..n-1."""

    customer: np.ndarray  # int64 code
    ts: np.ndarray  # int64 us
    amount: np.ndarray  # net
    gross: np.ndarray  # sum of positive line amounts
    returned: np.ndarray  # sum of returned (negative) line amounts, as a positive number
    items: np.ndarray
    discount: np.ndarray

    @property
    def is_purchase(self) -> np.ndarray:
        """A purchase is an order whose net amount is positive (returns-only orders are not)."""
        return self.amount > 0


@dataclass(frozen=True)
class Lines:
    """Transaction lines of one partition, sorted by time, with integer codes."""

    customer: np.ndarray
    order: np.ndarray  # int64 code of the line's order
    ts: np.ndarray
    gross: np.ndarray  # positive part of the amount
    product: np.ndarray  # int64 code, -1 when unknown
    category: np.ndarray  # int64 code, -1 when unknown
    slot: np.ndarray  # index of the category in the top-category slots, -1 otherwise
    product_ids: np.ndarray  # product code -> product id
    category_ids: np.ndarray  # category code -> category


@dataclass(frozen=True)
class PurchaseDays:
    """Distinct (customer, day) purchase days sorted by day, with the gap to the previous one."""

    customer: np.ndarray
    ts: np.ndarray
    gap_days: np.ndarray  # NaN for a customer's first purchase day


@dataclass(frozen=True)
class Partition:
    """Everything the features of one partition of customers are computed from."""

    customer_ids: np.ndarray  # code -> customer id
    orders: Orders
    lines: Lines
    days: PurchaseDays
    events: pd.DataFrame  # offer events: customer (code), ts, event
    interactions: pd.DataFrame  # customer (code), ts, value
    observed_from: int  # us: the start of the whole dataset (not just this partition)


def _codes(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes (-1 for missing) and the distinct values they stand for."""
    codes, uniques = pd.factorize(values)
    return codes.astype(np.int64), np.asarray(uniques, dtype=object)


def prepare_partition(
    transactions: pd.DataFrame,
    category_slots: list[str],
    observed_from: pd.Timestamp,
    offer_events: pd.DataFrame | None = None,
    interactions: pd.DataFrame | None = None,
) -> Partition:
    """Index one partition's canonical rows for fast point-in-time aggregation.

    `observed_from` is when the whole dataset starts: windows before it are unknown."""
    tx = transactions.sort_values("timestamp", kind="stable")
    cust_codes, customer_ids = pd.factorize(tx[CUSTOMER_ID])
    code_of = pd.Series(np.arange(len(customer_ids)), index=customer_ids)
    ts = to_us(tx["timestamp"])
    amount = tx["amount"].to_numpy(dtype=np.float64)
    gross = np.where(amount > 0, amount, 0.0)
    quantity = tx["quantity"].to_numpy(dtype=np.float64) if "quantity" in tx else np.ones(len(tx))
    discount = (
        tx["discount"].fillna(0).to_numpy(dtype=np.float64)
        if "discount" in tx
        else np.zeros(len(tx))
    )
    category = tx["category"] if "category" in tx else pd.Series(pd.NA, index=tx.index)
    slot_of = {name: i for i, name in enumerate(category_slots[:CATEGORY_SLOTS])}
    slots = category.map(slot_of).fillna(-1).to_numpy(dtype=np.int64)
    product = tx["product_id"] if "product_id" in tx else pd.Series(pd.NA, index=tx.index)

    product_codes, product_ids = _codes(product)
    category_codes, category_ids = _codes(category)
    order_codes = pd.factorize(tx["order_id"])[0].astype(np.int64)
    lines = Lines(
        cust_codes.astype(np.int64),
        order_codes,
        ts,
        gross,
        product_codes,
        category_codes,
        slots,
        product_ids,
        category_ids,
    )

    frame = pd.DataFrame(
        {
            "c": cust_codes,
            "o": order_codes,
            "ts": ts,
            "amount": amount,
            "gross": gross,
            "returned": gross - amount,
            "items": np.where(amount > 0, quantity, 0.0),
            "discount": discount,
        }
    )
    grouped = (
        frame.groupby(["c", "o"], sort=False)
        .agg(
            ts=("ts", "min"),
            amount=("amount", "sum"),
            gross=("gross", "sum"),
            returned=("returned", "sum"),
            items=("items", "sum"),
            discount=("discount", "sum"),
        )
        .reset_index()
        .sort_values("ts", kind="stable")
    )
    orders = Orders(
        grouped["c"].to_numpy(np.int64),
        grouped["ts"].to_numpy(np.int64),
        grouped["amount"].to_numpy(),
        grouped["gross"].to_numpy(),
        grouped["returned"].to_numpy(),
        grouped["items"].to_numpy(),
        grouped["discount"].to_numpy(),
    )

    return Partition(
        customer_ids.to_numpy(dtype=object),
        orders,
        lines,
        purchase_days(orders),
        _coded_events(offer_events, code_of, ["event"]),
        _coded_events(interactions, code_of, ["value"]),
        cutoff_us(observed_from),
    )


def purchase_days(orders: Orders) -> PurchaseDays:
    """Distinct purchase days per customer with the gap in days since the previous one."""
    buy = orders.is_purchase
    days = pd.DataFrame({"c": orders.customer[buy], "day": orders.ts[buy] // US_PER_DAY})
    days = days.drop_duplicates().sort_values(["c", "day"], kind="stable")
    gap = days.groupby("c")["day"].diff().to_numpy(dtype=np.float64)
    order = np.argsort(days["day"].to_numpy(), kind="stable")
    return PurchaseDays(
        days["c"].to_numpy()[order], days["day"].to_numpy()[order] * US_PER_DAY, gap[order]
    )


def _coded_events(frame: pd.DataFrame | None, code_of: pd.Series, keep: list[str]) -> pd.DataFrame:
    if frame is None or len(frame) == 0:
        return pd.DataFrame(
            {
                "c": np.array([], dtype=np.int64),
                "ts": np.array([], np.int64),
                **{k: np.array([], dtype=object) for k in keep},
            }
        )
    known = frame[frame[CUSTOMER_ID].isin(code_of.index)]
    out = pd.DataFrame(
        {"c": code_of.loc[known[CUSTOMER_ID]].to_numpy(np.int64), "ts": to_us(known["timestamp"])}
    )
    for k in keep:
        out[k] = known[k].to_numpy() if k in known else np.nan
    return out.sort_values("ts", kind="stable").reset_index(drop=True)


def _window(ts: np.ndarray, start: int, end: int) -> slice:
    """Rows of a time-sorted array with start <= ts < end."""
    return slice(int(np.searchsorted(ts, start, "left")), int(np.searchsorted(ts, end, "left")))


def _sum(codes: np.ndarray, n: int, weights: np.ndarray | None = None) -> np.ndarray:
    return np.bincount(codes, weights=weights, minlength=n).astype(np.float64)


def distinct_sorted(keys: np.ndarray) -> np.ndarray:
    """`np.unique` of integer keys by a sort: numpy's hash-based unique is many times slower
    on keys spread over a wide range (numpy 2.4: 340 ms against 7 ms for 300k keys)."""
    ordered = np.sort(keys)
    return ordered[np.r_[True, ordered[1:] != ordered[:-1]]] if len(ordered) else ordered


def unique_inverse(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`np.unique(keys, return_inverse=True)` of integer keys, by a sort."""
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    new = np.r_[True, ordered[1:] != ordered[:-1]] if len(ordered) else np.zeros(0, bool)
    inverse = np.empty(len(keys), dtype=np.int64)
    inverse[order] = np.cumsum(new) - 1
    return ordered[new], inverse


def unique_pairs(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (a, b) pairs of non-negative integer codes, sorted by a then b."""
    if len(a) == 0:
        return a.astype(np.int64), b.astype(np.int64)
    base = int(b.max()) + 1
    pairs = distinct_sorted(a.astype(np.int64) * base + b)
    return pairs // base, pairs % base


def _distinct(codes: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    known = values >= 0
    return _sum(unique_pairs(codes[known], values[known])[0], n)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den != 0, num / den, np.nan)


def _trend(recent: np.ndarray, previous: np.ndarray) -> np.ndarray:
    """(recent - previous) / (|recent| + |previous|): -1 all fall, +1 all rise, 0 flat."""
    den = np.abs(recent) + np.abs(previous)
    return np.where(den > 0, _ratio(recent - previous, den), 0.0)


def cutoff_month(cutoff: pd.Timestamp) -> int:
    """Month of the year (1..12) of a cutoff, in UTC like the cutoffs themselves."""
    return pd.Timestamp(cutoff_us(cutoff), unit="us", tz="UTC").month


def customer_features_at(part: Partition, cutoff: pd.Timestamp) -> pd.DataFrame:
    """Activity and calendar features of every customer with an order before `cutoff`, from
    events < cutoff."""
    t = cutoff_us(cutoff)
    o, ln, n = part.orders, part.lines, len(part.customer_ids)
    hist = _window(o.ts, np.iinfo(np.int64).min, t)
    defs = (*CUSTOMER_ACTIVITY, *CUSTOMER_CALENDAR)
    if hist.stop == 0:
        return pd.DataFrame(columns=[CUSTOMER_ID, *(f.name for f in defs)])
    oc, ots, buy, amount = o.customer[hist], o.ts[hist], o.is_purchase[hist], o.amount[hist]
    seen = _sum(oc, n) > 0

    def in_window(days: int) -> slice:
        # The orders are sorted by time: a window is a slice of them (the same elements in
        # the same order as a mask, so the sums are the same floats).
        return _window(ots, t - days * US_PER_DAY, t)

    out: dict[str, np.ndarray] = {}
    last_buy = np.full(n, np.nan)
    np.fmax.at(last_buy, oc[buy], ots[buy].astype(np.float64))
    first = np.full(n, np.nan)
    np.fmin.at(first, oc, ots.astype(np.float64))
    out["recency_days"] = (t - last_buy) / US_PER_DAY
    out["tenure_days"] = (t - first) / US_PER_DAY
    for w in WINDOWS_DAYS:
        win = in_window(w)
        out[f"frequency_{w}d"] = _sum(oc[win][buy[win]], n)
        out[f"monetary_{w}d"] = _sum(oc[win], n, amount[win])
    out["frequency_lifetime"] = _sum(oc[buy], n)
    out["monetary_lifetime"] = _sum(oc, n, amount)
    y = in_window(365)
    buyer_y, buy_y = oc[y], buy[y]
    buyer_y_buys = buyer_y[buy_y]
    out["avg_order_value_365d"] = _ratio(
        _sum(buyer_y_buys, n, amount[y][buy_y]), out["frequency_365d"]
    )
    out["avg_basket_items_365d"] = _ratio(
        _sum(buyer_y_buys, n, o.items[hist][y][buy_y]), out["frequency_365d"]
    )
    month = np.minimum((t - ots[y][buy_y]) // (30 * US_PER_DAY), 11)
    out["active_months_365d"] = _distinct(buyer_y_buys, month, n)
    age_days = (t - ots[buy]) / US_PER_DAY
    for half_life in (30, 90):
        out[f"purchase_intensity_{half_life}d"] = _sum(oc[buy], n, 0.5 ** (age_days / half_life))
    prev = slice(in_window(180).start, in_window(90).start)
    out["frequency_trend_90d"] = _trend(out["frequency_90d"], _sum(oc[prev][buy[prev]], n))
    out["spend_trend_90d"] = _trend(out["monetary_90d"], _sum(oc[prev], n, amount[prev]))
    # Seasonality: what the customer did a year ago in the period that follows the cutoff;
    # unknown (NaN) when the data does not reach back a year.
    year_ago = t - 365 * US_PER_DAY
    ly90 = _window(ots, year_ago, year_ago + 90 * US_PER_DAY)
    ly180 = _window(ots, year_ago, year_ago + 180 * US_PER_DAY)
    out["frequency_ly_next_90d"] = _sum(oc[ly90][buy[ly90]], n)
    out["monetary_ly_next_90d"] = _sum(oc[ly90], n, amount[ly90])
    out["monetary_ly_next_180d"] = _sum(oc[ly180], n, amount[ly180])
    if year_ago < part.observed_from:
        for name in ("frequency_ly_next_90d", "monetary_ly_next_90d", "monetary_ly_next_180d"):
            out[name] = np.full(n, np.nan)

    d = part.days
    dw = _window(d.ts, np.iinfo(np.int64).min, t)
    dc, gaps = d.customer[dw], d.gap_days[dw]
    has_gap = ~np.isnan(gaps)
    count = _sum(dc[has_gap], n)
    mean = _ratio(_sum(dc[has_gap], n, gaps[has_gap]), count)
    sq = _ratio(_sum(dc[has_gap], n, gaps[has_gap] ** 2), count)
    out["gap_mean_days"] = mean
    out["gap_std_days"] = np.sqrt(np.maximum(sq - mean**2, 0.0))
    out["gap_ratio"] = _ratio(out["recency_days"], mean)

    gross_y = _sum(oc[y], n, o.gross[hist][y])
    out["returns_share_365d"] = _ratio(_sum(oc[y], n, o.returned[hist][y]), gross_y)
    out["discount_share_365d"] = _ratio(
        _sum(oc[y], n, o.discount[hist][y]), gross_y + _sum(oc[y], n, o.discount[hist][y])
    )

    lw = _window(ln.ts, t - 365 * US_PER_DAY, t)
    lc = ln.customer[lw]
    out["distinct_products_365d"] = _distinct(lc, ln.product[lw], n)
    out["distinct_categories_365d"] = _distinct(lc, ln.category[lw], n)
    slot = ln.slot[lw]
    in_slot = slot >= 0
    by_slot = _sum(
        lc[in_slot] * CATEGORY_SLOTS + slot[in_slot], n * CATEGORY_SLOTS, ln.gross[lw][in_slot]
    ).reshape(n, CATEGORY_SLOTS)
    line_gross = _sum(lc, n, ln.gross[lw])
    for k in range(CATEGORY_SLOTS):
        out[f"category_share_{k + 1}"] = np.where(
            line_gross > 0, _ratio(by_slot[:, k], line_gross), 0.0
        )

    ev = part.events
    ew = _window(ev["ts"].to_numpy(), t - 365 * US_PER_DAY, t)
    ec, kind = ev["c"].to_numpy()[ew], ev["event"].to_numpy()[ew]
    out["offers_received_365d"] = _sum(ec[kind == "sent"], n)
    out["offers_redeemed_365d"] = _sum(ec[kind == "redeemed"], n)

    it = part.interactions
    its = it["ts"].to_numpy()
    iw = _window(its, t - 365 * US_PER_DAY, t)
    ic, ival = it["c"].to_numpy()[iw], it["value"].to_numpy(dtype=np.float64)[iw]
    out["interactions_365d"] = _sum(ic, n)
    out["interactions_90d"] = _sum(ic[its[iw] >= t - 90 * US_PER_DAY], n)
    valued = ~np.isnan(ival)
    out["interaction_value_mean_365d"] = _ratio(
        _sum(ic[valued], n, ival[valued]), _sum(ic[valued], n)
    )

    out["cutoff_month"] = np.full(n, cutoff_month(cutoff))

    frame = pd.DataFrame({CUSTOMER_ID: part.customer_ids, **out})[seen]
    for f in defs:
        if f.dtype == "int":
            frame[f.name] = frame[f.name].astype(np.int64)
    return frame.reset_index(drop=True)
