"""`crmscore monitor ...`: drift reports, delayed-label backtests, campaign uplift and the
monitoring dashboard. Exit codes: 0 ok, 1 thresholds crossed, 2 bad input."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import typer

from crmscore.settings import Settings, SettingsError, load_settings

monitor_app = typer.Typer(
    help="Drift reports, backtests, campaign uplift and the monitoring dashboard.",
    no_args_is_help=True,
)


def _settings(ctx: typer.Context) -> Settings:
    state = ctx.obj
    try:
        return load_settings(
            getattr(state, "workspace", None),
            getattr(state, "config_dir", None),
            getattr(state, "dataset", None),
        )
    except SettingsError as exc:
        _fail(str(exc))
        raise


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=2)


def _echo(data: dict[str, Any]) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


def _date(value: str, option: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        _fail(f"{option} {value}: expected a date YYYY-MM-DD")
        raise


def monitoring_dir(settings: Settings) -> Path:
    """Where monitoring writes reports, the decision file and the Evidently workspace."""
    return settings.workspace / "monitoring"


def decision_path(settings: Settings) -> Path:
    """The retrain decision file that `crmscore retrain --if-recommended` reads."""
    from monitoring.decision import DECISION_FILE

    return monitoring_dir(settings) / DECISION_FILE


def _client(settings: Settings) -> Any:
    from serving.registry import configure, default_tracking_uri

    return configure(settings.mlflow_tracking_uri or default_tracking_uri(settings.paths))


def _latest_scores(folder: Path, when: str | None) -> Path:
    files = sorted(folder.glob(f"scores_{when or '*'}.parquet"))
    if not files:
        _fail(
            f"{folder}: no batch scores{f' for {when}' if when else ''}; run "
            "`crmscore score batch --as-of DATE` or give --from/--to for the prediction log"
        )
    return files[-1]


ModelsOption = Annotated[
    list[str] | None,
    typer.Option("--model", help="churn, clv or nbo; repeatable; default: monitoring.models."),
]


@monitor_app.command("drift")
def drift(
    ctx: typer.Context,
    model: ModelsOption = None,
    scores: Annotated[
        str | None,
        typer.Option(help="Date of the batch scores to check (default: the latest)."),
    ] = None,
    start: Annotated[
        str | None, typer.Option("--from", help="Prediction log: first day (YYYY-MM-DD).")
    ] = None,
    end: Annotated[
        str | None, typer.Option("--to", help="Prediction log: last day (default: --from).")
    ] = None,
    alias: Annotated[
        str | None,
        typer.Option(help="Reference of this alias instead of the version that scored the data."),
    ] = None,
    dashboard: Annotated[
        bool, typer.Option(help="Also store the snapshot in the Evidently workspace.")
    ] = True,
    exit_zero: Annotated[
        bool, typer.Option("--exit-zero", help="Exit 0 even when thresholds are crossed.")
    ] = False,
) -> None:
    """Evidently drift and data-quality report of current data against each model's reference
    (HTML + JSON summary); exits 1 when thresholds are crossed."""
    from monitoring.current import (
        CurrentData,
        batch_current,
        log_current,
        scores_model_version,
    )
    from monitoring.dashboard import add_snapshot
    from monitoring.decision import record_check
    from monitoring.drift import drift_check, write_drift
    from monitoring.reference import ReferenceError, load_reference

    settings = _settings(ctx)
    params = settings.monitoring
    kinds = model or params.models
    unknown = [k for k in kinds if k not in ("churn", "clv", "nbo")]
    if unknown:
        _fail(f"--model: {unknown} unknown; expected churn, clv or nbo")
    if end and not start:
        _fail("--to needs --from")
    client = _client(settings)
    salt = settings.id_salt.get_secret_value()
    out_dir = monitoring_dir(settings) / "drift"
    results, alarmed = [], False
    for kind in kinds:
        try:
            with contextlib.redirect_stdout(sys.stderr):
                current: CurrentData | None = None
                if start:
                    first = _date(start, "--from")
                    last = _date(end, "--to") if end else first
                    current = log_current(
                        settings.workspace / "predictions", first, last, kind, salt
                    )
                    scored_by = current.model_version
                else:
                    path = _latest_scores(settings.workspace / "scores", scores)
                    scored_by = scores_model_version(path, kind)
                reference = load_reference(
                    client,
                    kind,
                    version=None if alias else scored_by,
                    alias=alias or params.reference_alias,
                )
                if current is None:
                    current = batch_current(
                        path, settings.snapshot_dir, kind, reference.features, salt
                    )
                    label = f"scores_{current.info['as_of']}"
                else:
                    label = f"log_{current.info['from']}_{current.info['to']}"
                result = drift_check(
                    reference.frame,
                    current.frame,
                    reference.features,
                    params,
                    kind,
                    context={"reference": reference.describe(), "current": current.info},
                )
                html, summary = write_drift(result, out_dir, f"{kind}_{label}")
                snapshot_id = (
                    add_snapshot(monitoring_dir(settings) / "evidently", kind, result.snapshot)
                    if dashboard
                    else None
                )
        except (ReferenceError, FileNotFoundError, ValueError) as exc:
            _fail(str(exc))
        decision = record_check(
            decision_path(settings),
            "drift",
            kind,
            result.alarms,
            {"summary": str(summary), "report": str(html)},
        )
        alarmed = alarmed or bool(result.alarms)
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
    _echo(
        {
            "models": results,
            "decision": decision.status,
            "decision_file": str(decision_path(settings)),
            "open": f"file://{results[0]['report']}" if results else None,
        }
    )
    if alarmed and not exit_zero:
        raise typer.Exit(code=1)


@monitor_app.command("ui")
def ui(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    print_only: Annotated[
        bool, typer.Option("--print-only", help="Print the command instead of running it.")
    ] = False,
) -> None:
    """Evidently's UI on the monitoring workspace: drift and quality over time per model."""
    settings = _settings(ctx)
    folder = monitoring_dir(settings) / "evidently"
    command = [
        sys.executable,
        "-m",
        "evidently.cli",
        "ui",
        "--workspace",
        str(folder),
        "--host",
        host,
        "--port",
        str(port),
    ]
    if not folder.exists():
        _fail(f"{folder}: no monitoring snapshots yet; run `crmscore monitor drift` first")
    if print_only:
        typer.echo(" ".join(command))
        return
    typer.echo(f"Evidently UI on http://{host}:{port} (workspace {folder}); Ctrl-C stops it")
    raise typer.Exit(code=subprocess.call(command))


def _model_metrics(client: Any, kind: str, version: str | None) -> dict[str, float]:
    """Evaluation-time metrics of the registered version that produced the scores."""
    from training.tracking import MODEL_NAMES

    if not version:
        return {}
    number = str(version).partition("@")[0]
    run_id = client.get_model_version(MODEL_NAMES[kind], number).run_id
    return dict(client.get_run(run_id).data.metrics)


@monitor_app.command("backtest")
def backtest(ctx: typer.Context, model: ModelsOption = None) -> None:
    """Realised quality of every earlier batch-scores file whose horizon has passed, against
    the figures from evaluation time; exits 1 when the latest matured snapshot degraded."""
    import pandas as pd

    from monitoring.backtest import degradation, labels_at, realised_quality
    from monitoring.current import scores_model_version
    from monitoring.decision import record_check

    settings = _settings(ctx)
    params = settings.monitoring.backtest
    kinds = model or ["churn", "clv", "nbo"]
    files = sorted((settings.workspace / "scores").glob("scores_*.parquet"))
    if not files:
        _fail(f"{settings.workspace / 'scores'}: no batch scores to backtest")
    client = _client(settings)
    rows: list[dict[str, Any]] = []
    latest: dict[str, list[str]] = {}
    for path in files:
        scores = pd.read_parquet(path)
        as_of = pd.Timestamp(scores["as_of"].iloc[0])
        for kind in kinds:
            try:
                labels = labels_at(settings.snapshot_dir, kind, as_of)
                outcome = realised_quality(kind, scores, labels, params.top_k)
                version = scores_model_version(path, kind)
                evaluation = _model_metrics(client, kind, version) if outcome else {}
            except (FileNotFoundError, ValueError) as exc:
                _fail(str(exc))
            if outcome is None:
                rows.append({"model": kind, "as_of": str(as_of.date()), "status": "pending"})
                continue
            table, reasons = degradation(outcome, evaluation, params)
            latest[kind] = reasons
            rows.append(
                {
                    "model": kind,
                    "as_of": outcome.as_of,
                    "status": "degraded" if reasons else "ok",
                    "model_version": version,
                    "rows": outcome.rows,
                    "metrics": table,
                    "reasons": reasons,
                }
            )
    out = monitoring_dir(settings) / "backtest.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=2, default=str))
    decision = None
    for kind, reasons in latest.items():
        decision = record_check(decision_path(settings), "backtest", kind, reasons, {})
    _echo(
        {
            "snapshots": rows,
            "report": str(out),
            "decision": decision.status if decision else None,
        }
    )
    if any(latest.values()):
        raise typer.Exit(code=1)


@monitor_app.command("uplift")
def uplift(
    ctx: typer.Context,
    targets: Annotated[Path, typer.Option(help="A target list CSV from `crmscore target`.")],
) -> None:
    """Incremental retention and revenue of contacted customers against the control group,
    with confidence intervals, once the outcome horizons have passed."""
    import pandas as pd

    from features.labels import CHURN, CLV
    from monitoring.backtest import labels_at
    from monitoring.uplift import campaign_uplift

    settings = _settings(ctx)
    params = settings.monitoring.uplift
    if not targets.exists():
        _fail(f"{targets}: no such target list")
    listed = pd.read_csv(targets, dtype={"customer_id": str})
    for needed in ("customer_id", "group"):
        if needed not in listed:
            _fail(f"{targets}: column '{needed}' missing (expected a `crmscore target` list)")
    stem = targets.stem.rsplit("_", 1)[-1]
    try:
        as_of = pd.Timestamp(stem, tz="UTC")
        churn = labels_at(settings.snapshot_dir, "churn", as_of)
        clv = labels_at(settings.snapshot_dir, "clv", as_of)
    except ValueError as exc:
        _fail(f"{targets}: {exc} (expected targets_<objective>_<YYYY-MM-DD>.csv)")
    except FileNotFoundError as exc:
        _fail(str(exc))
    if churn.empty or clv.empty:
        _fail(
            f"no outcomes for {as_of.date()} yet: the horizons (churn "
            f"{settings.labels.churn_horizon_days} d, revenue {settings.labels.clv_horizon_days}"
            " d) have not passed, or `crmscore features build` has not run since"
        )
    retained = 1 - churn.set_index("customer_id")[CHURN].astype(float)
    revenue = clv.set_index("customer_id")[CLV].astype(float)
    # Customers outside the label population (inactive at the list date) are left out of both
    # groups: that depends only on the past, so the random split stays valid.
    known = listed["customer_id"].isin(retained.index) & listed["customer_id"].isin(revenue.index)
    try:
        result = campaign_uplift(
            listed[known], retained, revenue, params.confidence, params.bootstrap, params.seed
        )
    except ValueError as exc:
        _fail(f"{targets}: {exc}")
    result |= {"targets": str(targets), "as_of": str(as_of.date()), "excluded": int((~known).sum())}
    out = monitoring_dir(settings) / f"uplift_{targets.stem}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str))
    _echo({**result, "report": str(out)})
