"""Point-in-time features and labels on small data with known answers."""

from __future__ import annotations

import tempfile
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.catalog import Workspace
from features.config import FeatureParams, LabelParams, SegmentParams
from features.ingest import customers_table
from features.snapshots import build_snapshots, monthly_cutoffs, read_snapshots
from tests.conftest import tx

CUTOFF = pd.Timestamp("2021-03-01", tz="UTC")


def _known() -> pd.DataFrame:
    rows = [
        # customer a: three purchases before the cutoff, one return, one purchase after
        ("a", "o1", "2021-01-01", 100.0),
        ("a", "o2", "2021-01-11", 50.0),
        ("a", "o3", "2021-02-20", 30.0),
        ("a", "r1", "2021-02-21", -10.0),
        ("a", "o4", "2021-03-10", 70.0),
        # customer b: one purchase long ago, nothing after: churns
        ("b", "o5", "2020-06-01", 20.0),
        # customer c: only buys after the cutoff: not in the snapshot at the cutoff
        ("c", "o6", "2021-03-02", 5.0),
        # d: first and last lines of the data (set the observed start and end)
        ("d", "o0", "2020-01-01", 1.0),
        ("d", "o7", "2021-06-01", 1.0),
        # e: first purchase exactly at the cutoff: neither in the features nor in the labels
        ("e", "o8", "2021-03-01", 5.0),
    ]
    cats = ["x", "y", "x", "x", "y", "x", "x", "x", "x", "x"]
    products = ["p1", "p2", "p1", "p1", "p3", "p1", "p1", "p9", "p9", "p1"]
    return tx(rows, category=cats, product_id=products)


def _build(
    frame: pd.DataFrame,
    cutoffs: list[date] | None = None,
    labels: LabelParams | None = None,
    partitions: int = 2,
) -> dict[str, pd.DataFrame]:
    """All outputs, each sorted by cutoff and keys (pair outputs are in partition order).
    Customer attributes on the lines (country) also go to a customers table, as ingest does."""
    attributes = [c for c in ("country",) if c in frame]
    tables = {"transactions": frame}
    if attributes:
        tables["customers"] = customers_table(frame, attributes, None)
    with tempfile.TemporaryDirectory() as out:
        build_snapshots(
            tables,
            FeatureParams(cutoffs=cutoffs or [CUTOFF.date()], partitions=partitions),
            labels
            or LabelParams(churn_horizon_days=30, clv_horizon_days=30, offer_horizon_days=30),
            SegmentParams(),
            Workspace(Path(out)),
        )
        outputs = read_snapshots(Workspace(Path(out)))
    keys = ["event_timestamp", "customer_id", "offer_id"]
    return {
        name: f.sort_values([k for k in keys if k in f], kind="stable").reset_index(drop=True)
        for name, f in outputs.items()
    }


def test_features_have_known_values() -> None:
    feats = _build(_known())["customer_features"].set_index("customer_id")
    assert set(feats.index) == {"a", "b", "d"}
    a = feats.loc["a"]
    assert a["recency_days"] == pytest.approx(9.0)  # last purchase 2021-02-20
    assert a["tenure_days"] == pytest.approx(59.0)
    assert a["frequency_30d"] == 1 and a["frequency_90d"] == 3
    assert a["monetary_30d"] == pytest.approx(20.0)  # 30 - 10 returned
    assert a["monetary_lifetime"] == pytest.approx(170.0)
    assert a["gap_mean_days"] == pytest.approx(25.0)  # gaps 10 and 40
    assert a["gap_std_days"] == pytest.approx(15.0)
    assert a["returns_share_365d"] == pytest.approx(10 / 180)
    assert a["distinct_products_365d"] == 2
    assert a["category_share_1"] + a["category_share_2"] == pytest.approx(1.0)
    assert a["active_months_365d"] == 2  # 9 days ago, and 49 and 59 days ago
    assert feats.loc["b", "recency_days"] == pytest.approx(273.0)
    # b bought 2020-06-01: 92 days after the same date a year before the cutoff
    assert feats.loc["b", "frequency_ly_next_90d"] == 0
    assert feats.loc["b", "monetary_ly_next_180d"] == pytest.approx(20.0)
    assert np.isnan(feats.loc["b", "gap_mean_days"])


def test_labels_have_known_values() -> None:
    out = _build(_known())
    churn = out["labels_churn"].set_index("customer_id")["churned"].to_dict()
    assert churn == {"a": 0, "b": 1}  # c, d and e were not active before the cutoff
    clv = out["labels_clv"].set_index("customer_id")["clv"].to_dict()
    assert clv == {"a": 70.0, "b": 0.0}
    offers = out["labels_offer"]
    assert list(zip(offers["customer_id"], offers["offer_id"], strict=True)) == [("a", "y")]


def test_seasonal_features_are_unknown_before_the_data_starts() -> None:
    early = _known()[lambda f: f["timestamp"] >= pd.Timestamp("2020-06-01", tz="UTC")]
    feats = _build(early)["customer_features"].set_index("customer_id")
    assert feats["monetary_ly_next_180d"].isna().all()
    assert feats.loc["b", "monetary_lifetime"] == pytest.approx(20.0)


def test_censored_cutoff_has_no_label_but_has_features() -> None:
    late = date(2021, 5, 15)  # 30-day horizon ends after the data (2021-06-01)
    out = _build(_known(), cutoffs=[CUTOFF.date(), late])
    for name in ("labels_churn", "labels_clv", "labels_offer"):
        stamps = set(out[name]["event_timestamp"])
        assert pd.Timestamp(late, tz="UTC") not in stamps, name
        assert CUTOFF in stamps, name
    assert pd.Timestamp(late, tz="UTC") in set(out["customer_features"]["event_timestamp"])


def _random_transactions(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = 3000
    start = pd.Timestamp("2020-01-01")
    rows = pd.DataFrame(
        {
            "customer_id": rng.integers(0, 150, n).astype(str),
            "order_id": np.arange(n).astype(str),
            "timestamp": start + pd.to_timedelta(rng.integers(0, 600 * 86400, n), unit="s"),
            "amount": np.round(rng.normal(40, 30, n), 2),
            "category": rng.choice(list("abcdefghij"), n),
            "product_id": rng.integers(0, 60, n).astype(str),
            # A customer attribute carried per line (like Online Retail's country per invoice).
            "country": rng.choice(["UK", "FR", "DE"], n),
        }
    )
    rows["timestamp"] = rows["timestamp"].dt.tz_localize("UTC")
    return rows


CUTOFFS = [date(2020, 9, 1), date(2021, 1, 1), date(2021, 4, 1)]
LABELS = LabelParams(churn_horizon_days=60, clv_horizon_days=90, offer_horizon_days=30)


def _at(frame: pd.DataFrame, cutoff: date) -> pd.DataFrame:
    rows = frame[frame["event_timestamp"] == pd.Timestamp(cutoff, tz="UTC")]
    keys = [c for c in ("customer_id", "offer_id") if c in rows]
    return (
        rows.drop(columns=["created_timestamp"], errors="ignore")
        .sort_values(keys)
        .reset_index(drop=True)
    )


def changed_future(base: pd.DataFrame, t: pd.Timestamp) -> pd.DataFrame:
    """`base` with every event at or after `t` changed, and events added exactly at `t`."""
    future = base["timestamp"] >= t
    changed = base.copy()
    changed.loc[future, "amount"] *= -3
    changed.loc[future, "category"] = "z"
    changed.loc[future, "country"] = "Atlantis"  # moved (or a corrected value) after t
    extra = (
        base[future].head(200).assign(order_id=lambda f: "new" + f["order_id"], timestamp=t)
    )  # events exactly at the cutoff
    return pd.concat([changed, extra], ignore_index=True)


@pytest.mark.parametrize("cutoff", CUTOFFS)
def test_changing_the_future_does_not_move_features(cutoff: date) -> None:
    base = _random_transactions(1)
    changed = changed_future(base, pd.Timestamp(cutoff, tz="UTC"))
    before, after = _build(base, CUTOFFS, LABELS), _build(changed, CUTOFFS, LABELS)
    for name in ("customer_features", "customer_btyd", "customer_offer_features", "offer_features"):
        pd.testing.assert_frame_equal(_at(before[name], cutoff), _at(after[name], cutoff))
    assert not _at(before["labels_clv"], cutoff).equals(_at(after["labels_clv"], cutoff))
    # The BTYD fit at the cutoff saw only the past, and it did fit (values, not all missing).
    assert _at(before["customer_btyd"], cutoff)["btyd_p_alive"].between(0, 1).mean() > 0.9
    # The attribute is there, as of the cutoff (the test is not vacuous).
    assert _at(before["customer_features"], cutoff)["country"].isin(["UK", "FR", "DE"]).all()
    # So are the time-decayed affinity and the offers' repeat-buyer share.
    assert (_at(before["customer_offer_features"], cutoff)["affinity_intensity_90d"] > 0).all()
    assert _at(before["offer_features"], cutoff)["offer_repeat_share_365d"].between(0, 1).all()


def test_customer_attributes_are_the_last_value_seen_before_the_cutoff() -> None:
    rows = [
        ("a", "o1", "2021-01-05", 10.0, "UK"),
        ("a", "o2", "2021-02-10", 10.0, None),  # a line without the attribute changes nothing
        ("a", "o3", "2021-02-20", 10.0, "FR"),  # moved before the cutoff: FR at the cutoff
        ("a", "o4", "2021-03-01", 10.0, "DE"),  # exactly at the cutoff: not before it
        ("b", "o5", "2021-01-10", 10.0, "US"),
        ("b", "o6", "2021-05-01", 10.0, "CA"),  # after the cutoff
        ("c", "o7", "2021-01-02", 10.0, None),  # never carries it: the customers table's
        ("d", "o8", "2021-06-01", 10.0, "NZ"),
    ]
    frame = pd.DataFrame(
        rows, columns=["customer_id", "order_id", "timestamp", "amount", "country"]
    ).assign(timestamp=lambda f: pd.to_datetime(f["timestamp"], utc=True))
    customers = customers_table(frame, ["country"], None)
    assert customers.set_index("customer_id")["country"].to_dict()["a"] == "DE"  # latest ever
    customers.loc[customers["customer_id"] == "c", "country"] = "IE"  # from a customers file
    with tempfile.TemporaryDirectory() as out:
        build_snapshots(
            {"transactions": frame, "customers": customers},
            FeatureParams(cutoffs=[CUTOFF.date()], partitions=1),
            LabelParams(churn_horizon_days=30, clv_horizon_days=30, offer_horizon_days=30),
            SegmentParams(),
            Workspace(Path(out)),
        )
        snapshot = read_snapshots(Workspace(Path(out)))["customer_features"]
    countries = snapshot.set_index("customer_id")["country"].to_dict()
    assert countries == {"a": "FR", "b": "US", "c": "IE"}


@pytest.mark.parametrize("cutoff", CUTOFFS[:2])
def test_changing_the_past_does_not_move_labels(cutoff: date) -> None:
    base = _random_transactions(2)
    t = pd.Timestamp(cutoff, tz="UTC")
    past = base["timestamp"] < t
    changed = base.copy()
    changed.loc[past, "amount"] = changed.loc[past, "amount"].abs() * 2 + 1
    changed.loc[past, "product_id"] = "old"
    before, after = _build(base, CUTOFFS, LABELS), _build(changed, CUTOFFS, LABELS)
    for name in ("labels_churn", "labels_clv", "labels_offer"):
        pd.testing.assert_frame_equal(_at(before[name], cutoff), _at(after[name], cutoff))
    assert not _at(before["customer_features"], cutoff).equals(
        _at(after["customer_features"], cutoff)
    )


def test_partitioning_does_not_change_results() -> None:
    frame = _random_transactions(3)
    one = _build(frame, CUTOFFS, LABELS, partitions=1)
    many = _build(frame, CUTOFFS, LABELS, partitions=7)
    for name, frame_one in one.items():
        pd.testing.assert_frame_equal(
            frame_one.drop(columns=["created_timestamp"], errors="ignore"),
            many[name].drop(columns=["created_timestamp"], errors="ignore"),
        )


def test_monthly_cutoffs_start_after_min_history() -> None:
    cuts = monthly_cutoffs(
        pd.Timestamp("2021-01-15", tz="UTC"), pd.Timestamp("2021-06-10", tz="UTC"), 30
    )
    assert [c.date() for c in cuts] == [
        date(2021, 3, 1),
        date(2021, 4, 1),
        date(2021, 5, 1),
        date(2021, 6, 1),
    ]
