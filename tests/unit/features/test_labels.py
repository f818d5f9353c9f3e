"""Where the observed data ends: a date-only export is observed to the end of its last day."""

from __future__ import annotations

import tempfile
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from features.catalog import Workspace
from features.config import FeatureParams, LabelParams, SegmentParams
from features.labels import is_date_only, is_observed, observed_end, trainable_horizon
from features.snapshots import build_snapshots, read_snapshots
from tests.conftest import tx

LAST = "2021-06-01"  # D: the last date of the data
HORIZON = 30
LABELS = LabelParams(
    churn_horizon_days=HORIZON, clv_horizon_days=HORIZON, offer_horizon_days=HORIZON
)
# cutoff + horizon == D + 1 day: the horizon ends when the last day ends
EDGE = date(2021, 5, 3)


def _rows(last: str = LAST) -> pd.DataFrame:
    rows = [
        ("a", "o1", "2021-01-05", 10.0),
        ("a", "o2", "2021-04-20", 20.0),
        ("a", "o3", "2021-05-10", 30.0),  # in the horizon of the edge cutoff
        ("b", "o4", "2021-04-01", 15.0),  # no purchase in the horizon: churns
        ("c", "o5", "2021-01-01", 1.0),
        ("c", "o6", last, 5.0),  # the last line of the data, inside the horizon
    ]
    return tx(rows, category=["x"] * 6, product_id=["p1", "p2", "p1", "p1", "p1", "p2"])


def _labels(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    with tempfile.TemporaryDirectory() as out:
        build_snapshots(
            {"transactions": frame},
            FeatureParams(cutoffs=[EDGE], partitions=1),
            LABELS,
            SegmentParams(),
            Workspace(Path(out)),
        )
        return read_snapshots(Workspace(Path(out)))


def test_date_only_data_labels_a_horizon_ending_a_day_after_the_last_date() -> None:
    assert pd.Timestamp(EDGE, tz="UTC") + pd.Timedelta(days=HORIZON) == pd.Timestamp(
        LAST, tz="UTC"
    ) + pd.Timedelta(days=1)
    out = _labels(_rows())
    churn = out["labels_churn"].set_index("customer_id")["churned"].to_dict()
    assert churn == {"a": 0, "b": 1, "c": 0}
    clv = out["labels_clv"].set_index("customer_id")["clv"].to_dict()
    assert clv == {"a": 30.0, "b": 0.0, "c": 5.0}  # c's purchase on the last day counts
    offers = out["labels_offer"]
    assert set(zip(offers["customer_id"], offers["offer_id"], strict=True)) == {
        ("a", "x"),
        ("c", "x"),
    }


def test_a_horizon_past_the_last_day_stays_censored() -> None:
    earlier = _rows(last="2021-05-31")  # the horizon of the edge cutoff ends after the data
    out = _labels(earlier)
    for name in ("labels_churn", "labels_clv", "labels_offer"):
        assert len(out[name]) == 0, name
    assert len(out["customer_features"]) > 0


def test_data_with_times_of_day_ends_at_its_last_event() -> None:
    frame = _rows()
    frame["timestamp"] += pd.to_timedelta([9, 10, 11, 12, 13, 14], unit="h")
    assert not is_date_only(frame["timestamp"])
    assert observed_end(frame["timestamp"]) == frame["timestamp"].max()
    out = _labels(frame)  # the afternoon of the last day may be missing: censored
    assert len(out["labels_churn"]) == 0


@pytest.mark.parametrize("zone", ["UTC", "America/New_York", "Europe/London", "Asia/Kolkata"])
def test_local_midnights_are_date_only_in_any_zone(zone: str) -> None:
    days = pd.Series(pd.date_range("2021-01-01", "2021-12-31", freq="D"))
    stamps = days.dt.tz_localize(zone).dt.tz_convert("UTC")
    assert is_date_only(stamps)
    assert observed_end(stamps) == pd.Timestamp("2022-01-01", tz=zone)


def test_observed_end_decides_which_horizons_are_labelled() -> None:
    end = observed_end(_rows()["timestamp"])
    assert end == pd.Timestamp("2021-06-02", tz="UTC")
    assert is_observed(pd.Timestamp(EDGE, tz="UTC"), HORIZON, end)
    assert not is_observed(pd.Timestamp(EDGE, tz="UTC"), HORIZON + 1, end)


def test_cutoff_month_is_the_month_of_each_cutoff_for_every_customer() -> None:
    from features.feast_repo import CUSTOMER_VIEW, SERVICE_FEATURES

    cutoffs = [date(2021, 3, 1), date(2021, 5, 3)]
    with tempfile.TemporaryDirectory() as out:
        build_snapshots(
            {"transactions": _rows()},
            FeatureParams(cutoffs=cutoffs, partitions=2),
            LABELS,
            SegmentParams(),
            Workspace(Path(out)),
        )
        feats = read_snapshots(Workspace(Path(out)))["customer_features"]
    months = feats.groupby("event_timestamp")["cutoff_month"].agg(["min", "max"])
    assert months["min"].tolist() == months["max"].tolist() == [3, 5]
    assert feats["cutoff_month"].dtype == "int64"
    for service in ("churn_v1", "clv_v1"):
        assert "cutoff_month" in SERVICE_FEATURES[service][CUSTOMER_VIEW], service


def test_the_trainable_horizon_is_the_longest_whose_three_windows_fit() -> None:
    cutoffs = list(pd.date_range("2023-04-01", "2024-06-01", freq="MS", tz="UTC"))
    until = pd.Timestamp("2024-07-01", tz="UTC")
    assert trainable_horizon(90, cutoffs, until) == 90
    days = trainable_horizon(273, cutoffs, until)
    assert days is not None and days < 273
    fits = [c for c in cutoffs if c + pd.Timedelta(days=days) <= until]
    valid = [c for c in fits if c + pd.Timedelta(days=days) <= max(fits)]
    assert any(c + pd.Timedelta(days=days) <= max(valid) for c in cutoffs)
    # One day longer and the three windows no longer fit one after the other.
    longer = pd.Timedelta(days=days + 1)
    fits = [c for c in cutoffs if c + longer <= until]
    valid = [c for c in fits if c + longer <= max(fits)]
    assert not valid or not any(c + longer <= max(valid) for c in cutoffs)
    assert trainable_horizon(90, cutoffs[:1], until) is None
