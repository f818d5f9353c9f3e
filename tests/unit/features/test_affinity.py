"""Customer x offer affinity and the BG/NBD likelihood, computed with sorted-array operations,
against their plain definitions (a pandas groupby of the lines, the paper's formula per
customer): the same rows and the same floats."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.special import betaln, gammaln

from features.btyd import BgNbd, bgnbd_log_likelihood
from features.engineering import US_PER_DAY, cutoff_us, prepare_partition
from features.names import CUSTOMER_ID, HISTORY_OFFERS_SEPARATOR, OFFER_ID
from features.offers import affinity_at, history_offers

CUTOFF = pd.Timestamp("2021-01-01", tz="UTC")


def _lines(seed: int) -> pd.DataFrame:
    """Lines with repeated offers inside orders, several lines per order and time, returns,
    lines without a category, and equal amounts (ties in orders and in spend)."""
    rng = np.random.default_rng(seed)
    orders = 900
    order_of_line = np.repeat(np.arange(orders), rng.integers(1, 6, orders))
    n = len(order_of_line)
    day = rng.integers(0, 500, orders)[order_of_line]
    # Some orders' lines a few hours apart: an order seen at two times.
    hours = np.where(rng.random(n) < 0.2, rng.integers(0, 30, n), 0)
    stamp = pd.Timestamp("2019-09-01", tz="UTC") + pd.to_timedelta(day * 24 + hours, unit="h")
    category = rng.choice(list("abcdefg"), n).astype(object)
    category[rng.random(n) < 0.05] = None
    return pd.DataFrame(
        {
            CUSTOMER_ID: rng.integers(0, 40, orders).astype(str)[order_of_line],
            "order_id": order_of_line.astype(str),
            "timestamp": stamp,
            "amount": rng.choice([-2.5, 1.1, 2.2, 3.3, 4.4, 10.0], n),
            "category": category,
            "product_id": rng.integers(0, 30, n).astype(str),
        }
    )


def _plain_affinity(lines: pd.DataFrame, top_offers: int) -> pd.DataFrame:
    """The definition: per customer and offer, over the positive lines of the 365 days before
    the cutoff; each customer's `top_offers` by orders, spend, then offer id."""
    t = cutoff_us(CUTOFF)
    ts = lines["timestamp"].astype("datetime64[us, UTC]").astype("int64")
    lines = lines.assign(ts=ts).sort_values("ts", kind="stable")
    ts = lines["ts"]
    window = lines[(ts >= t - 365 * US_PER_DAY) & (ts < t)]
    window = window[window["category"].notna() & (window["amount"] > 0)]
    last_year = window["ts"] < t - 335 * US_PER_DAY
    recent = window["ts"] >= t - 90 * US_PER_DAY
    frame = window.assign(
        o_ly=window["order_id"].where(last_year), o_90=window["order_id"].where(recent)
    )
    pairs = (
        frame.groupby([CUSTOMER_ID, "category"], sort=True)
        .agg(
            orders=("order_id", "nunique"),
            spend=("amount", "sum"),
            last=("ts", "max"),
            ly=("o_ly", "nunique"),
            o90=("o_90", "nunique"),
        )
        .reset_index()
        .sort_values(
            [CUSTOMER_ID, "orders", "spend", "category"],
            ascending=[True, False, False, True],
            kind="stable",
        )
    )
    pairs = pairs[pairs.groupby(CUSTOMER_ID).cumcount() < top_offers]
    # Time-decayed orders: each order weighs 0.5 ** (age in days / 90) at its first line;
    # per pair, and per customer over all their orders.
    weighted = window.assign(w=0.5 ** ((t - window["ts"]) / US_PER_DAY / 90))
    keys = [CUSTOMER_ID, "category"]
    per_pair = weighted.drop_duplicates([*keys, "order_id"]).groupby(keys)["w"].sum()
    per_customer = weighted.drop_duplicates([CUSTOMER_ID, "order_id"]).groupby(CUSTOMER_ID)["w"]
    intensity = per_pair.reindex(pd.MultiIndex.from_frame(pairs[keys])).to_numpy()
    # A customer's total spend: summed line by line in time order.
    codes, customers = pd.factorize(window[CUSTOMER_ID])
    total = pd.Series(np.bincount(codes, weights=window["amount"]), index=customers)
    return pd.DataFrame(
        {
            CUSTOMER_ID: pairs[CUSTOMER_ID].to_numpy(),
            OFFER_ID: pairs["category"].to_numpy(),
            "affinity_orders_365d": pairs["orders"].to_numpy(np.int64),
            "affinity_spend_365d": pairs["spend"].to_numpy(),
            "affinity_spend_share_365d": pairs["spend"].to_numpy()
            / total[pairs[CUSTOMER_ID]].to_numpy(),
            "affinity_recency_days": (t - pairs["last"].to_numpy()) / US_PER_DAY,
            "affinity_orders_30d_last_year": pairs["ly"].to_numpy(np.int64),
            "affinity_orders_90d": pairs["o90"].to_numpy(np.int64),
            "affinity_intensity_90d": intensity,
            "affinity_intensity_share_90d": intensity
            / per_customer.sum().reindex(pairs[CUSTOMER_ID]).to_numpy(),
        }
    )


@pytest.mark.parametrize(("seed", "top_offers"), [(1, 50), (2, 3), (3, 1)])
def test_affinity_is_the_groupby_of_the_lines(seed: int, top_offers: int) -> None:
    lines = _lines(seed)
    part = prepare_partition(lines, [], lines["timestamp"].min())
    got = affinity_at(part, CUTOFF, "category", top_offers)
    expected = _plain_affinity(lines, top_offers)
    assert expected[CUSTOMER_ID].nunique() > 30 and (expected["affinity_orders_365d"] > 1).any()
    # Rows come customer by customer (in the partition's order), best offer first.
    got = got.drop(columns="event_timestamp")
    got = got.sort_values(CUSTOMER_ID, kind="stable").reset_index(drop=True)
    # Decayed weights are summed in another order than the plain groupby's: equal to 1e-12.
    decayed = ["affinity_intensity_90d", "affinity_intensity_share_90d"]
    pd.testing.assert_frame_equal(got[decayed], expected[decayed], rtol=1e-12)
    got, expected = got.drop(columns=decayed), expected.drop(columns=decayed)
    pd.testing.assert_frame_equal(got, expected, check_exact=True)


def test_history_offers_lists_each_customers_offers_in_affinity_order() -> None:
    lines = _lines(4)
    part = prepare_partition(lines, [], lines["timestamp"].min())
    affinity = affinity_at(part, CUTOFF, "category", 50)
    customers = pd.Series([*part.customer_ids, "never-bought"])
    got = history_offers(customers, affinity)
    for customer, joined in zip(customers, got, strict=True):
        offers = affinity.loc[affinity[CUSTOMER_ID] == customer, OFFER_ID]
        assert joined == HISTORY_OFFERS_SEPARATOR.join(offers)
    assert got[-1] == "" and (got[:-1] != "").sum() > 10


def test_likelihood_is_the_papers_formula_for_every_customer() -> None:
    rng = np.random.default_rng(5)
    x = rng.poisson(2.0, 5000).astype(float)
    T = rng.uniform(1, 700, 5000)
    t_x = np.where(x > 0, T * rng.uniform(0, 1, 5000), 0.0)
    p = BgNbd(r=0.31, alpha=7.5, a=0.9, b=2.7)
    a1 = gammaln(p.r + x) - gammaln(p.r) + p.r * np.log(p.alpha)
    a2 = betaln(p.a, p.b + x) - betaln(p.a, p.b)
    a3 = -(p.r + x) * np.log(p.alpha + T)
    with np.errstate(divide="ignore", invalid="ignore"):
        a4 = np.where(
            x > 0,
            np.log(p.a)
            - np.log(np.maximum(p.b + x - 1, 1e-12))
            - (p.r + x) * np.log(p.alpha + t_x),
            -np.inf,
        )
    expected = a1 + a2 + np.logaddexp(a3, a4)
    np.testing.assert_array_equal(bgnbd_log_likelihood(p, x, t_x, T), expected)
