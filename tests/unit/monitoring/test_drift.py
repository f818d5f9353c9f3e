"""drift_check on generated data: noise raises nothing, a planted shift is found, named and
alarmed on by the configured rule (key feature, drifted share, prediction threshold), broken
columns and data-quality findings become named alarms, and sampling is reported."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from features.names import CALENDAR, GROWS
from monitoring.config import DriftParams, MonitoringParams, QualityParams
from monitoring.drift import drift_check
from tests.unit.monitoring.generated import (
    COUNTRIES,
    FEATURES,
    RECENCY_SD,
    ROWS,
    customers,
    reference_and_current,
)


def _check(reference: pd.DataFrame, current: pd.DataFrame, **params: Any) -> dict[str, Any]:
    return drift_check(reference, current, FEATURES, MonitoringParams(**params), "churn").summary


def _scores(summary: dict[str, Any]) -> list[float]:
    return [summary["features"][f]["drift"]["score"] for f in FEATURES]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_two_samples_of_one_distribution_raise_no_alarm(seed: int) -> None:
    reference, current = reference_and_current(seed)
    s = _check(reference, current)
    assert s["status"] == "ok" and s["alarms"] == []
    assert s["features_total"] == s["features_tested"] == len(FEATURES)
    assert s["drifted_features"] == [] and s["drift_share"] == 0.0
    assert s["quality_issues"] == {} and s["not_tested"] == []
    for name in FEATURES:
        drift = s["features"][name]["drift"]
        assert not drift["drifted"] and drift["score"] < drift["threshold"], name
    assert not s["prediction"]["drifted"]


def test_a_shifted_feature_is_named_and_below_the_share_alone_raises_nothing() -> None:
    reference, current = reference_and_current()
    current["recency_days"] += RECENCY_SD  # the mean moves by one standard deviation
    s = _check(reference, current)
    assert s["drifted_features"] == ["recency_days"]
    recency = s["features"]["recency_days"]["drift"]
    assert recency["method"] == "wasserstein" and recency["score"] > 0.8  # about 1 sd
    # 1 of 6 features is under drift_share 0.3, no key features, the prediction is unchanged.
    assert s["drift_share"] == pytest.approx(1 / 6, abs=1e-4)
    assert s["status"] == "ok" and s["alarms"] == []


def test_a_drifted_key_feature_raises_the_alarm() -> None:
    reference, current = reference_and_current()
    current["recency_days"] += RECENCY_SD
    s = _check(reference, current, drift=DriftParams(key_features=["recency_days", "country"]))
    assert s["status"] == "alarm"
    assert s["alarms"] == ["churn: key features drifted: recency_days"]


def test_the_drifted_share_reaching_drift_share_raises_the_alarm() -> None:
    reference, current = reference_and_current()
    current["recency_days"] += RECENCY_SD
    rng = np.random.default_rng(5)  # a new country mix: a categorical drift
    current["country"] = rng.choice(COUNTRIES, len(current), p=[0.3, 0.5, 0.1, 0.1])
    s = _check(reference, current)
    assert s["drifted_features"] == ["recency_days", "country"]
    assert s["features"]["country"]["drift"]["method"] == "jensenshannon"
    assert s["status"] == "alarm" and len(s["alarms"]) == 1
    assert s["alarms"][0].startswith("churn: 2 of 6 features drifted (33% >= 30%)")
    assert s["alarms"][0].endswith("recency_days, country")
    # The same data under a laxer share: the features are still named, but no alarm.
    lax = _check(reference, current, drift=DriftParams(drift_share=0.5))
    assert lax["drifted_features"] == ["recency_days", "country"]
    assert lax["status"] == "ok" and lax["alarms"] == []


def test_prediction_drift_is_judged_by_prediction_threshold() -> None:
    reference, current = reference_and_current()
    current["prediction"] += 0.3 * reference["prediction"].std()  # a score of about 0.3
    strict = _check(
        reference, current, drift=DriftParams(prediction_threshold=0.1, num_threshold=0.5)
    )
    assert strict["prediction"]["threshold"] == 0.1 and strict["prediction"]["drifted"]
    assert strict["status"] == "alarm"
    assert len(strict["alarms"]) == 1 and strict["alarms"][0].startswith(
        "churn: prediction drifted"
    )
    # The prediction is not one of the features: it neither counts nor is listed.
    assert strict["drifted_features"] == [] and "prediction" not in strict["features"]
    lax = _check(reference, current, drift=DriftParams(prediction_threshold=0.5, num_threshold=0.1))
    assert lax["prediction"]["threshold"] == 0.5 and not lax["prediction"]["drifted"]
    assert 0.1 < lax["prediction"]["score"] < 0.5
    assert lax["status"] == "ok" and lax["alarms"] == []


def test_a_new_category_is_a_named_quality_alarm() -> None:
    reference, current = reference_and_current()
    new = np.random.default_rng(7).random(len(current)) < 0.05
    current["country"] = current["country"].where(~new, "Atlantis")
    s = _check(reference, current)
    issues = s["quality_issues"]
    assert list(issues) == ["country"]
    assert len(issues["country"]) == 1 and issues["country"][0].startswith("unseen_categories")
    assert "Atlantis" in issues["country"][0]
    assert s["features"]["country"]["unseen_share"] == pytest.approx(new.mean(), abs=1e-4)
    assert s["features"]["country"]["unseen_examples"] == ["Atlantis"]
    assert s["status"] == "alarm"
    assert [a for a in s["alarms"] if "country" in a] == [
        f"churn: feature country: {issues['country'][0]}"
    ]
    # Above max_unseen_share only: 5% of rows is within a 10% allowance.
    assert (
        "country"
        not in _check(reference, current, quality=QualityParams(max_unseen_share=0.1))[
            "quality_issues"
        ]
    )


def test_empty_and_constant_columns_are_broken_column_alarms() -> None:
    reference, current = reference_and_current()
    current["gap_mean_days"] = np.nan  # a broken upstream join
    current["frequency_365d"] = 3.0  # a default filled in everywhere
    current["value_tier"] = None  # categorical, empty now
    s = _check(reference, current)
    issues = s["quality_issues"]
    assert sorted(issues) == ["frequency_365d", "gap_mean_days", "value_tier"]
    assert issues["gap_mean_days"] == ["empty: every value is missing now"]
    assert issues["value_tier"] == ["empty: every value is missing now"]
    assert issues["frequency_365d"] == ["constant: a single value now"]
    # Empty columns cannot be tested for drift; they are listed instead.
    assert s["not_tested"] == ["gap_mean_days", "value_tier"]
    assert s["status"] == "alarm"
    for name in ("gap_mean_days", "frequency_365d", "value_tier"):
        assert any(a.startswith(f"churn: feature {name}: ") for a in s["alarms"]), name
    # alarm_on_broken_columns off: still reported as issues, no longer alarms.
    quiet = _check(reference, current, quality=QualityParams(alarm_on_broken_columns=False))
    assert sorted(quiet["quality_issues"]) == ["frequency_365d", "gap_mean_days", "value_tier"]
    assert not any("feature" in a for a in quiet["alarms"])


def test_a_rise_in_missing_share_above_the_limit_is_named() -> None:
    reference, current = reference_and_current()
    gone = np.random.default_rng(8).random(len(current))
    current.loc[gone < 0.2, "monetary_365d"] = np.nan  # 0% -> about 20% missing
    current.loc[gone > 0.95, "recency_days"] = np.nan  # 0% -> about 5%: within 10 points
    s = _check(reference, current)
    assert list(s["quality_issues"]) == ["monetary_365d"]
    (issue,) = s["quality_issues"]["monetary_365d"]
    assert issue.startswith("missing_increase: missing share 0.0% -> ")
    assert s["features"]["monetary_365d"]["missing_current"] == pytest.approx(0.2, abs=0.02)
    assert any(a.startswith("churn: feature monetary_365d: missing_increase") for a in s["alarms"])
    # A tighter limit names the 5-point rise as well.
    tight = _check(reference, current, quality=QualityParams(max_missing_increase=0.03))
    assert sorted(tight["quality_issues"]) == ["monetary_365d", "recency_days"]


def test_reports_are_sampled_to_sample_rows_and_say_so() -> None:
    reference, current = reference_and_current()
    full = _check(reference, current)
    assert full["sampled"] is False
    assert full["sample"]["current"] == {"rows": ROWS, "used": ROWS, "sampled": False}

    small = _check(reference, current, sample_rows=1000)
    assert small["sampled"] is True
    assert small["sample"] == {
        "reference": {"rows": ROWS, "used": 1000, "sampled": True},
        "current": {"rows": ROWS, "used": 1000, "sampled": True},
    }
    assert small["thresholds"]["sample_rows"] == 1000
    # Seeded: the same seed gives the same scores, another seed other ones.
    again = _check(reference, current, sample_rows=1000)
    other = _check(reference, current, sample_rows=1000, seed=1)
    assert _scores(again) == _scores(small)
    assert _scores(other) != _scores(small)


def test_quality_checks_see_every_row_even_when_the_report_is_sampled() -> None:
    reference, current = customers(0), customers(1)
    current.loc[current.index[::50], "country"] = "Atlantis"  # 2% of rows, spread out
    s = _check(reference, current, sample_rows=200)
    assert s["sampled"] is True
    assert s["features"]["country"]["unseen_share"] == pytest.approx(0.02)
    assert any("Atlantis" in i for i in s["quality_issues"]["country"])


def test_a_feature_absent_from_the_reference_is_refused() -> None:
    reference, current = reference_and_current()
    with pytest.raises(ValueError, match=r"no column\(s\) \['gap_mean_days'\] for the churn"):
        _check(reference.drop(columns=["gap_mean_days"]), current)


def test_features_that_move_with_the_score_date_are_left_out_and_said_why() -> None:
    """A year later every customer is a year older and the month differs: no alarm from
    that, while a broken column among them still alarms and a real shift elsewhere is found."""
    reference, current = reference_and_current()
    features = [*FEATURES, "tenure_days", "frequency_lifetime", "cutoff_month"]
    rng = np.random.default_rng(9)
    reference["tenure_days"] = rng.normal(300.0, 80.0, len(reference))
    current["tenure_days"] = reference["tenure_days"].to_numpy() + 365
    reference["frequency_lifetime"] = rng.poisson(10, len(reference)).astype(float)
    current["frequency_lifetime"] = reference["frequency_lifetime"].to_numpy() * 2
    reference["cutoff_month"], current["cutoff_month"] = 9, 12
    s = drift_check(reference, current, features, MonitoringParams(), "churn").summary
    assert s["status"] == "ok" and s["alarms"] == []
    assert s["left_out"] == {
        "tenure_days": GROWS,
        "frequency_lifetime": GROWS,
        "cutoff_month": CALENDAR,
    }
    assert s["features_tested"] == len(FEATURES)
    assert s["features"]["tenure_days"]["drift"] is None
    # Quality checks still see them; a real shift of spend is still found.
    current["tenure_days"] = np.nan
    current["monetary_365d"] = current["monetary_365d"] * 3
    broken = drift_check(reference, current, features, MonitoringParams(), "churn").summary
    assert broken["status"] == "alarm"
    assert "monetary_365d" in broken["drifted_features"]
    assert any(a.startswith("churn: feature tenure_days: empty") for a in broken["alarms"])


def test_counts_over_windows_longer_than_the_history_are_left_out() -> None:
    """On 400 days of data, 730-day counts grow with the history; on 800 days they do not,
    and a shift there is drift."""
    reference, current = reference_and_current()
    features = [*FEATURES, "frequency_730d"]
    rng = np.random.default_rng(10)
    reference["frequency_730d"] = rng.poisson(8, len(reference)).astype(float)
    current["frequency_730d"] = rng.poisson(12, len(current)).astype(float)
    short = drift_check(reference, current, features, MonitoringParams(), "churn", None, None, 400)
    assert list(short.summary["left_out"]) == ["frequency_730d"]
    assert (
        "730 days, more than the 400 days of history" in short.summary["left_out"]["frequency_730d"]
    )
    long = drift_check(reference, current, features, MonitoringParams(), "churn", None, None, 800)
    assert long.summary["left_out"] == {}
    assert "frequency_730d" in long.summary["drifted_features"]
