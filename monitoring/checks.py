"""The monitoring checks as plain functions: drift, backtest and uplift over a workspace.

Each takes the workspace (`features.catalog.Workspace`), an MLflow client where it reads the
registry, its parameters and options; it writes its reports and its entry of the retrain
decision, and returns a plain result. Bad input raises ValueError or FileNotFoundError (and
`monitoring.reference.ReferenceError`, a ValueError) with a message naming what is wrong.
`crmscore monitor ...` parses options, calls one of these and prints the result."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd

from features.catalog import Workspace
from features.config import LabelParams
from features.labels import active_by_recency
from features.model_spec import MODEL_KINDS, check_kinds, model_spec
from features.snapshots import history_days
from monitoring.backtest import degradation, joined_outcomes, labels_at, realised_quality
from monitoring.config import BacktestParams, MonitoringParams, UpliftParams
from monitoring.current import CurrentData, batch_current, log_current, scores_model_version
from monitoring.decision import Decision, record_check
from monitoring.uplift import campaign_uplift


@dataclass(frozen=True)
class DriftRun:
    """What a drift check found, per model, and the retrain decision after it."""

    models: list[dict[str, Any]]
    decision: Decision | None
    decision_file: Path

    @property
    def alarmed(self) -> bool:
        """True when a threshold was crossed for some model."""
        return any(m["alarms"] for m in self.models)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (what `crmscore monitor drift` prints)."""
        return {
            "models": self.models,
            "decision": self.decision.status if self.decision else None,
            "decision_file": str(self.decision_file),
            "open": f"file://{self.models[0]['report']}" if self.models else None,
        }


@dataclass(frozen=True)
class BacktestRun:
    """Realised quality of every scored snapshot, and the retrain decision after it."""

    snapshots: list[dict[str, Any]]
    report: Path
    decision: Decision | None
    # The reasons of each model's latest matured snapshot (empty: not degraded).
    latest: dict[str, list[str]] = field(default_factory=dict)
    page: Path | None = None

    @property
    def degraded(self) -> bool:
        """True when the latest matured snapshot of some model degraded."""
        return any(self.latest.values())

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (what `crmscore monitor backtest` prints)."""
        return {
            "snapshots": self.snapshots,
            "report": str(self.report),
            "page": str(self.page) if self.page else None,
            "decision": self.decision.status if self.decision else None,
        }


def latest_scores(paths: Workspace, as_of: str | None = None) -> Path:
    """The latest batch-scores file (of `as_of`, YYYY-MM-DD, when given)."""
    files = paths.scores_files(as_of)
    if not files:
        raise FileNotFoundError(
            f"{paths.scores_dir}: no batch scores{f' for {as_of}' if as_of else ''}; run "
            "`crmscore score batch --as-of DATE` or give --from/--to for the prediction log"
        )
    return files[-1]


def in_population(
    frame: pd.DataFrame, active_window_days: int | None
) -> tuple[pd.DataFrame, dict[str, Any] | None]:
    """The rows of the models' population (`features.labels.active_by_recency`) and what was
    left out; the frame unchanged and None without a window or a recency column."""
    if active_window_days is None:
        return frame, None
    keep = active_by_recency(frame, active_window_days)
    if keep is None:
        return frame, None
    rule = (
        f"customers with a purchase in the {active_window_days} days before the score date "
        "(the ones the models are trained and tested on)"
    )
    kept = frame[keep.to_numpy()].reset_index(drop=True)
    return kept, {"rule": rule, "left_out": int((~keep).sum())}


def run_drift(
    paths: Workspace,
    client: Any,
    params: MonitoringParams,
    kinds: list[str] | None = None,
    *,
    scores: str | None = None,
    start: date | None = None,
    end: date | None = None,
    alias: str | None = None,
    dashboard: bool = True,
    salt: str = "",
    active_window_days: int | None = None,
) -> DriftRun:
    """Evidently drift and data-quality report of current data against each model's
    reference (`params.models` when `kinds` is None).

    Current data: the prediction log over [start, end] (end defaults to start) when `start`
    is given, else the batch scores of `scores` (a date; default the latest). The reference is
    that of the model version that scored the current data, or `alias`'s when given. With
    `active_window_days` (labels.active_window_days), rows outside the models' population
    (no purchase in that window: never in a reference) are left out, the current ones counted.
    Writes the drift page, JSON summary and Evidently report, the dashboard snapshot
    (`dashboard`) and the decision entry of each model."""
    from monitoring.dashboard import add_snapshot
    from monitoring.drift import drift_check, write_drift
    from monitoring.reference import load_reference

    kinds = check_kinds(params.models if kinds is None else kinds)
    if end is not None and start is None:
        raise ValueError("--to needs --from")
    results: list[dict[str, Any]] = []
    decision = None
    for kind in kinds:
        current: CurrentData | None = None
        if start is not None:
            current = log_current(paths, start, end or start, kind, salt)
            scored_by = current.model_version
        else:
            path = latest_scores(paths, scores)
            scored_by = scores_model_version(path, kind)
        reference = load_reference(
            client,
            kind,
            version=None if alias else scored_by,
            alias=alias or params.reference_alias,
        )
        if current is None:
            current = batch_current(path, paths, kind, reference.features, salt)
            label = f"scores_{current.info['as_of']}"
        else:
            label = f"log_{current.info['from']}_{current.info['to']}"
        # Both sides in the models' population (a real reference is already: its test rows).
        frame, population = in_population(current.frame, active_window_days)
        reference_rows, _ = in_population(reference.frame, active_window_days)
        reference_date = reference.describe()["as_of"]
        history = history_days(paths, pd.Timestamp(reference_date)) if reference_date else None
        result = drift_check(
            reference_rows,
            frame,
            reference.features,
            params,
            kind,
            context={
                "reference": reference.describe(),
                "current": current.info,
                "population": population,
            },
            history_days=history,
        )
        html, summary = write_drift(
            result, *paths.drift_report(kind, label), paths.drift_evidently(kind, label)
        )
        snapshot_id = (
            add_snapshot(paths.evidently_dir, kind, result.snapshot) if dashboard else None
        )
        decision = record_check(
            paths.decision_file,
            "drift",
            kind,
            result.alarms,
            {"summary": str(summary), "report": str(html)},
        )
        results.append(
            {
                "model": kind,
                "status": result.summary["status"],
                "alarms": result.alarms,
                "drifted_features": result.summary["drifted_features"],
                "sampled": result.summary["sampled"],
                "report": str(html),
                "summary": str(summary),
                "dashboard_snapshot": snapshot_id,
            }
        )
    return DriftRun(results, decision, paths.decision_file)


def evaluation_run(client: Any, kind: str, version: str | None) -> tuple[dict[str, float], str]:
    """Evaluation-time metrics of the registered version ("3" or "3@champion") that produced
    the scores, and the date of its test customers (the run's test cutoff); empty when the
    version is unknown."""
    if not version:
        return {}, ""
    number = str(version).partition("@")[0]
    run_id = client.get_model_version(model_spec(kind).registry_name, number).run_id
    data = client.get_run(run_id).data
    return dict(data.metrics), str(data.tags.get("test_cutoff", ""))


def _shown(path: Path) -> dict[tuple[str, str, str], str]:
    """The dashboard snapshots earlier backtests stored, by (model, score date, version)."""
    try:
        rows = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {
        (r["model"], r["as_of"], str(r.get("model_version"))): r["dashboard_snapshot"]
        for r in rows
        if isinstance(r, dict) and r.get("dashboard_snapshot")
    }


def run_backtest(
    paths: Workspace,
    client: Any,
    params: BacktestParams,
    top_k: int,
    kinds: list[str] | None = None,
    dashboard: bool = True,
) -> BacktestRun:
    """Realised quality of every batch-scores file whose horizon has passed against the
    figures from evaluation time (every model kind when `kinds` is None). `top_k`: the offers
    per customer `hit@k` counts (training.nbo.top_k). Writes the backtest JSON and page, the
    decision entry of each model with a matured snapshot and (`dashboard`) one Evidently
    snapshot per matured churn and CLV snapshot, once."""
    from monitoring.dashboard import add_snapshot, backtest_snapshot
    from monitoring.pages import backtest_page
    from training.pages import publish

    kinds = check_kinds(MODEL_KINDS if kinds is None else kinds)
    files = paths.scores_files()
    if not files:
        raise FileNotFoundError(f"{paths.scores_dir}: no batch scores to backtest")
    shown = _shown(paths.backtest_file)
    rows: list[dict[str, Any]] = []
    latest: dict[str, list[str]] = {}
    for path in files:
        scores = pd.read_parquet(path)
        as_of = pd.Timestamp(scores["as_of"].iloc[0])
        for kind in kinds:
            if model_spec(kind).prediction_column not in scores:
                # Not scored in this file (no offer model: data without products).
                rows.append({"model": kind, "as_of": str(as_of.date()), "status": "not scored"})
                continue
            labels = labels_at(paths, kind, as_of)
            outcome = realised_quality(kind, scores, labels, top_k)
            version = scores_model_version(path, kind)
            if outcome is None:
                rows.append({"model": kind, "as_of": str(as_of.date()), "status": "pending"})
                continue
            evaluation, evaluated_on = evaluation_run(client, kind, version)
            table, reasons = degradation(outcome, evaluation, params)
            latest[kind] = reasons
            snapshot_id = shown.get((kind, outcome.as_of, str(version)))
            if dashboard and snapshot_id is None:
                found = backtest_snapshot(
                    kind, joined_outcomes(kind, scores, labels), as_of.to_pydatetime()
                )
                if found is not None:
                    snapshot_id = add_snapshot(paths.evidently_dir, kind, found)
            rows.append(
                {
                    "model": kind,
                    "as_of": outcome.as_of,
                    "status": "degraded" if reasons else "ok",
                    "model_version": version,
                    "evaluated_on": evaluated_on,
                    "rows": outcome.rows,
                    "metrics": table,
                    "reasons": reasons,
                    "dashboard_snapshot": snapshot_id,
                }
            )
    out = publish(json.dumps(rows, indent=2, default=str), paths.backtest_file)
    publish(backtest_page(rows), paths.backtest_page)
    decision = None
    for kind, reasons in latest.items():
        decision = record_check(paths.decision_file, "backtest", kind, reasons, {})
    return BacktestRun(rows, out, decision, latest, paths.backtest_page)


def run_uplift(
    paths: Workspace, targets: Path, params: UpliftParams, labels: LabelParams
) -> dict[str, Any]:
    """Incremental retention and revenue of the contacted customers of a target list against
    its control group, once the outcome horizons (`labels`) have passed. Writes the uplift
    report; returns the result with the report's path."""
    if not targets.exists():
        raise FileNotFoundError(f"{targets}: no such target list")
    listed = pd.read_csv(targets, dtype={"customer_id": str})
    for needed in ("customer_id", "group"):
        if needed not in listed:
            raise ValueError(
                f"{targets}: column '{needed}' missing (expected a `crmscore target` list)"
            )
    try:
        as_of = pd.Timestamp(Workspace.scores_date(targets), tz="UTC")
        churn = labels_at(paths, "churn", as_of)
        clv = labels_at(paths, "clv", as_of)
    except ValueError as exc:
        raise ValueError(
            f"{targets}: {exc} (expected a `crmscore target` list: "
            "targets_<objective>_budget<N>_control<share>_seed<N>_<YYYY-MM-DD>.csv)"
        ) from exc
    if churn.empty or clv.empty:
        raise ValueError(
            f"no outcomes for {as_of.date()} yet: the horizons (churn "
            f"{labels.churn_horizon_days} d, revenue {labels.clv_horizon_days}"
            " d) have not passed, or `crmscore features build` has not run since"
        )
    retained = 1 - churn.set_index("customer_id")[model_spec("churn").target].astype(float)
    revenue = clv.set_index("customer_id")[model_spec("clv").target].astype(float)
    # Customers outside the label population (inactive at the list date) are left out of both
    # groups: that depends only on the past, so the random split stays valid.
    known = listed["customer_id"].isin(retained.index) & listed["customer_id"].isin(revenue.index)
    try:
        result = campaign_uplift(
            listed[known], retained, revenue, params.confidence, params.bootstrap, params.seed
        )
    except ValueError as exc:
        raise ValueError(f"{targets}: {exc}") from exc
    result |= {"targets": str(targets), "as_of": str(as_of.date()), "excluded": int((~known).sum())}
    out = paths.uplift_file(targets)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str))
    return {**result, "report": str(out)}
