"""Train, evaluate and compare each model with its baselines on the same time-based test set."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from feast import FeatureStore

from features.config import LabelParams
from features.labels import ACCEPTED, CHURN, CLV
from features.names import CUSTOMER_ID, EVENT_TIMESTAMP, OFFER_ID
from training import baselines
from training.churn import train_churn
from training.clv import train_clv
from training.config import TrainingParams
from training.datasets import TimeSplit, historical_features, service_features, time_split
from training.evaluate import (
    Scored,
    grade,
    plot_churn,
    plot_clv,
    plot_importance,
    score_with_intervals,
)
from training.metrics import churn_metrics, clv_metrics, ranking_metrics
from training.nbo import candidates, train_nbo, with_labels

SERVICES = {"churn": "churn_v1", "clv": "clv_v1", "nbo": "nbo_v1"}
BGNBD_MISSING = "skipped: the optional `bgnbd` extra (pymc-marketing) is not installed"


@dataclass
class TrainResult:
    """A trained model, its test-set comparison with the baselines, and what to log."""

    kind: str
    model: Any
    info: dict[str, Any]
    split: TimeSplit
    scored: list[Scored]  # the model first, then the baselines
    grade: tuple[str, str, str]
    plots: list[Path]
    importance: pd.Series
    input_example: pd.DataFrame
    rows: dict[str, int]
    test_frame: pd.DataFrame  # test rows with the features, to re-score a champion


def _parts(frame: pd.DataFrame, split: TimeSplit) -> tuple[pd.DataFrame, ...]:
    part = split.part(frame[EVENT_TIMESTAMP])
    return tuple(frame[part == p].reset_index(drop=True) for p in ("train", "valid", "test"))


def _labelled(
    path: Path, horizon_days: int, params: TrainingParams, max_train: int | None = None
) -> tuple[pd.DataFrame, TimeSplit]:
    labels = pd.read_parquet(path)
    stamps = sorted(pd.to_datetime(labels[EVENT_TIMESTAMP], utc=True).unique())
    split_params = params.split
    if max_train is not None:
        split_params = split_params.model_copy(update={"max_train_cutoffs": max_train})
    split = time_split(list(stamps), horizon_days, split_params)
    labels[EVENT_TIMESTAMP] = pd.to_datetime(labels[EVENT_TIMESTAMP], utc=True)
    return labels[split.part(labels[EVENT_TIMESTAMP]) != ""].reset_index(drop=True), split


def _importance(booster: Any, columns: tuple[str, ...]) -> pd.Series:
    return pd.Series(booster.feature_importance("gain"), index=list(columns)).sort_values(
        ascending=False
    )


def run_churn(
    store: FeatureStore,
    snapshot_dir: Path,
    labels: LabelParams,
    params: TrainingParams,
    out_dir: Path,
) -> TrainResult:
    """Churn model vs the best recency rule and logistic regression on RFM."""
    rows, split = _labelled(
        snapshot_dir / "labels_churn.parquet", labels.churn_horizon_days, params
    )
    frame = historical_features(store, SERVICES["churn"], rows)
    train, valid, test = _parts(frame, split)
    features = service_features(SERVICES["churn"])
    y_tr, y_va, y = (f[CHURN].to_numpy(int) for f in (train, valid, test))
    model, info = train_churn(train, y_tr, valid, y_va, features, params.churn, params.seed)
    rule_days = baselines.recency_rule(valid, y_va)
    logistic = baselines.rfm_logistic(train, y_tr)
    predictions = {
        "lightgbm": model.predict(test),
        f"recency rule ({rule_days} days)": baselines.recency_rule_predict(test, rule_days),
        "logistic regression on RFM": baselines.rfm_logistic_predict(logistic, test),
    }
    if baselines.bgnbd_available():
        predictions["BG/NBD P(no purchase)"] = baselines.bgnbd_no_purchase(
            test, labels.churn_horizon_days, params.seed
        )
    else:
        info["bgnbd"] = BGNBD_MISSING
    scored = _score_all(churn_metrics, y, predictions, params, ["roc_auc", "pr_auc", "brier"])
    info["recency_rule_days"] = rule_days
    info["example_reasons_highest_risk"] = _example_reasons(model, test, predictions["lightgbm"])
    plots = plot_churn(y, predictions, out_dir)
    importance = _importance(model.booster, model.spec.columns)
    plots.append(plot_importance(importance, out_dir, "churn"))
    return TrainResult(
        "churn",
        model,
        info,
        split,
        scored,
        grade(scored[0], scored[1:], "churn"),
        plots,
        importance,
        test[features].head(5),
        _sizes(train, valid, test),
        test,
    )


def run_clv(
    store: FeatureStore,
    snapshot_dir: Path,
    labels: LabelParams,
    params: TrainingParams,
    out_dir: Path,
) -> TrainResult:
    """CLV model vs average monthly spend x months x retention (and BG/NBD x Gamma-Gamma
    when the optional `pymc-marketing` extra is installed)."""
    rows, split = _labelled(snapshot_dir / "labels_clv.parquet", labels.clv_horizon_days, params)
    frame = historical_features(store, SERVICES["clv"], rows)
    train, valid, test = _parts(frame, split)
    features = service_features(SERVICES["clv"])
    y_tr, y_va, y = (f[CLV].to_numpy(float) for f in (train, valid, test))
    model, info = train_clv(train, y_tr, valid, y_va, features, params.clv, params.seed)
    retention = baselines.retention_rate(np.concatenate([y_tr, y_va]))
    predictions = {
        "lightgbm": model.predict(test),
        "monthly spend x months x retention": baselines.monthly_spend_clv(
            test, labels.clv_horizon_days, retention
        ),
    }
    if baselines.bgnbd_available():
        predictions["BG/NBD x Gamma-Gamma"] = baselines.bgnbd_gamma_gamma_clv(
            test, labels.clv_horizon_days, params.seed
        )
    else:
        info["bgnbd"] = BGNBD_MISSING
    scored = _score_all(clv_metrics, y, predictions, params, ["mae", "spearman", "top20_capture"])
    info["retention_rate"] = retention
    info["example_reasons_highest_value"] = _example_reasons(model, test, predictions["lightgbm"])
    plots = plot_clv(y, predictions["lightgbm"], out_dir)
    importance = _importance(next(iter(model.boosters.values())), model.spec.columns)
    plots.append(plot_importance(importance, out_dir, "clv"))
    return TrainResult(
        "clv",
        model,
        info,
        split,
        scored,
        grade(scored[0], scored[1:], "clv"),
        plots,
        importance,
        test[features].head(5),
        _sizes(train, valid, test),
        test,
    )


def _nbo_pairs(
    store: FeatureStore, snapshot_dir: Path, rows: pd.DataFrame, params: TrainingParams
) -> pd.DataFrame:
    """Candidate pairs for the customers in `rows`, with Feast features and labels."""
    keys = [CUSTOMER_ID, EVENT_TIMESTAMP]
    stamps = set(rows[EVENT_TIMESTAMP])
    filters = [(EVENT_TIMESTAMP, "in", sorted(stamps))]
    affinity = pd.read_parquet(
        snapshot_dir / "customer_offer_features.parquet",
        columns=[*keys, OFFER_ID, "affinity_orders_365d", "affinity_recency_days"],
        filters=filters,
    )
    offers = pd.read_parquet(snapshot_dir / "offer_features.parquet", filters=filters)
    for f in (affinity, offers):
        f[EVENT_TIMESTAMP] = pd.to_datetime(f[EVENT_TIMESTAMP], utc=True)
    customers = rows[keys].drop_duplicates()
    pairs = candidates(affinity, offers, customers, params.nbo)
    pairs = historical_features(store, SERVICES["nbo"], pairs)
    pairs[ACCEPTED] = with_labels(pairs, rows)
    return pairs


def run_nbo(
    store: FeatureStore,
    snapshot_dir: Path,
    labels: LabelParams,
    params: TrainingParams,
    out_dir: Path,
) -> TrainResult:
    """Offer ranker vs popularity, buy-again and a history/popularity blend, on the customers
    who bought something in the test horizon."""
    rows, split = _labelled(
        snapshot_dir / "labels_offer.parquet",
        labels.offer_horizon_days,
        params,
        params.nbo.max_train_cutoffs,
    )
    pairs = _nbo_pairs(store, snapshot_dir, rows, params)
    train, valid, test = _parts(pairs, split)
    features = service_features(SERVICES["nbo"])
    model, info = train_nbo(
        train,
        train[ACCEPTED].to_numpy(),
        valid,
        valid[ACCEPTED].to_numpy(),
        features,
        params.nbo,
        params.seed,
    )
    k = params.nbo.top_k
    test_rows = rows[rows[EVENT_TIMESTAMP] == split.test]
    actual = {str(c): set(g[OFFER_ID]) for c, g in test_rows.groupby(CUSTOMER_ID)}
    customers = sorted(actual)
    top = model.recommend(test, k=max(k, 10))
    ranked = {str(c): list(g[OFFER_ID]) for c, g in top.groupby(CUSTOMER_ID, sort=False)}
    test_offers = pd.read_parquet(
        snapshot_dir / "offer_features.parquet", filters=[(EVENT_TIMESTAMP, "==", split.test)]
    )
    test_affinity = pd.read_parquet(
        snapshot_dir / "customer_offer_features.parquet",
        filters=[(EVENT_TIMESTAMP, "==", split.test)],
    )
    test_affinity = test_affinity[test_affinity[CUSTOMER_ID].isin(actual)]
    top_popular = baselines.popularity(test_offers, max(k, 10))
    recs = {
        "lightgbm": {c: ranked.get(c, []) for c in customers},
        "popularity": dict.fromkeys(customers, top_popular),
        "buy-again": baselines.buy_again(test_affinity, max(k, 10)),
        "history x popularity blend": baselines.history_popularity_blend(
            test_affinity, test_offers, customers, max(k, 10)
        ),
    }
    catalog = int(test_offers[OFFER_ID].nunique())

    def metrics(idx: np.ndarray, r: dict[str, list[str]]) -> dict[str, float]:
        chosen = [customers[i] for i in idx]
        # Resampled customers may repeat: key each draw separately.
        act = {f"{j}:{c}": actual[c] for j, c in enumerate(chosen)}
        rec = {f"{j}:{c}": r.get(c, []) for j, c in enumerate(chosen)}
        out = ranking_metrics(rec, act, k, catalog)
        out["recall@10"] = ranking_metrics(rec, act, 10, catalog)["recall@10"]
        return out

    scored = [
        score_with_intervals(
            name,
            partial(metrics, r=r),
            len(customers),
            params.bootstrap,
            params.seed,
            [f"hit@{k}", "recall@10"],
        )
        for name, r in recs.items()
    ]
    importance = _importance(model.booster, model.spec.columns)
    plots = [plot_importance(importance, out_dir, "nbo")]
    info["test_buyers"] = len(customers)
    info["candidate_recall"] = float(test[ACCEPTED].sum() / max(1, len(test_rows)))
    return TrainResult(
        "nbo",
        model,
        info,
        split,
        scored,
        grade(scored[0], scored[1:], "nbo"),
        plots,
        importance,
        test[features].head(5),
        _sizes(train, valid, test),
        test,
    )


def _example_reasons(model: Any, test: pd.DataFrame, scores: np.ndarray) -> list[dict[str, Any]]:
    """Reason codes of the three highest-scored test customers (no ids: reports are shared)."""
    top = test.iloc[np.argsort(-scores, kind="stable")[:3]]
    return [
        {"up": [r.text for r in reasons["up"]], "down": [r.text for r in reasons["down"]]}
        for reasons in model.explain(top)
    ]


def _score_all(
    metric: Callable[[np.ndarray, np.ndarray], dict[str, float]],
    y: np.ndarray,
    predictions: dict[str, np.ndarray],
    params: TrainingParams,
    keys: list[str],
) -> list[Scored]:
    """Every contender's metrics on the test rows, with bootstrap intervals for `keys`."""
    return [
        score_with_intervals(
            name, partial(_on_rows, metric, y, p), len(y), params.bootstrap, params.seed, keys
        )
        for name, p in predictions.items()
    ]


def _on_rows(
    metric: Callable[[np.ndarray, np.ndarray], dict[str, float]],
    y: np.ndarray,
    p: np.ndarray,
    idx: np.ndarray,
) -> dict[str, float]:
    return metric(y[idx], p[idx])


def _sizes(train: pd.DataFrame, valid: pd.DataFrame, test: pd.DataFrame) -> dict[str, int]:
    return {"train": len(train), "valid": len(valid), "test": len(test)}


def primary_metric(kind: str, model: Any, test: pd.DataFrame) -> float:
    """A model's gate metric on a test frame (to score the champion on the challenger's test)."""
    if kind == "churn":
        return churn_metrics(test[CHURN].to_numpy(int), model.predict(test))["roc_auc"]
    if kind == "clv":
        return clv_metrics(test[CLV].to_numpy(float), model.predict(test))["mae"]
    top = test.assign(_p=model.predict(test)).sort_values(
        [CUSTOMER_ID, "_p", OFFER_ID], ascending=[True, False, True], kind="stable"
    )
    top = top.groupby(CUSTOMER_ID, sort=False).head(model.top_k)
    return float(top.groupby(CUSTOMER_ID)[ACCEPTED].max().mean())


RUNNERS = {"churn": run_churn, "clv": run_clv, "nbo": run_nbo}
