"""Evaluation metrics for churn (classification), CLV (regression) and offers (ranking)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import spearmanr
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

# Every metric in one line a marketer can read; ranking metrics are named without their k
# ("hit@k"): `explain` fills it in. Model cards and backtest pages show these.
EXPLANATIONS: dict[str, str] = {
    "roc_auc": "chance that a random churner is scored above a random non-churner "
    "(0.5 = guessing, 1 = perfect)",
    "pr_auc": "how precise the list of highest risks stays as it grows (average precision; "
    "guessing scores the churn rate)",
    "lift_top_decile": "churners among the 10% highest scores, as a multiple of the overall "
    "churn rate (1 = no better than random)",
    "brier": "mean squared gap between the predicted probability and what happened "
    "(0 = perfect; lower is better)",
    "calibration_error": "average gap between predicted and observed churn rates within "
    "groups of similar scores (0 = a 30% score means 30% churn)",
    "mae": "average absolute gap between predicted and actual spend per customer "
    "(in currency; lower is better)",
    "rmse": "like MAE but large misses count more (in currency; lower is better)",
    "spearman": "how well the predicted order of customers matches the actual order of "
    "spend (-1 .. 1; 1 = same order)",
    "normalized_gini": "how much of the perfect ordering by value the predictions achieve "
    "(0 = random, 1 = perfect)",
    "top20_capture": "share of all actual spend made by the 20% of customers predicted to "
    "spend most",
    "total_bias": "predicted total spend against the actual total (0 = right on; +10% = "
    "over-predicts by a tenth)",
    "hit@k": "share of buying customers for whom at least one of the top k offers was bought",
    "recall@k": "share of a customer's bought offers found among the top k, averaged",
    "map@k": "how early bought offers appear among the top k (mean average precision)",
    "ndcg@k": "how early bought offers appear among the top k, lower places counting less "
    "(normalised discounted cumulative gain)",
    "coverage": "share of the catalog that appears in someone's top offers",
    "customers": "buying customers the offer metrics were computed on",
}


def explain(name: str) -> str:
    """The one-line explanation of a metric ("hit@5" reads that of "hit@k" with k = 5); an
    empty string for a name without one."""
    base, at, k = name.partition("@")
    if at:
        return re.sub(r"\bk\b", k, EXPLANATIONS.get(f"{base}@k", ""))
    return EXPLANATIONS.get(name, "")


def lift_top_decile(y: np.ndarray, p: np.ndarray) -> float:
    """Positive rate among the 10% highest scores divided by the overall positive rate."""
    k = max(1, int(np.ceil(len(p) * 0.1)))
    top = np.argsort(-p, kind="stable")[:k]
    return float(y[top].mean() / y.mean()) if y.mean() > 0 else float("nan")


def calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error over equal-width probability bins."""
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    err = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            err += mask.mean() * abs(y[mask].mean() - p[mask].mean())
    return float(err)


def churn_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """ROC-AUC, PR-AUC, top-decile lift, Brier score and calibration error."""
    return {
        "roc_auc": float(roc_auc_score(y, p)),
        "pr_auc": float(average_precision_score(y, p)),
        "lift_top_decile": lift_top_decile(y, p),
        "brier": float(brier_score_loss(y, p)),
        "calibration_error": calibration_error(y, p),
    }


def normalized_gini(y: np.ndarray, p: np.ndarray) -> float:
    """Gini of actual values ordered by prediction, divided by the Gini of the perfect order."""

    def gini(order_by: np.ndarray) -> float:
        order = np.argsort(-order_by, kind="stable")
        cum = np.cumsum(y[order]) / y.sum()
        return float(cum.sum() / len(y) - (len(y) + 1) / (2 * len(y)))

    return gini(p) / gini(y) if y.sum() != 0 else float("nan")


def top_share_capture(y: np.ndarray, p: np.ndarray, share: float = 0.2) -> float:
    """Share of actual total value held by the `share` of customers predicted highest."""
    k = max(1, round(len(p) * share))
    top = np.argsort(-p, kind="stable")[:k]
    total = y[y > 0].sum()
    return float(np.clip(y[top], 0, None).sum() / total) if total > 0 else float("nan")


def clv_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """MAE, RMSE, Spearman, normalised Gini, top-20% capture and total bias."""
    return {
        "mae": float(np.mean(np.abs(y - p))),
        "rmse": float(np.sqrt(np.mean((y - p) ** 2))),
        "spearman": float(spearmanr(y, p).statistic),
        "normalized_gini": normalized_gini(y, p),
        "top20_capture": top_share_capture(y, p, 0.2),
        "total_bias": float(p.sum() / y.sum() - 1) if y.sum() else float("nan"),
    }


@dataclass(frozen=True)
class RankingTable:
    """Ranking figures at k per customer (hit, recall, average precision, NDCG) and which
    items each was shown, so that a bootstrap resample of customers is a mean over rows
    instead of a recomputation of every list."""

    k: int
    values: dict[str, np.ndarray]
    has_truth: np.ndarray
    shown: np.ndarray  # customers x distinct recommended items
    catalog_size: int

    def summary(self, idx: np.ndarray) -> dict[str, float]:
        """hit@k, recall@k, MAP@k, NDCG@k over the customers at `idx` (repeats count once per
        draw) that have an actual item, and catalog coverage of their recommendations."""
        chosen = idx[self.has_truth[idx]]
        out = {
            name: float(column[chosen].mean()) if len(chosen) else float("nan")
            for name, column in self.values.items()
        }
        shown = int(self.shown[np.unique(chosen)].any(axis=0).sum()) if len(chosen) else 0
        out["coverage"] = shown / self.catalog_size if self.catalog_size else float("nan")
        out["customers"] = float(len(chosen))
        return out


def ranking_table(
    recommended: dict[str, list[str]],
    actual: dict[str, set[str]],
    customers: list[str],
    k: int,
    catalog_size: int,
) -> RankingTable:
    """The per-customer ranking figures at k of `customers` (in that order); customers
    without an actual item are kept but left out of every summary."""
    names = [f"hit@{k}", f"recall@{k}", f"map@{k}", f"ndcg@{k}"]
    values = np.zeros((len(customers), 4))
    has_truth = np.zeros(len(customers), dtype=bool)
    discounts = 1 / np.log2(np.arange(2, k + 2))
    items: dict[str, int] = {}
    rows, cols = [], []
    for i, customer in enumerate(customers):
        truth = actual.get(customer, set())
        if not truth:
            continue
        has_truth[i] = True
        recs = recommended.get(customer, [])[:k]
        for item in recs:
            rows.append(i)
            cols.append(items.setdefault(item, len(items)))
        rel = np.array([r in truth for r in recs], dtype=float)
        precision_at = np.cumsum(rel) / np.arange(1, len(rel) + 1)
        ideal = discounts[: min(len(truth), k)].sum() if len(rel) else 1.0
        values[i] = (
            float(rel.any()),
            rel.sum() / len(truth),
            (precision_at * rel).sum() / min(len(truth), k),
            (rel * discounts[: len(rel)]).sum() / ideal if ideal else 0.0,
        )
    shown = np.zeros((len(customers), len(items)), dtype=bool)
    shown[rows, cols] = True
    return RankingTable(k, dict(zip(names, values.T, strict=True)), has_truth, shown, catalog_size)


def ranking_metrics(
    recommended: dict[str, list[str]], actual: dict[str, set[str]], k: int, catalog_size: int
) -> dict[str, float]:
    """hit@k, recall@k, MAP@k, NDCG@k over customers with at least one actual item, and
    catalog coverage of the recommendations."""
    customers = list(actual)
    table = ranking_table(recommended, actual, customers, k, catalog_size)
    return table.summary(np.arange(len(customers)))


def bootstrap_interval(
    metric: Callable[[np.ndarray], float], n: int, rounds: int, seed: int
) -> tuple[float, float]:
    """95% interval of `metric(indices)` over `rounds` resamples of n rows with replacement."""
    rng = np.random.default_rng(seed)
    values = [metric(rng.integers(0, n, n)) for _ in range(rounds)]
    values = [v for v in values if not np.isnan(v)]
    if not values:
        return float("nan"), float("nan")
    lo, hi = np.percentile(values, [2.5, 97.5])
    return float(lo), float(hi)


def decile_table(y: np.ndarray, p: np.ndarray) -> pd.DataFrame:
    """Mean predicted and actual value per decile of the prediction (1 = highest)."""
    frame = pd.DataFrame({"actual": y, "predicted": p})
    ranks = frame["predicted"].rank(method="first", ascending=False)
    frame["decile"] = np.ceil(ranks / len(frame) * 10).astype(int).clip(1, 10)
    return frame.groupby("decile")[["predicted", "actual"]].mean().reset_index()
