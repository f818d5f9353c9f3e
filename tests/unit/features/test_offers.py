"""Offer features with known values: the time-decayed customer x offer affinity (TIFU-KNN's
personal vector) and the share of an offer's buyers who bought it again."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.conftest import tx
from tests.unit.features.test_engineering import CUTOFF, _build


def _day(days_before: int) -> str:
    return str((CUTOFF - pd.Timedelta(days=days_before)).date())


def _data() -> pd.DataFrame:
    rows = [
        ("a", "o1", _day(180), 10.0),  # p1 and p2 in one order, weight 0.25
        ("a", "o1", _day(180), 5.0),
        ("a", "o2", _day(90), 10.0),  # p1 again, weight 0.5
        ("a", "o3", _day(400), 10.0),  # p2 more than a year ago: outside every window
        ("b", "o4", _day(90), 10.0),  # p1 once
        ("c", "o5", _day(10), 10.0),  # p2 once
        ("d", "o6", str((CUTOFF + pd.Timedelta(days=5)).date()), 10.0),  # after the cutoff
        ("d", "o7", _day(1000), 1.0),  # d: the start of the data
    ]
    return tx(rows, product_id=["p1", "p2", "p1", "p2", "p1", "p2", "p1", "p3"])


def test_time_decayed_affinity_has_known_values() -> None:
    affinity = _build(_data())["customer_offer_features"].set_index(["customer_id", "offer_id"])
    # An order's weight halves every 90 days: a's p1 orders weigh 0.25 + 0.5, p2's 0.25.
    assert affinity.loc[("a", "p1"), "affinity_intensity_90d"] == pytest.approx(0.75)
    assert affinity.loc[("a", "p2"), "affinity_intensity_90d"] == pytest.approx(0.25)
    # Shares of the customer's weighted orders (0.75 in all): p1 is in both, p2 in one.
    assert affinity.loc[("a", "p1"), "affinity_intensity_share_90d"] == pytest.approx(1.0)
    assert affinity.loc[("a", "p2"), "affinity_intensity_share_90d"] == pytest.approx(1 / 3)
    assert affinity.loc[("b", "p1"), "affinity_intensity_90d"] == pytest.approx(0.5)
    assert affinity.loc[("c", "p2"), "affinity_intensity_share_90d"] == pytest.approx(1.0)


@pytest.mark.parametrize("partitions", [1, 3])
def test_offer_repeat_share_has_known_values(partitions: int) -> None:
    offers = _build(_data(), partitions=partitions)["offer_features"].set_index("offer_id")
    # p1: a bought it in two orders of the year, b in one. p2: a and c once each in the
    # year (a's order of 400 days ago does not count).
    assert offers.loc["p1", "offer_repeat_share_365d"] == pytest.approx(0.5)
    assert offers.loc["p2", "offer_repeat_share_365d"] == pytest.approx(0.0)
    assert "p3" not in offers.index  # not bought in the last 90 days
