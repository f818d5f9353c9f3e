"""Campaign uplift: contacted customers (treatment) against the random control group of a
target list, on retention and revenue in the horizon after the list's date.

The control group was drawn at random from the same ranked list (serving.targets), so the
difference of the group means is an unbiased estimate of the campaign's average effect on the
contacted customers. Intervals: Welch's normal approximation for both outcomes, and a
percentile bootstrap for revenue, whose skew makes the normal interval optimistic on small
groups."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import norm

GROUPS = ("treatment", "control")


def difference(treated: np.ndarray, control: np.ndarray, confidence: float) -> dict[str, float]:
    """Mean difference with Welch's standard error, normal interval and two-sided p-value."""
    effect = float(treated.mean() - control.mean())
    se = float(np.sqrt(treated.var(ddof=1) / len(treated) + control.var(ddof=1) / len(control)))
    z = float(norm.ppf(0.5 + confidence / 2))
    p = float(2 * norm.sf(abs(effect) / se)) if se > 0 else float("nan")
    return {
        "treatment_mean": float(treated.mean()),
        "control_mean": float(control.mean()),
        "effect": effect,
        "relative": effect / float(control.mean()) if control.mean() else float("nan"),
        "se": se,
        "ci_low": effect - z * se,
        "ci_high": effect + z * se,
        "p_value": p,
    }


def bootstrap_difference(
    treated: np.ndarray, control: np.ndarray, confidence: float, rounds: int, seed: int
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean difference (groups resampled separately)."""
    rng = np.random.default_rng(seed)
    t = rng.choice(treated, size=(rounds, len(treated)), replace=True).mean(axis=1)
    c = rng.choice(control, size=(rounds, len(control)), replace=True).mean(axis=1)
    lo, hi = np.percentile(t - c, [50 * (1 - confidence), 50 * (1 + confidence)])
    return float(lo), float(hi)


def campaign_uplift(
    targets: pd.DataFrame,
    retained: pd.Series,
    revenue: pd.Series,
    confidence: float = 0.95,
    bootstrap: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """Incremental retention rate and revenue per customer of a target list.

    `targets` has customer_id and group ('treatment'|'control'); `retained` (0/1) and
    `revenue` are indexed by customer_id; a listed customer missing from them is an error,
    not a silent drop."""
    for needed in ("customer_id", "group"):
        if needed not in targets:
            raise ValueError(f"target list: column '{needed}' missing")
    groups = set(targets["group"].unique())
    if not groups <= set(GROUPS) or len(groups) < 2:
        raise ValueError(f"target list: groups {sorted(groups)}; expected both {list(GROUPS)}")
    ids = targets["customer_id"].astype(str)
    missing = ~ids.isin(retained.index.astype(str))
    if missing.any():
        raise ValueError(f"{int(missing.sum())} listed customers have no outcome")
    retained = retained.set_axis(retained.index.astype(str))
    revenue = revenue.set_axis(revenue.index.astype(str))
    out: dict[str, Any] = {"confidence": confidence}
    treated = (targets["group"] == "treatment").to_numpy()
    for name, values in (("retention", retained), ("revenue", revenue)):
        v = values.reindex(ids).fillna(0).to_numpy(dtype=float)
        if treated.sum() < 2 or (~treated).sum() < 2:
            raise ValueError("each group needs at least two customers")
        out[name] = difference(v[treated], v[~treated], confidence)
        if name == "revenue":
            lo, hi = bootstrap_difference(v[treated], v[~treated], confidence, bootstrap, seed)
            out[name]["bootstrap_ci_low"], out[name]["bootstrap_ci_high"] = lo, hi
    n_t = int(treated.sum())
    out["treatment"], out["control"] = n_t, int((~treated).sum())
    out["incremental_retained_customers"] = out["retention"]["effect"] * n_t
    out["incremental_revenue"] = out["revenue"]["effect"] * n_t
    return out
