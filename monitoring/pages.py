"""The drift and backtest pages: a header with the model, versions, the reference and
current dates and the verdict with its reasons, then the findings per feature or metric.
Rendered from `monitoring/templates/` (`training.pages`)."""

from __future__ import annotations

from typing import Any

from features.model_spec import model_spec
from features.names import ALL_FEATURES
from training.metrics import explain
from training.pages import render

OK_WORDS = "OK: no retraining needed"
RETRAIN_WORDS = "Retrain recommended"


def _without_model(reason: str, model: str) -> str:
    return reason.removeprefix(f"{model}: ")


def drift_verdict(summary: dict[str, Any]) -> tuple[str, list[str]]:
    """The verdict sentence of a drift summary and the reasons behind it (the alarms, or
    why everything is within the thresholds)."""
    model = summary["model"]
    if summary["alarms"]:
        return RETRAIN_WORDS, [_without_model(a, model) for a in summary["alarms"]]
    thresholds = summary["thresholds"]["drift"]
    reasons = [
        f"{len(summary['drifted_features'])} of {summary['features_tested']} features tested "
        f"moved beyond their thresholds ({summary['drift_share']:.0%}; an alarm needs "
        f"{thresholds['drift_share']:.0%})"
    ]
    prediction = summary.get("prediction")
    if prediction:
        reasons.append(
            f"the prediction moved by {prediction['score']:.3f} ({prediction['method']}; an "
            f"alarm needs {prediction['threshold']})"
        )
    reasons.append("no data-quality alarm")
    return OK_WORDS, reasons


def _feature_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for name, found in summary["features"].items():
        drift = found.get("drift") or {}
        rows.append(
            {
                "name": name,
                "words": ALL_FEATURES[name].description if name in ALL_FEATURES else "",
                "method": drift.get("method"),
                "score": drift.get("score"),
                "threshold": drift.get("threshold"),
                "drifted": bool(drift.get("drifted")),
                "missing": (found["missing_reference"], found["missing_current"]),
                "issues": found["issues"],
            }
        )
    # Drifted and broken first, then by distance over threshold.
    return sorted(
        rows,
        key=lambda r: (
            not (r["drifted"] or r["issues"]),
            -(r["score"] or 0) / (r["threshold"] or 1),
        ),
    )


def drift_page(summary: dict[str, Any], evidently_report: str) -> str:
    """The drift page of one model's summary (`monitoring.drift`); `evidently_report`: the
    file name of Evidently's full report beside it."""
    verdict, reasons = drift_verdict(summary)
    model = summary["model"]
    unknown = {"version": None, "alias": None, "as_of": None, "rows": None}
    reference = {
        "registered_model": model_spec(model).registry_name,
        **unknown,
        **summary.get("reference", {}),
    }
    current = {"model_version": None, "rows": None, **summary.get("current", {})}
    if current.get("source") == "prediction_log":
        current_text = f"API answers logged from {current['from']} to {current['to']}"
    else:
        current_text = f"batch scores of {current.get('as_of', 'unknown date')}"
    return render(
        "monitoring",
        "drift.html",
        model=model,
        status=summary["status"],
        verdict=verdict,
        reasons=reasons,
        reference=reference,
        current=current,
        current_text=current_text,
        population=summary.get("population"),
        left_out=summary.get("left_out", {}),
        not_tested=summary.get("not_tested", []),
        features=_feature_rows(summary),
        evidently_report=evidently_report,
    )


def backtest_verdict(row: dict[str, Any]) -> tuple[str, list[str]]:
    """The verdict of one matured snapshot's backtest and its reasons."""
    model = row["model"]
    if row.get("reasons"):
        return RETRAIN_WORDS, [_without_model(r, model) for r in row["reasons"]]
    kept = [
        f"realised {name} {figures['realised']:.4f} against {figures['evaluation']:.4f} at "
        "evaluation, within the margin"
        for name, figures in row["metrics"].items()
        if figures.get("realised") is not None and figures.get("evaluation") is not None
    ]
    return OK_WORDS, kept


def backtest_page(rows: list[dict[str, Any]]) -> str:
    """The backtest page: per model, the latest matured snapshot's verdict in a header,
    then every scored snapshot (matured or pending) with its figures."""
    models = []
    for kind in dict.fromkeys(r["model"] for r in rows):
        own = [r for r in rows if r["model"] == kind]
        matured = [r for r in own if r["status"] in ("ok", "degraded")]
        latest = matured[-1] if matured else None
        verdict, reasons = backtest_verdict(latest) if latest else ("Waiting for outcomes", [])
        models.append(
            {
                "kind": kind,
                "registry_name": model_spec(kind).registry_name,
                "latest": latest,
                "status": "none" if latest is None else latest["status"],
                "verdict": verdict,
                "reasons": reasons,
                "rows": own,
            }
        )
    names = {n for r in rows for n in r.get("metrics", {})}
    return render(
        "monitoring",
        "backtest.html",
        models=models,
        explanations={n: explain(n) for n in sorted(names)},
    )
