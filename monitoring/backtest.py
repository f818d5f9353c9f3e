"""Delayed-label backtests: once a horizon has passed, the real outcomes of earlier scored
snapshots, the realised quality and its gap to the evaluation-time figures.

Outcomes are the label definitions of `features.labels`, read from the label snapshots
(`features build` writes them for every cutoff whose horizon is inside the data), never
retyped here. Metrics are `training.metrics`, the ones evaluation used; which of them each
model tracks, and the setting with its margin, is the model spec's (`features.model_spec`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from features.catalog import Workspace
from features.labels import ACCEPTED
from features.model_spec import model_spec
from features.names import CUSTOMER_ID, EVENT_TIMESTAMP, OFFER_ID
from monitoring.config import BacktestParams
from training.metrics import churn_metrics, clv_metrics, ranking_metrics
from training.tracking import metric_key

# Evaluation-time metrics are logged to the model's training run under this prefix.
EVALUATION_PREFIX = "model_"
# The columns of `joined_outcomes`.
PREDICTION, OUTCOME = "prediction", "outcome"


@dataclass(frozen=True)
class Outcome:
    """Realised quality of one model on one scored snapshot."""

    kind: str
    as_of: str
    rows: int
    realised: dict[str, float]
    top_k: int = 0  # the offers per customer that `hit@k` counted (nbo)


def labels_at(paths: Workspace, kind: str, as_of: pd.Timestamp) -> pd.DataFrame:
    """The label rows of a cutoff (empty when its horizon has not passed yet)."""
    path = paths.snapshot(model_spec(kind).label_output)
    if not path.exists():
        raise FileNotFoundError(f"{path}: label snapshots not found; run `crmscore features build`")
    labels = pd.read_parquet(path)
    stamps = pd.to_datetime(labels[EVENT_TIMESTAMP], utc=True)
    return labels[stamps == as_of].reset_index(drop=True)


def joined_outcomes(kind: str, scores: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """The prediction and the outcome (`PREDICTION`, `OUTCOME`) of every scored customer
    with an outcome (churn and CLV)."""
    spec = model_spec(kind)
    column, target = spec.prediction_column, spec.target
    # Renamed before the merge: CLV's prediction and outcome share a name.
    predicted = scores[[CUSTOMER_ID, column]].rename(columns={column: PREDICTION})
    outcomes = labels[[CUSTOMER_ID, target]].rename(columns={target: OUTCOME})
    return predicted.merge(outcomes, on=CUSTOMER_ID)[[PREDICTION, OUTCOME]]


def realised_quality(
    kind: str, scores: pd.DataFrame, labels: pd.DataFrame, top_k: int
) -> Outcome | None:
    """Metrics of the scores against the outcomes; None when no scored customer has one.
    `top_k`: the offers per customer that count for `hit@k` (training.nbo.top_k)."""
    as_of = str(pd.Timestamp(scores["as_of"].iloc[0]).date()) if len(scores) else ""
    if kind in ("churn", "clv"):
        joined = joined_outcomes(kind, scores, labels)
        if joined.empty:
            return None
        y = joined[OUTCOME].to_numpy(dtype=float)
        p = joined[PREDICTION].to_numpy(dtype=float)
        if kind == "churn":
            if len(np.unique(y)) < 2:
                return None
            found = churn_metrics(y.astype(int), p)
            realised = {k: found[k] for k in ("roc_auc", "calibration_error", "brier")}
        else:
            found = clv_metrics(y, p)
            realised = {k: found[k] for k in ("mae", "top20_capture", "spearman")}
        return Outcome(kind, as_of, len(joined), realised, top_k)
    offers = [f"offer_{i}" for i in range(1, top_k + 1) if f"offer_{i}" in scores]
    recommended = {
        str(row[0]): [str(o) for o in row[1:] if isinstance(o, str)]
        for row in scores[[CUSTOMER_ID, *offers]].itertuples(index=False)
    }
    accepted = labels[labels[ACCEPTED] == 1] if ACCEPTED in labels else labels
    actual: dict[str, set[str]] = {}
    for customer, offer in zip(accepted[CUSTOMER_ID], accepted[OFFER_ID], strict=True):
        if str(customer) in recommended:
            actual.setdefault(str(customer), set()).add(str(offer))
    if not actual:
        return None
    catalog = len(set(labels[OFFER_ID].astype(str))) or 1
    found = ranking_metrics(recommended, actual, top_k, catalog)
    return Outcome(kind, as_of, len(actual), {f"hit@{top_k}": found[f"hit@{top_k}"]}, top_k)


def degradation(
    outcome: Outcome, evaluation: dict[str, float], params: BacktestParams
) -> tuple[dict[str, Any], list[str]]:
    """Realised against evaluation-time figures: a comparison table and the reasons that
    cross the configured margins (the `params` setting each tracked metric names)."""
    table: dict[str, Any] = {}
    reasons = []
    for tracked in model_spec(outcome.kind).backtest:
        metric = tracked.metric
        name = metric.key(outcome.top_k)
        margin = float(getattr(params, tracked.margin_setting))
        now = outcome.realised.get(name)
        then = evaluation.get(metric_key(EVALUATION_PREFIX + name))
        table[name] = {"realised": now, "evaluation": then}
        if now is None or then is None or not np.isfinite(now):
            continue
        # A relative margin is a share of the evaluation value (realised MAE > (1 + m) x MAE).
        allowed = margin * abs(then) if tracked.relative else margin
        # Degraded: worse than the evaluation value by more than the margin.
        worse = not metric.better(now, then, -allowed)
        table[name]["degraded"] = bool(worse)
        if worse:
            reasons.append(
                f"{outcome.kind}: realised {name} {now:.4f} on {outcome.as_of} vs {then:.4f} at "
                f"evaluation (margin {margin})"
            )
    return table, reasons
