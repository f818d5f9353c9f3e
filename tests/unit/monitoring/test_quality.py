"""The data-quality profile of one column on generated data: each issue appears exactly when
its threshold is crossed, names what it found, and marks the column broken or not."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from monitoring.config import QualityParams
from monitoring.quality import column_kind, profile_column, profile_columns, typed_frame
from tests.unit.monitoring.generated import FEATURES, customers, reference_and_current

PARAMS = QualityParams()


def _with_missing(values: pd.Series, share: float, seed: int) -> pd.Series:
    out = values.astype("float64").copy()
    out[np.random.default_rng(seed).random(len(out)) < share] = np.nan
    return out


def test_a_clean_current_sample_has_no_issues() -> None:
    reference, current = reference_and_current()
    profiles = profile_columns(reference, current, FEATURES, PARAMS)
    assert {n: p.issues for n, p in profiles.items() if p.issues} == {}
    assert all(p.testable and not p.broken for p in profiles.values())
    assert [n for n, p in profiles.items() if p.kind == "categorical"] == ["country", "value_tier"]


def test_kind_is_the_declared_type_else_the_dtype() -> None:
    # country is declared a string feature even when its values look like numbers.
    assert column_kind("country", pd.Series([1, 2, 3])) == "categorical"
    assert column_kind("recency_days", pd.Series(["1", "2"])) == "numerical"
    assert column_kind("undeclared", pd.Series([1.0, 2.0])) == "numerical"
    assert column_kind("undeclared", pd.Series([True, False])) == "categorical"
    assert column_kind("undeclared", pd.Series(["a", "b"])) == "categorical"


@pytest.mark.parametrize(
    ("share", "limit", "flagged"),
    [(0.2, 0.1, True), (0.05, 0.1, False), (0.05, 0.02, True), (0.2, 0.3, False)],
)
def test_missing_increase_is_flagged_above_max_missing_increase(
    share: float, limit: float, flagged: bool
) -> None:
    reference, current = reference_and_current()
    values = _with_missing(current["monetary_365d"], share, seed=3)
    prof = profile_column(
        "monetary_365d",
        reference["monetary_365d"],
        values,
        QualityParams(max_missing_increase=limit),
    )
    assert prof.missing_reference == 0.0
    assert prof.missing_current == pytest.approx(share, abs=0.02)
    found = [i for i in prof.issues if i.startswith("missing_increase")]
    assert bool(found) is flagged
    assert not prof.broken and prof.testable  # more missing values is a finding, not a break


def test_the_increase_is_measured_from_the_reference_share() -> None:
    reference, current = reference_and_current()
    ref = _with_missing(reference["gap_mean_days"], 0.3, seed=4)
    cur = _with_missing(current["gap_mean_days"], 0.35, seed=5)  # +5 points: within 10
    assert profile_column("gap_mean_days", ref, cur, PARAMS).issues == []
    cur = _with_missing(current["gap_mean_days"], 0.5, seed=5)  # +20 points
    (issue,) = profile_column("gap_mean_days", ref, cur, PARAMS).issues
    assert issue.startswith("missing_increase: missing share 30")


def test_unseen_categories_are_counted_on_every_row_and_listed_by_frequency() -> None:
    reference, current = reference_and_current()
    country = current["country"].copy()
    country.iloc[:150] = "Atlantis"  # 3% of 5000 rows
    country.iloc[150:200] = "Lemuria"  # 1%
    prof = profile_column("country", reference["country"], country, PARAMS)
    assert prof.unseen_share == pytest.approx(0.04)
    assert prof.unseen_examples == ["Atlantis", "Lemuria"]
    (issue,) = prof.issues
    assert issue == (
        "unseen_categories: 4.0% of rows have categories not seen in the reference "
        "(Atlantis, Lemuria)"
    )
    assert not prof.broken  # new categories are a shift, not a broken column
    # At or below max_unseen_share: counted, not an issue.
    rare = current["country"].copy()
    rare.iloc[:40] = "Atlantis"  # 0.8% < 1%
    prof = profile_column("country", reference["country"], rare, PARAMS)
    assert prof.unseen_share == pytest.approx(0.008) and prof.issues == []


def test_at_most_five_unseen_examples_are_kept() -> None:
    reference, current = reference_and_current()
    country = current["country"].copy()
    for i in range(8):
        country.iloc[i * 100 : (i + 1) * 100 - i] = f"new{i}"  # new0 most frequent
    prof = profile_column("country", reference["country"], country, PARAMS)
    assert prof.unseen_examples == ["new0", "new1", "new2", "new3", "new4"]


def test_empty_constant_missing_and_unparseable_columns_are_broken() -> None:
    reference = customers(0)
    n = len(reference)
    current = pd.DataFrame(
        {
            "recency_days": np.full(n, np.nan),
            "frequency_365d": np.full(n, 3.0),
            "monetary_365d": ["n/a"] * n,
            "value_tier": pd.Series([None] * n, dtype="object"),
            "country": ["France"] * n,
        }
    )
    columns = [*FEATURES]
    profiles = profile_columns(reference, current, columns, PARAMS)
    issues = {n: p.issues for n, p in profiles.items()}
    assert issues["recency_days"] == ["empty: every value is missing now"]
    assert issues["frequency_365d"] == ["constant: a single value now"]
    assert issues["monetary_365d"] == [
        f"not_numeric: {n} values are not numbers",
        "empty: every value is missing now",
    ]
    assert issues["value_tier"] == ["empty: every value is missing now"]
    assert issues["country"] == ["constant: a single value now"]
    assert issues["gap_mean_days"] == ["missing_column: not in the current data"]
    assert all(p.broken for p in profiles.values())
    testable = [c for c, p in profiles.items() if p.testable]
    assert testable == ["frequency_365d", "country"]  # constant columns can still be tested
    assert list(typed_frame(current, profiles).columns) == testable


def test_a_column_already_empty_or_constant_in_the_reference_is_not_an_issue() -> None:
    current = customers(1)["monetary_365d"]
    empty = pd.Series(np.nan, index=current.index)
    constant = pd.Series(1.0, index=current.index)
    both_empty = profile_column("monetary_365d", empty, empty, PARAMS)
    assert both_empty.issues == [] and not both_empty.testable
    assert profile_column("monetary_365d", constant, constant, PARAMS).issues == []
    # Empty in the reference only: nothing to compare with, so untested but not broken.
    filled = profile_column("monetary_365d", empty, current, PARAMS)
    assert filled.issues == [] and not filled.testable
