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
    """One contender's metrics on the test set, with 95% bootstrap intervals."""

    name: str
    metrics: dict[str, float]
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)


def score_with_intervals(
    name: str,
    metric_fn: Callable[[np.ndarray], dict[str, float]],
    n: int,
    rounds: int,
    seed: int,
    keys: list[str],
) -> Scored:
    """Metrics on all n test rows, plus bootstrap intervals (customers resampled) for `keys`."""
    full = metric_fn(np.arange(n))
    intervals = {
        key: bootstrap_interval(partial(_one, metric_fn, key), n, rounds, seed) for key in keys
    }
    return Scored(name, full, intervals)


def _one(metric_fn: Callable[[np.ndarray], dict[str, float]], key: str, idx: np.ndarray) -> float:
    return metric_fn(idx)[key]


def grade(model: Scored, baselines: list[Scored], metric: Metric, key: str) -> tuple[str, str, str]:
    """A: clearly better than the best baseline on the model's primary `metric` (named `key`:
    "hit@5" for hit@{k} with top-k 5) with its interval clear of the baseline's value,
    B: better, C: not better. Returns (grade, best baseline name, explanation)."""
    higher = metric.higher_is_better
    best = (max if higher else min)(baselines, key=lambda s: s.metrics[key])
    value, ref = model.metrics[key], best.metrics[key]
    margin = value - ref if higher else ref - value
    lo, hi = model.intervals.get(key, (value, value))
    clear = lo > ref if higher else hi < ref
    letter = "A" if margin > 0 and clear else ("B" if margin > 0 else "C")
    text = (
        f"{key} {value:.4f} vs best baseline '{best.name}' {ref:.4f}: margin "
        f"{margin:+.4f} (model 95% interval {lo:.4f}..{hi:.4f})"
    )
    return letter, best.name, text


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
