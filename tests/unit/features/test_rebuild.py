"""Rebuilding features keeps what depends on them (issue 14): added cutoffs join those of the
last build, and category slots that registered models use stay or are refused."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from features.catalog import Workspace
from features.config import FeatureParams, LabelParams, SegmentParams
from features.snapshots import build_cutoffs, build_snapshots, check_slots, snapshots_meta
from tests.conftest import tx


def _history() -> pd.DataFrame:
    rows, categories = [], []
    for month in range(1, 13):
        for customer in ("c1", "c2", "c3"):
            rows.append((customer, f"{customer}-{month}", f"2021-{month:02d}-10", 10.0 * month))
            categories.append("late" if month > 6 else "early")
    return tx(rows, category=categories, product_id=["p1"] * len(rows))


def test_added_cutoffs_join_those_of_the_last_build(
    tmp_path: Path, params: tuple[FeatureParams, LabelParams, SegmentParams]
) -> None:
    features, labels, segments = params
    features = features.model_copy(update={"cutoffs": [date(2021, 6, 1), date(2021, 9, 1)]})
    paths = Workspace(tmp_path)
    frame = _history()
    assert build_cutoffs(features, frame, paths, [date(2021, 3, 1)])[0] == pd.Timestamp(
        "2021-03-01", tz="UTC"
    )  # no build yet: the configured ones and the added one
    build_snapshots({"transactions": frame}, features, labels, segments, paths)
    first = snapshots_meta(paths)
    # The configuration now names other dates; --cutoffs adds to the build, not to them.
    other = features.model_copy(update={"cutoffs": [date(2021, 11, 1)]})
    build_snapshots(
        {"transactions": frame}, other, labels, segments, paths, add_cutoffs=[date(2021, 3, 1)]
    )
    after = snapshots_meta(paths)
    assert after["cutoffs"] == [
        "2021-03-01T00:00:00+00:00",
        "2021-06-01T00:00:00+00:00",
        "2021-09-01T00:00:00+00:00",
    ]
    # The slots are free here (no models): the new first cutoff ranks the categories again.
    assert first["category_slots"] == ["early"]
    build_snapshots(
        {"transactions": frame},
        features,
        labels,
        segments,
        paths,
        add_cutoffs=[date(2021, 12, 1)],
        fixed_slots=["late", "early"],
    )
    assert snapshots_meta(paths)["category_slots"] == ["late", "early"]


def test_fixed_slots_missing_from_the_data_are_refused() -> None:
    frame = _history()
    assert check_slots(["late", "early"], frame) == ["late", "early"]
    with pytest.raises(ValueError, match=r"category_share_N.*\['gone'\].*--workspace"):
        check_slots(["early", "gone"], frame)
    with pytest.raises(ValueError, match="category_share_N"):
        check_slots(["early"], frame.drop(columns=["category"]))
