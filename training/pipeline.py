"""Train, evaluate and compare each model with its baselines on the same time-based test set.

Every prediction of the model here (test metrics, reasons, the reference sample, the
champion's score on the same test rows) goes through its bundle (`serving.models`), the
code that serves it."""

from __future__ import annotations

import dataclasses
import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from feast import FeatureStore
from sklearn.metrics import roc_auc_score

from features.catalog import Workspace
from features.config import LabelParams
from features.model_spec import ModelSpec, model_spec
from features.names import BTYD_HORIZON_RATIO, CUSTOMER_ID, EVENT_TIMESTAMP
from features.progress import stage
from features.retrieval import historical_features, service_features
from features.snapshots import trained_horizon
from serving.models import (
    BundleModel,
    at_trained_horizon,
    numbers,
    reason_codes,
    set_population,
)
from training import baselines, contenders
from training.churn import choose_calibrator, refit_churn, train_churn
from training.clv import refit_clv, train_clv
from training.config import TrainingParams
from training.contenders import BASELINE
from training.datasets import TimeSplit, sample_customers, time_split
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

log = logging.getLogger(__name__)


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
    champion: str = "lightgbm"  # the contender the model scores with (chosen on validation)


Runner = Callable[[FeatureStore, Workspace, LabelParams, TrainingParams, Path], TrainResult]


def runner(kind: str) -> Runner:
    """The function that trains and evaluates a model kind (its spec's `trainer`)."""
    module, _, name = model_spec(kind).trainer.partition(":")
    found: Runner = getattr(importlib.import_module(module), name)
    return found


def _parts(
    frame: pd.DataFrame, split: TimeSplit, names: tuple[str, ...] = ("train", "valid", "test")
) -> tuple[pd.DataFrame, ...]:
    part = split.part(frame[EVENT_TIMESTAMP])
    return tuple(frame[part == p].reset_index(drop=True) for p in names)


def _labelled(
    spec: ModelSpec,
    paths: Workspace,
    labels_params: LabelParams,
    params: TrainingParams,
    max_train: int | None = None,
    with_gap: bool = False,
) -> tuple[pd.DataFrame, TimeSplit, dict[str, Any] | None]:
    """The label rows of the model's cutoffs that fall in the split (a sample of customers
    above `training.max_training_rows`), the split and what was sampled (None: all). The
    split keeps its gap cutoffs (`TimeSplit.gap`) only `with_gap`."""
    asked = int(getattr(labels_params, spec.horizon_setting))
    horizon_days = trained_horizon(paths, spec.horizon_setting, asked)
    labels = pd.read_parquet(paths.snapshot(spec.label_output))
    stamps = sorted(pd.to_datetime(labels[EVENT_TIMESTAMP], utc=True).unique())
    split_params = params.split
    if max_train is not None:
        split_params = split_params.model_copy(update={"max_train_cutoffs": max_train})
    split = time_split(list(stamps), horizon_days, split_params)
    if not with_gap:
        split = dataclasses.replace(split, gap=())
    labels[EVENT_TIMESTAMP] = pd.to_datetime(labels[EVENT_TIMESTAMP], utc=True)
    rows = labels[split.part(labels[EVENT_TIMESTAMP]) != ""].reset_index(drop=True)
    rows, sample = sample_customers(rows, spec.target, params.max_training_rows, params.seed)
    if sample is not None:
        log.info("train %s: a sample of customers: %s", spec.kind, sample)
    check_enough(spec, rows, split, params.min_customers)
    return rows, split, sample


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
    """Churn: LightGBM, the classical models and blends compete on validation; the winner
    is the model, compared on the test cutoff with every contender and the recency rule."""
    spec = model_spec("churn")
    refit_gap = params.split.refit and params.churn.refit_gap
    rows, split, sample = _labelled(spec, paths, labels, params, with_gap=refit_gap)
    with stage(log, f"train {spec.kind}: training set from Feast ({len(rows)} rows)"):
        frame = historical_features(store, spec.feature_service, rows)
    train, valid, test, gap = _parts(frame, split, ("train", "valid", "test", "gap"))
    features = service_features(spec.feature_service)
    y_tr, y_va, y = (f[spec.target].to_numpy(int) for f in (train, valid, test))
    with stage(log, f"train {spec.kind}: LightGBM fit"):
        lightgbm, info = train_churn(train, y_tr, valid, y_va, features, params.churn, params.seed)
    if sample is not None:
        info["training_sample"] = sample
    x_valid = lightgbm.frame_matrix(valid)
    options = contenders.churn_contenders(lightgbm, train, y_tr)
    valid_scores = {c.name: contenders.scores(lightgbm, x_valid, c) for c in options}
    calibrators = {
        c.name: choose_calibrator(
            params.churn.calibration, valid_scores[c.name], y_va, params.seed
        )[0]
        for c in options
    }
    final, final_options = lightgbm, options
    if params.split.refit:
        observed = pd.concat([train, gap, valid], ignore_index=True)
        y_observed = observed[spec.target].to_numpy(int)
        with stage(log, f"train {spec.kind}: refit on every observed cutoff"):
            final = refit_churn(lightgbm, observed, y_observed, params.churn, params.seed)
        final_options = contenders.churn_contenders(final, observed, y_observed)
        info["refit_rows"] = len(observed)
    fitted = {
        c.name: contenders.with_scorer(final, c, calibrator=calibrators[c.name])
        for c in final_options
    }
    champion, figures = contenders.choose(
        options,
        lambda c, idx: roc_auc_score(y_va[idx], valid_scores[c.name][idx]),
        len(y_va),
        spec.primary.higher_is_better,
        params.bootstrap,
        params.seed,
    )
    model = fitted[champion.name]
    p_test = model.predict(test)
    set_population(model, p_test)
    key = spec.primary_key(params.nbo.top_k)
    predictions = {name: m.predict(test) for name, m in fitted.items()}
    rule_days = baselines.recency_rule(valid, y_va)
    predictions[f"recency rule ({rule_days} days)"] = baselines.recency_rule_predict(
        test, rule_days
    )
    roles = {c.name: c.role for c in options}
    scored = _score_all(
        churn_metrics,
        y,
        _champion_first(predictions, champion.name),
        params,
        roles,
        ["roc_auc", "pr_auc", "brier"],
    )
    info.update(_choice(champion, figures, "validation roc_auc"))
    info["recency_rule_days"] = rule_days
    info["example_reasons_highest_risk"] = _example_reasons(model, test, p_test)
    plots = plot_churn(y, _champion_first(predictions, champion.name), out_dir)
    importance = _importance(model)
    plots.append(plot_importance(importance, out_dir, "churn"))
    return TrainResult(
        "churn",
        model,
        info,
        split,
        scored,
        *_judge(scored, spec, key, params),
        plots,
        importance,
        test[features].head(5),
        _sizes(train, valid, test),
        test,
        p_test,
        key,
        lambda m: churn_metrics(y, m.predict(test))[key],
        champion.name,
    )


def run_clv(
    store: FeatureStore,
    paths: Workspace,
    labels: LabelParams,
    params: TrainingParams,
    out_dir: Path,
) -> TrainResult:
    """CLV: LightGBM, BG/NBD x Gamma-Gamma and blends compete on validation MAE; ours are
    refitted on every observed cutoff and their mean corrected there (classical models are
    served as they are); compared on the test cutoff with every contender, average monthly
    spend x months x retention and predicting zero."""
    spec = model_spec("clv")
    rows, split, sample = _labelled(spec, paths, labels, params)
    with stage(log, f"train {spec.kind}: training set from Feast ({len(rows)} rows)"):
        frame = historical_features(store, spec.feature_service, rows)
    train, valid, test = _parts(frame, split)
    features = service_features(spec.feature_service)
    y_tr, y_va, y = (f[spec.target].to_numpy(float) for f in (train, valid, test))
    with stage(log, f"train {spec.kind}: LightGBM fit"):
        lightgbm, info = train_clv(train, y_tr, valid, y_va, features, params.clv, params.seed)
    if sample is not None:
        info["training_sample"] = sample
    x_valid = lightgbm.frame_matrix(valid)
    options = contenders.clv_contenders(lightgbm, train)
    valid_values = {
        c.name: np.clip(contenders.scores(lightgbm, x_valid, c), 0, None) for c in options
    }
    final, final_options, observed, y_observed = lightgbm, options, train, y_tr
    if params.split.refit:
        observed, y_observed = pd.concat([train, valid], ignore_index=True), np.r_[y_tr, y_va]
        with stage(log, f"train {spec.kind}: refit on every observed cutoff"):
            final = refit_clv(lightgbm, observed, y_observed, params.clv, params.seed)
        final_options = contenders.clv_contenders(final, observed)
        info["refit_rows"] = len(observed)
    x_observed = final.frame_matrix(observed)
    fitted = {}
    for c in final_options:
        predicted = np.clip(contenders.scores(final, x_observed, c), 0, None)
        scale = contenders.value_scale(predicted, y_observed, params.gate.clv_max_total_bias)
        fitted[c.name] = contenders.with_scorer(
            final, c, value_scale=scale if c.role == contenders.MODEL else 1.0
        )
    champion, figures = contenders.choose(
        options,
        lambda c, idx: float(np.mean(np.abs(valid_values[c.name][idx] - y_va[idx]))),
        len(y_va),
        spec.primary.higher_is_better,
        params.bootstrap,
        params.seed,
    )
    model = fitted[champion.name]
    p_test = model.predict(test)
    key = spec.primary_key(params.nbo.top_k)
    retention = baselines.retention_rate(np.concatenate([y_tr, y_va]))
    predictions = {name: m.predict(test) for name, m in fitted.items()}
    trained_days = split.horizon_days
    predictions["monthly spend x months x retention"] = baselines.monthly_spend_clv(
        test, trained_days, retention
    )
    predictions["predict zero"] = np.zeros(len(y))
    roles = {c.name: c.role for c in options}
    scored = _score_all(
        clv_metrics,
        y,
        _champion_first(predictions, champion.name),
        params,
        roles,
        ["mae", "spearman", "top20_capture", "normalized_gini"],
    )
    bias = scored[0].metrics["total_bias"]
    caveat = (
        f"its total predicted value is {bias:+.0%} off the actual total "
        f"(more than ±{params.gate.clv_max_total_bias:.0%})"
        if abs(bias) > params.gate.clv_max_total_bias
        else None
    )
    info.update(_choice(champion, figures, "validation mae"))
    info["value_scale"] = model.meta["value_scale"]
    info["horizon"] = extrapolate(model, test, trained_days, labels.clv_horizon_days)
    set_population(model, model.predict(test))
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
        *_judge(scored, spec, key, params, caveat),
        plots,
        importance,
        test[features].head(5),
        _sizes(train, valid, test),
        test,
        p_test,
        key,
        lambda m: clv_metrics(y, at_trained_horizon(m).predict(test))[key],
        champion.name,
    )


def extrapolate(model: BundleModel, test: pd.DataFrame, trained: int, asked: int) -> str:
    """Make a CLV bundle trained at a shorter horizon than asked serve the asked one: each
    customer's value times the BG/NBD ratio of expected purchases (`BTYD_HORIZON_RATIO`; missing
    as its mean on the test rows). Returns what the report says about the horizon."""
    if trained >= asked:
        return f"trained, tested and served at {asked} days"
    if BTYD_HORIZON_RATIO not in model.columns:
        raise ValueError(
            f"clv: the history only allows a {trained}-day horizon ({asked} asked) and the "
            f"model has no {BTYD_HORIZON_RATIO} input to extrapolate with; rebuild the features"
        )
    ratios = numbers(test[BTYD_HORIZON_RATIO])
    fill = float(np.nanmean(ratios)) if np.isfinite(ratios).any() else asked / trained
    model.meta.update(trained_horizon_days=trained, horizon_days=asked, horizon_ratio_fill=fill)
    return (
        f"trained and tested at {trained} days (the longest horizon the history allows for "
        f"training, validation and test windows); served at the asked {asked} days by "
        f"extrapolation: each customer's value times their BG/NBD ratio of expected purchases "
        f"in {asked} over {trained} days (mean {fill:.2f} on the test customers)"
    )


def _champion_first(predictions: dict[str, np.ndarray], champion: str) -> dict[str, np.ndarray]:
    return {champion: predictions[champion], **predictions}


def _choice(champion: contenders.Contender, figures: dict[str, float], what: str) -> dict[str, Any]:
    """What the report says of the choice of the champion."""
    return {
        "champion": champion.name,
        "champion_role": champion.role,
        f"contenders_{what.replace(' ', '_')}": {k: round(v, 6) for k, v in figures.items()},
    }


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
    spec: ModelSpec,
    key: str,
    params: TrainingParams,
    caveat: str | None = None,
) -> tuple[tuple[str, str, str], list[Paired]]:
    """The grade of the model (first) against the baselines, and its paired differences on
    the primary metric with every other contender. The grade also reads the secondary
    metrics against the strongest baseline: significantly worse on one caps it at B."""
    model, others = scored[0], scored[1:]
    paired = paired_differences(model, others, spec.primary, key, params.bootstrap, params.seed)
    baselines = {s.name for s in others if s.role == BASELINE}
    against = [p for p in paired if p.baseline in baselines]
    strongest = min(against, key=lambda p: p.difference).baseline
    rival = next(s for s in others if s.name == strongest)
    worse = []
    for metric in spec.secondary:
        name = metric.key(params.nbo.top_k)
        if name not in model.metrics or name not in rival.metrics:
            continue
        (p,) = paired_differences(model, [rival], metric, name, params.bootstrap, params.seed)
        if p.high < 0:
            worse.append(f"{name} {p.as_text(name)}")
    reasons = [r for r in (caveat, *(f"significantly worse on {w}" for w in worse)) if r]
    note = "; ".join(reasons) or None
    if model.role == BASELINE:
        note = "; ".join(
            [
                f"the champion is the classical model '{model.name}': no model of ours beat it on "
                "validation",
                *reasons,
            ]
        )
    return grade(model, against, key, note, capped=model.role == BASELINE), paired


def _score_all(
    metric: Callable[[np.ndarray, np.ndarray], dict[str, float]],
    y: np.ndarray,
    predictions: dict[str, np.ndarray],
    params: TrainingParams,
    roles: dict[str, str],
    keys: list[str],
) -> list[Scored]:
    """Every contender's metrics on the test rows, with bootstrap intervals for `keys`; a
    name without a role is a baseline."""
    return [
        score_with_intervals(
            name,
            partial(_on_rows, metric, y, p),
            len(y),
            params.bootstrap,
            params.seed,
            keys,
            roles.get(name, BASELINE),
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
