"""Train, evaluate and compare each model with its baselines on the same time-based test set.

Every prediction of the model here (test metrics, reasons, the reference sample, the
champion's score on the same test rows) goes through its bundle (`serving.models`), the
code that serves it."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from feast import FeatureStore

from features.catalog import Workspace
from features.config import LabelParams
from features.model_spec import Metric, ModelSpec, model_spec
from features.names import CUSTOMER_ID, EVENT_TIMESTAMP
from features.retrieval import historical_features, service_features
from serving.models import (
    BundleModel,
    reason_codes,
    set_population,
)
from training import baselines
from training.churn import train_churn
from training.clv import train_clv
from training.config import TrainingParams
from training.datasets import TimeSplit, time_split
from training.evaluate import (
    Paired,
    Scored,
    grade,
    paired_differences,
    plot_churn,
    plot_clv,
    plot_importance,
    score_with_intervals,
)
from training.metrics import churn_metrics, clv_metrics

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
    paired: list[Paired]  # the model minus each baseline on the primary metric
    plots: list[Path]
    importance: pd.Series
    input_example: pd.DataFrame
    rows: dict[str, int]
    test_frame: pd.DataFrame  # test rows with the features
    test_predictions: np.ndarray  # the model's prediction on each test row
    primary_key: str  # the primary metric's name ("roc_auc", "hit@5")
    # The primary metric of any model of this kind on the same test rows (the champion's).
    primary_metric: Callable[[BundleModel], float]


Runner = Callable[[FeatureStore, Workspace, LabelParams, TrainingParams, Path], TrainResult]


def runner(kind: str) -> Runner:
    """The function that trains and evaluates a model kind (its spec's `trainer`)."""
    module, _, name = model_spec(kind).trainer.partition(":")
    found: Runner = getattr(importlib.import_module(module), name)
    return found


def _parts(frame: pd.DataFrame, split: TimeSplit) -> tuple[pd.DataFrame, ...]:
    part = split.part(frame[EVENT_TIMESTAMP])
    return tuple(frame[part == p].reset_index(drop=True) for p in ("train", "valid", "test"))


def _labelled(
    spec: ModelSpec,
    paths: Workspace,
    labels_params: LabelParams,
    params: TrainingParams,
    max_train: int | None = None,
) -> tuple[pd.DataFrame, TimeSplit]:
    """The label rows of the model's cutoffs that fall in the split, and the split."""
    horizon_days = int(getattr(labels_params, spec.horizon_setting))
    labels = pd.read_parquet(paths.snapshot(spec.label_output))
    stamps = sorted(pd.to_datetime(labels[EVENT_TIMESTAMP], utc=True).unique())
    split_params = params.split
    if max_train is not None:
        split_params = split_params.model_copy(update={"max_train_cutoffs": max_train})
    split = time_split(list(stamps), horizon_days, split_params)
    labels[EVENT_TIMESTAMP] = pd.to_datetime(labels[EVENT_TIMESTAMP], utc=True)
    rows = labels[split.part(labels[EVENT_TIMESTAMP]) != ""].reset_index(drop=True)
    check_enough(spec, rows, split, params.min_customers)
    return rows, split


def check_enough(spec: ModelSpec, rows: pd.DataFrame, split: TimeSplit, minimum: int) -> None:
    """Refuse data too small to train and judge a model on: every part of the split needs
    `minimum` distinct customers (a model fitted on a handful is constant, and its test
    figures are noise). ValueError naming the counts and the setting otherwise."""
    part = split.part(rows[EVENT_TIMESTAMP])
    counts = {
        p: int(rows.loc[part == p, CUSTOMER_ID].nunique()) for p in ("train", "valid", "test")
    }
    if min(counts.values()) < minimum:
        found = ", ".join(f"{n} in {p}" for p, n in counts.items())
        raise ValueError(
            f"{spec.kind}: too little data to train: distinct customers with a label {found}; "
            f"each part needs at least {minimum} (training.min_customers). Bring a longer "
            "history or more customers."
        )


def _importance(model: BundleModel) -> pd.Series:
    """Gain of each feature in the model's first booster (a two-part CLV's P(buy))."""
    booster = next(iter(model.boosters.values()))
    return pd.Series(booster.feature_importance("gain"), index=model.columns).sort_values(
        ascending=False
    )


def run_churn(
    store: FeatureStore,
    paths: Workspace,
    labels: LabelParams,
    params: TrainingParams,
    out_dir: Path,
) -> TrainResult:
    """Churn model vs the best recency rule and logistic regression on RFM."""
    spec = model_spec("churn")
    rows, split = _labelled(spec, paths, labels, params)
    frame = historical_features(store, spec.feature_service, rows)
    train, valid, test = _parts(frame, split)
    features = service_features(spec.feature_service)
    y_tr, y_va, y = (f[spec.target].to_numpy(int) for f in (train, valid, test))
    model, info = train_churn(train, y_tr, valid, y_va, features, params.churn, params.seed)
    p_test = model.predict(test)
    set_population(model, p_test)
    key = spec.primary_key(params.nbo.top_k)
    rule_days = baselines.recency_rule(valid, y_va)
    logistic = baselines.rfm_logistic(train, y_tr)
    predictions = {
        "lightgbm": p_test,
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
    info["example_reasons_highest_risk"] = _example_reasons(model, test, p_test)
    plots = plot_churn(y, predictions, out_dir)
    importance = _importance(model)
    plots.append(plot_importance(importance, out_dir, "churn"))
    return TrainResult(
        "churn",
        model,
        info,
        split,
        scored,
        *_judge(scored, spec.primary, key, params),
        plots,
        importance,
        test[features].head(5),
        _sizes(train, valid, test),
        test,
        p_test,
        key,
        lambda m: churn_metrics(y, m.predict(test))[key],
    )


def run_clv(
    store: FeatureStore,
    paths: Workspace,
    labels: LabelParams,
    params: TrainingParams,
    out_dir: Path,
) -> TrainResult:
    """CLV model vs average monthly spend x months x retention (and BG/NBD x Gamma-Gamma
    when the optional `pymc-marketing` extra is installed)."""
    spec = model_spec("clv")
    rows, split = _labelled(spec, paths, labels, params)
    frame = historical_features(store, spec.feature_service, rows)
    train, valid, test = _parts(frame, split)
    features = service_features(spec.feature_service)
    y_tr, y_va, y = (f[spec.target].to_numpy(float) for f in (train, valid, test))
    model, info = train_clv(train, y_tr, valid, y_va, features, params.clv, params.seed)
    p_test = model.predict(test)
    set_population(model, p_test)
    key = spec.primary_key(params.nbo.top_k)
    retention = baselines.retention_rate(np.concatenate([y_tr, y_va]))
    predictions = {
        "lightgbm": p_test,
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
    predictions["predict zero"] = np.zeros(len(y))
    scored = _score_all(clv_metrics, y, predictions, params, ["mae", "spearman", "top20_capture"])
    bias = scored[0].metrics["total_bias"]
    caveat = (
        f"its total predicted value is {bias:+.0%} off the actual total "
        f"(more than ±{params.clv.max_total_bias:.0%})"
        if abs(bias) > params.clv.max_total_bias
        else None
    )
    info["retention_rate"] = retention
    info["example_reasons_highest_value"] = _example_reasons(model, test, p_test)
    plots = plot_clv(y, p_test, out_dir)
    importance = _importance(model)
    plots.append(plot_importance(importance, out_dir, "clv"))
    return TrainResult(
        "clv",
        model,
        info,
        split,
        scored,
        *_judge(scored, spec.primary, key, params, caveat),
        plots,
        importance,
        test[features].head(5),
        _sizes(train, valid, test),
        test,
        p_test,
        key,
        lambda m: clv_metrics(y, m.predict(test))[key],
    )


def _example_reasons(
    model: BundleModel, test: pd.DataFrame, scores: np.ndarray
) -> list[dict[str, Any]]:
    """Reason codes of the three highest-scored test customers (no ids: reports are shared)."""
    top = test.iloc[np.argsort(-scores, kind="stable")[:3]]
    values = [{str(k): v for k, v in row.items()} for row in top.to_dict("records")]
    reasons = reason_codes(model, model.frame_matrix(top), values, 3)
    return [{d: [r.text for r in found[d]] for d in ("up", "down")} for found in reasons]


def _judge(
    scored: list[Scored],
    metric: Metric,
    key: str,
    params: TrainingParams,
    caveat: str | None = None,
) -> tuple[tuple[str, str, str], list[Paired]]:
    """The grade and the paired differences of the model (first) against every baseline."""
    paired = paired_differences(scored[0], scored[1:], metric, key, params.bootstrap, params.seed)
    return grade(scored[0], paired, key, caveat), paired


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
