"""Evaluation of a model against its baselines on the test cutoff: metrics with bootstrap
intervals, a grade, and plots."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.calibration import calibration_curve
from sklearn.metrics import roc_curve

from features.model_spec import Metric
from training.metrics import bootstrap_interval, decile_table


@dataclass
class Scored:
    """One contender's metrics on the test set, with 95% bootstrap intervals; `fn` recomputes
    the metrics on any resample of the n test rows (for paired differences)."""

    name: str
    metrics: dict[str, float]
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    fn: Callable[[np.ndarray], dict[str, float]] | None = field(default=None, repr=False)
    n: int = 0
    role: str = "baseline"  # "model" (ours: LightGBM, blends) or "baseline" (classical)


@dataclass(frozen=True)
class Paired:
    """The model minus one baseline on the same test customers, oriented so that positive
    means the model is better, with the 95% bootstrap interval of that difference."""

    baseline: str
    difference: float
    low: float
    high: float

    def as_text(self, key: str) -> str:
        """ "+0.0123 (95% interval +0.0040..+0.0200)"."""
        return f"{self.difference:+.4f} (95% interval {self.low:+.4f}..{self.high:+.4f})"


def score_with_intervals(
    name: str,
    metric_fn: Callable[[np.ndarray], dict[str, float]],
    n: int,
    rounds: int,
    seed: int,
    keys: list[str],
    role: str = "baseline",
) -> Scored:
    """Metrics on all n test rows, plus bootstrap intervals (customers resampled) for `keys`;
    `role` says whether the contender is ours ("model") or a classical "baseline"."""
    full = metric_fn(np.arange(n))
    intervals = {
        key: bootstrap_interval(partial(_one, metric_fn, key), n, rounds, seed) for key in keys
    }
    return Scored(name, full, intervals, metric_fn, n, role)


def _one(metric_fn: Callable[[np.ndarray], dict[str, float]], key: str, idx: np.ndarray) -> float:
    return metric_fn(idx)[key]


def _difference(model: Scored, other: Scored, key: str, sign: float, idx: np.ndarray) -> float:
    assert model.fn is not None and other.fn is not None
    return sign * (model.fn(idx)[key] - other.fn(idx)[key])


def paired_differences(
    model: Scored, baselines: list[Scored], metric: Metric, key: str, rounds: int, seed: int
) -> list[Paired]:
    """Model minus each baseline on `key`, resampling the same customers for both (so the
    interval is that of the difference, not of two separate figures)."""
    sign = 1.0 if metric.higher_is_better else -1.0
    out = []
    for other in baselines:
        diff = sign * (model.metrics[key] - other.metrics[key])
        lo, hi = bootstrap_interval(
            partial(_difference, model, other, key, sign), model.n, rounds, seed
        )
        out.append(Paired(other.name, float(diff), lo, hi))
    return out


def grade(
    model: Scored,
    paired: list[Paired],
    key: str,
    caveat: str | None = None,
    capped: bool = False,
) -> tuple[str, str, str]:
    """Graded against the strongest baseline (smallest paired difference): A when the 95%
    interval of the difference is above 0, B when the model is ahead but the interval
    includes 0 (a tie within noise, not a win), C when it is not ahead. `caveat` (a reason
    the figure misleads, e.g. a biased total) caps the grade at B; `capped` (the model is
    itself a classical baseline) at C. Returns (grade, strongest baseline, explanation)."""
    best = min(paired, key=lambda p: p.difference)
    if best.low > 0:
        letter = "A"
    elif best.difference > 0:
        letter = "B"
    else:
        letter = "C"
    verdict = {
        "A": "better than every baseline",
        "B": "ahead, but not distinguishable from",
        "C": "not better than",
    }[letter]
    text = (
        f"{key} {model.metrics[key]:.4f}: {verdict} the strongest baseline '{best.baseline}'; "
        f"paired difference {best.as_text(key)}"
    )
    if capped:
        letter = "C"
    elif caveat and letter == "A":
        letter, text = "B", f"{text}; capped at B: {caveat}"
        caveat = None
    if caveat:
        text = f"{text}; {caveat}"
    return letter, best.baseline, text


def plot_churn(y: np.ndarray, curves: dict[str, np.ndarray], out: Path) -> list[Path]:
    """ROC curves of every contender and the model's reliability diagram."""
    out.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, p in curves.items():
        fpr, tpr, _ = roc_curve(y, p)
        ax.plot(fpr, tpr, label=name)
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC, test cutoff")
    ax.legend(fontsize=8)
    roc = out / "churn_roc.png"
    fig.savefig(roc, dpi=110, bbox_inches="tight")
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(5, 5))
    model_p = next(iter(curves.values()))
    frac, mean = calibration_curve(y, model_p, n_bins=10, strategy="quantile")
    ax.plot(mean, frac, "o-", label="model")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(xlabel="predicted P(churn)", ylabel="observed churn rate", title="Reliability")
    rel = out / "churn_reliability.png"
    fig.savefig(rel, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return [roc, rel]


def plot_clv(y: np.ndarray, p: np.ndarray, out: Path) -> list[Path]:
    """Mean predicted and actual CLV per predicted decile."""
    out.mkdir(parents=True, exist_ok=True)
    table = decile_table(y, p)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.bar(table["decile"] - 0.2, table["predicted"], 0.4, label="predicted")
    ax.bar(table["decile"] + 0.2, table["actual"], 0.4, label="actual")
    ax.set(xlabel="predicted decile (1 = highest)", ylabel="mean CLV", title="CLV by decile")
    ax.legend()
    path = out / "clv_deciles.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return [path]


def plot_importance(importance: pd.Series, out: Path, name: str) -> Path:
    """Top-20 features by gain."""
    out.mkdir(parents=True, exist_ok=True)
    top = importance.sort_values(ascending=True).tail(20)
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.barh(list(top.index), top.to_numpy(dtype=float))
    ax.set(xlabel="gain", title=f"{name}: feature importance")
    path = out / f"{name}_importance.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
