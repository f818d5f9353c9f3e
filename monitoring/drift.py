"""Drift reports: the reference sample of a model against current data, with Evidently.

`drift_check` is pure: frames in, an Evidently snapshot and a JSON-ready summary out. Columns
that no test can use (absent, empty on one side) are kept out of Evidently, which raises on
them, and reported as data-quality issues instead."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.core.report import Snapshot
from evidently.metrics import (
    ColumnCount,
    ConstantColumnsCount,
    DatasetMissingValueCount,
    DriftedColumnsCount,
    EmptyColumnsCount,
    MissingValueCount,
    RowCount,
    ValueDrift,
)
from evidently.presets import DataSummaryPreset

from features.names import moving_features
from monitoring.config import MonitoringParams
from monitoring.quality import ColumnProfile, profile_columns, typed_frame
from monitoring.sampling import sample_rows

PREDICTION = "prediction"


@dataclass
class DriftResult:
    """The Evidently snapshot (HTML, workspace) and the summary (JSON, decision)."""

    snapshot: Snapshot
    summary: dict[str, Any]

    @property
    def alarms(self) -> list[str]:
        """Reasons the thresholds were crossed (empty: no alarm)."""
        return list(self.summary["alarms"])


def _evidently_frame(frame: pd.DataFrame, profiles: dict[str, ColumnProfile]) -> pd.DataFrame:
    typed = typed_frame(frame, profiles)
    for name, prof in profiles.items():
        if prof.kind == "categorical" and name in typed:
            typed[name] = typed[name].astype(object).where(typed[name].notna(), None)
    return typed


def _drift_by_column(snapshot: Snapshot) -> dict[str, dict[str, Any]]:
    """Per-column score, method, threshold and verdict, read from Evidently's own tests."""
    out: dict[str, dict[str, Any]] = {}
    data = snapshot.dict()
    for metric in data["metrics"]:
        config = metric["config"]
        if config.get("type") == "evidently:metric_v2:ValueDrift":
            out[config["column"]] = {
                "method": config.get("method"),
                "threshold": config.get("threshold"),
                "score": float(metric["value"]),
                "drifted": False,
            }
    for test in data["tests"]:
        params = test.get("metric_config", {}).get("params", {})
        if params.get("type") == "evidently:metric_v2:ValueDrift" and params["column"] in out:
            out[params["column"]]["drifted"] = test["status"] == "FAIL"
    return out


def _metrics(
    tested: list[str], profiles: dict[str, ColumnProfile], params: MonitoringParams
) -> list[Any]:
    """Evidently metrics: the drifted-columns count, one drift test per column with the
    method of its type, and data-quality counts. Evidently's DataDriftPreset and
    DataSummaryPreset draw every plot twice or more (about 0.2 s per column each); these
    metrics give the same tests and numbers in a third of the time. `summary_preset` adds
    the full per-column statistics."""
    d = params.drift
    features = [c for c in tested if c != PREDICTION]

    def method(column: str) -> tuple[str, float]:
        if column == PREDICTION:
            return d.num_method, d.prediction_threshold
        if profiles[column].kind == "numerical":
            return d.num_method, d.num_threshold
        return d.cat_method, d.cat_threshold

    per_method = {c: method(c)[0] for c in features}
    per_threshold = {c: method(c)[1] for c in features}
    metrics: list[Any] = []
    if features:
        metrics.append(
            DriftedColumnsCount(
                columns=features,
                per_column_method=per_method,
                per_column_threshold=per_threshold,
                drift_share=d.drift_share,
            )
        )
    metrics += [ValueDrift(column=c, method=method(c)[0], threshold=method(c)[1]) for c in tested]
    metrics += [
        RowCount(),
        ColumnCount(),
        DatasetMissingValueCount(),
        EmptyColumnsCount(),
        ConstantColumnsCount(),
    ]
    metrics += [MissingValueCount(column=c) for c in tested]
    if params.summary_preset and tested:
        metrics.append(DataSummaryPreset(columns=tested))
    return metrics


def drift_check(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    features: list[str],
    params: MonitoringParams,
    model: str,
    context: dict[str, Any] | None = None,
    timestamp: datetime | None = None,
    history_days: int | None = None,
) -> DriftResult:
    """Compare `current` with `reference` on `features` and the prediction column.

    Data quality is profiled on all rows; the Evidently drift report runs on at most
    `params.sample_rows` rows per side. Alarms (see the summary's `alarms`) when the share of
    drifted features reaches `drift.drift_share`, a key feature or the prediction drifts, or
    a feature is broken (missing, empty, constant, unparseable) or shows unseen categories or
    more missing values beyond the quality thresholds. Features whose distribution moves
    between score dates by construction (`features.names.moving_features`: tenure, lifetime
    counts, the calendar, and counts over windows longer than `history_days`, the data's
    history at the reference date) get the quality checks but no drift test; the summary's
    `left_out` says why."""
    absent = [f for f in features if f not in reference]
    if absent:
        raise ValueError(f"reference data has no column(s) {absent} for the {model} model")
    columns = list(features) + ([PREDICTION] if PREDICTION in reference else [])
    profiles = profile_columns(reference, current, columns, params.quality)
    ref_sample, ref_info = sample_rows(reference, params.sample_rows, params.seed)
    cur_sample, cur_info = sample_rows(current, params.sample_rows, params.seed + 1)
    moving = moving_features(features, history_days)
    tested = [c for c in columns if profiles[c].testable and c not in moving]
    numerical = [c for c in tested if profiles[c].kind == "numerical"]
    categorical = [c for c in tested if profiles[c].kind == "categorical"]
    definition = DataDefinition(numerical_columns=numerical, categorical_columns=categorical)
    report = Report(_metrics(tested, profiles, params), include_tests=True)
    with warnings.catch_warnings():
        # Evidently divides by zero on constant columns and says so; the summary says it better.
        warnings.simplefilter("ignore", RuntimeWarning)
        snapshot = report.run(
            Dataset.from_pandas(_evidently_frame(cur_sample, profiles), data_definition=definition),
            Dataset.from_pandas(_evidently_frame(ref_sample, profiles), data_definition=definition),
            timestamp=timestamp,
            tags=[model],
            metadata={"model": model},
            name=f"{model} drift",
        )
    drift = _drift_by_column(snapshot) if tested else {}
    summary = _summary(model, features, profiles, drift, params, context or {})
    summary["left_out"] = moving
    summary["sample"] = {"reference": ref_info.as_dict(), "current": cur_info.as_dict()}
    summary["sampled"] = ref_info.sampled or cur_info.sampled
    return DriftResult(snapshot, summary)


def _summary(
    model: str,
    features: list[str],
    profiles: dict[str, ColumnProfile],
    drift: dict[str, dict[str, Any]],
    params: MonitoringParams,
    context: dict[str, Any],
) -> dict[str, Any]:
    per_feature = {
        name: {**profiles[name].as_dict(), "drift": drift.get(name)} for name in features
    }
    tested = [f for f in features if f in drift]
    drifted = [f for f in tested if drift[f]["drifted"]]
    share = len(drifted) / len(tested) if tested else 0.0
    issues = {c: p.issues for c, p in profiles.items() if p.issues}
    both_empty = [
        f
        for f in features
        if profiles[f].present
        and profiles[f].missing_reference == 1.0
        and profiles[f].missing_current == 1.0
    ]
    prediction = drift.get(PREDICTION)
    alarms: list[str] = []
    if tested and share >= params.drift.drift_share:
        alarms.append(
            f"{model}: {len(drifted)} of {len(tested)} features drifted ({share:.0%} >= "
            f"{params.drift.drift_share:.0%}): {', '.join(drifted)}"
        )
    key = [f for f in params.drift.key_features if f in drifted]
    if key:
        alarms.append(f"{model}: key features drifted: {', '.join(key)}")
    if prediction is not None and prediction["drifted"]:
        alarms.append(
            f"{model}: prediction drifted ({prediction['method']} {prediction['score']:.3f} "
            f">= {prediction['threshold']})"
        )
    q = params.quality
    for name, found in issues.items():
        broken = profiles[name].broken
        if broken and not q.alarm_on_broken_columns:
            continue
        alarms.append(f"{model}: feature {name}: {'; '.join(found)}")
    return {
        "model": model,
        "status": "alarm" if alarms else "ok",
        "alarms": alarms,
        "features_total": len(features),
        "features_tested": len(tested),
        "drifted_features": drifted,
        "drift_share": round(share, 4),
        "prediction": prediction,
        "quality_issues": issues,
        "empty_in_both": both_empty,
        "not_tested": [f for f in features if f not in drift and not profiles[f].testable],
        "features": per_feature,
        "thresholds": params.model_dump(include={"drift", "quality", "sample_rows"}),
        **context,
    }


def write_drift(
    result: DriftResult, html: Path, summary: Path, evidently: Path
) -> tuple[Path, Path]:
    """The drift page, the JSON summary and Evidently's full report
    (`Workspace.drift_report`, `Workspace.drift_evidently`), each published atomically;
    returns the page's and the summary's paths."""
    import json

    from monitoring.pages import drift_page
    from training.pages import publish

    evidently.parent.mkdir(parents=True, exist_ok=True)
    partial = evidently.with_name(f".{evidently.name}.tmp")
    result.snapshot.save_html(str(partial))
    partial.replace(evidently)
    publish(json.dumps(result.summary, indent=2, default=str), summary)
    publish(drift_page(result.summary, evidently.name), html)
    return html, summary
