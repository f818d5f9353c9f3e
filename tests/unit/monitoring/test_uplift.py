"""Campaign uplift recovers an effect planted in generated data, and finds none when none."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from monitoring.uplift import campaign_uplift


def _campaign(n: int, retention_effect: float, revenue_effect: float, seed: int) -> tuple:
    rng = np.random.default_rng(seed)
    ids = [f"c{i}" for i in range(n)]
    control = rng.random(n) < 0.2
    base_retention = 0.6
    p = np.where(control, base_retention, base_retention + retention_effect)
    retained = (rng.random(n) < p).astype(float)
    revenue = rng.gamma(2.0, 50.0, n) * retained + np.where(control, 0.0, revenue_effect)
    targets = pd.DataFrame({"customer_id": ids, "group": np.where(control, "control", "treatment")})
    return targets, pd.Series(retained, index=ids), pd.Series(revenue, index=ids)


def test_planted_effect_is_recovered_within_its_interval() -> None:
    targets, retained, revenue = _campaign(20_000, 0.08, 15.0, seed=1)
    out = campaign_uplift(targets, retained, revenue, bootstrap=500)
    r, v = out["retention"], out["revenue"]
    assert r["ci_low"] <= 0.08 <= r["ci_high"]
    assert r["ci_low"] > 0  # the effect is detected
    # Revenue: the planted +15 plus retention's effect on spend (0.08 x mean spend of 100).
    expected = 15.0 + 0.08 * 100.0
    assert v["ci_low"] <= expected <= v["ci_high"]
    assert v["bootstrap_ci_low"] <= expected <= v["bootstrap_ci_high"]
    assert out["treatment"] + out["control"] == 20_000
    assert out["incremental_retained_customers"] == pytest.approx(r["effect"] * out["treatment"])


def test_no_effect_gives_an_interval_around_zero() -> None:
    targets, retained, revenue = _campaign(20_000, 0.0, 0.0, seed=2)
    out = campaign_uplift(targets, retained, revenue, bootstrap=500)
    assert out["retention"]["ci_low"] <= 0 <= out["retention"]["ci_high"]
    assert out["revenue"]["ci_low"] <= 0 <= out["revenue"]["ci_high"]


def test_interval_coverage_is_close_to_nominal() -> None:
    covered = 0
    for seed in range(200):
        targets, retained, revenue = _campaign(2_000, 0.05, 0.0, seed=100 + seed)
        r = campaign_uplift(targets, retained, revenue, bootstrap=10)["retention"]
        covered += r["ci_low"] <= 0.05 <= r["ci_high"]
    assert 0.90 <= covered / 200 <= 0.99


def test_bad_lists_are_refused_with_the_reason() -> None:
    targets, retained, revenue = _campaign(100, 0.0, 0.0, seed=3)
    with pytest.raises(ValueError, match="no outcome"):
        campaign_uplift(targets, retained.iloc[:50], revenue)
    with pytest.raises(ValueError, match="groups"):
        campaign_uplift(targets.assign(group="treatment"), retained, revenue)
    with pytest.raises(ValueError, match="'group' missing"):
        campaign_uplift(targets.drop(columns="group"), retained, revenue)
