"""One function per pipeline step, from crmscore's settings to a JSON-ready summary.

Each unpacks `Settings` (workspace, parameters, MLflow store) and calls the package function
that does the work; the command line and the demo both call these. Errors are raised with
their message (ValueError, FileNotFoundError and their kinds): the caller decides how to
report them. Each logs a line per stage with its elapsed time (features.progress); what
libraries print goes to the log (crmscore.logs), so that stdout carries only the answer."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crmscore.logs import libraries_to_log
from features.model_spec import MODEL_KINDS, MODEL_SPECS, check_kinds
from features.progress import stage

if TYPE_CHECKING:
    from crmscore.settings import Settings
    from monitoring.checks import BacktestRun, DriftRun
    from monitoring.decision import Decision
    from serving.bootstrap import Launch
    from serving.config import ServiceSettings

log = logging.getLogger(__name__)

# Errors a step reports with their message (anything else is a bug, with its traceback).
# FileExistsError: an output that is never replaced without --force (a target list).
STEP_ERRORS: tuple[type[Exception], ...] = (ValueError, FileNotFoundError, FileExistsError)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """What libraries print on stdout goes to the log file (crmscore.logs), not stdout."""
    with libraries_to_log():
        yield


def _seconds(started: float, digits: int = 1) -> float:
    return round(time.perf_counter() - started, digits)


def tracking_uri(settings: Settings) -> str:
    """The MLflow tracking server / registry: the configured one, else the workspace's."""
    from serving.registry import default_tracking_uri

    return settings.mlflow_tracking_uri or default_tracking_uri(settings.paths)


def mlflow_client(settings: Settings) -> Any:
    """An MLflow client on the settings' store (MLflow configured to use it)."""
    from serving.registry import configure

    return configure(tracking_uri(settings))


def kinds_or_all(kinds: list[str] | None) -> list[str]:
    """The model kinds asked for (checked), or every kind."""
    return check_kinds(kinds or MODEL_KINDS)


def offer_kinds() -> list[str]:
    """The model kinds that rank offers: their feature service reads the offer view."""
    from features.feast_repo import OFFER_VIEW, SERVICE_FEATURES

    return [
        kind
        for kind, spec in MODEL_SPECS.items()
        if OFFER_VIEW in SERVICE_FEATURES.get(spec.feature_service, {})
    ]


def skipped_kinds(settings: Settings, kinds: list[str]) -> dict[str, str]:
    """The kinds among `kinds` that the data cannot train, with the reason in words: the
    offer models when the last feature build found no products."""
    from features.snapshots import offers_skipped

    reason = offers_skipped(settings.paths)
    return dict.fromkeys([k for k in kinds if k in offer_kinds()], reason) if reason else {}


# --- features ------------------------------------------------------------------------------


def ingest(settings: Settings) -> dict[str, Any]:
    """Validate and normalise the dataset's exports into the workspace's canonical tables."""
    from features.ingest import ingest as run_ingest

    started = time.perf_counter()
    report = run_ingest(
        settings.dataset, settings.data_root, settings.paths, settings.features.partitions
    )
    summary = {
        k: report[k]
        for k in (
            "dataset",
            "input_rows",
            "accepted_rows",
            "rejected_rows",
            "rejected_by_reason",
            "duplicate_rows",
            "customers",
            "products",
        )
    }
    if report.get("derived"):
        summary["derived"] = report["derived"]
    summary["seconds"] = _seconds(started)
    summary["report"] = str(settings.paths.ingest_report)
    return summary


def build_features(settings: Settings, add_cutoffs: list[date] | None = None) -> dict[str, Any]:
    """Point-in-time features and labels at every cutoff (`settings.features.cutoffs`, or
    those of the last build and `add_cutoffs`), then the readiness report. The category
    slots stay those of the last build while registered models depend on them."""
    from features.snapshots import build_snapshots, offers_skipped, partitioned_tables

    paths = settings.paths
    started = time.perf_counter()
    metadata = build_snapshots(
        partitioned_tables(paths),
        settings.features,
        settings.labels,
        settings.segments,
        paths,
        add_cutoffs=add_cutoffs or (),
        fixed_slots=fixed_slots(settings),
        engine=settings.engine,
    )
    skipped = offers_skipped(paths)
    ready = readiness(settings)
    return {
        "cutoffs": len(metadata["cutoffs"]),
        "partitions": metadata["partitions"],
        "engine": settings.engine.kind,
        "offer_catalog": metadata["offer_catalog"],
        **({"offers": f"none: {skipped}"} if skipped else {}),
        "rows": metadata["rows"],
        "seconds": _seconds(started),
        "folder": str(paths.snapshot_dir),
        "readiness": str(paths.readiness_report),
        "trainable": [m["model"] for m in ready["models"] if m["ready"]],
    }


def readiness(settings: Settings, kinds: list[str] | None = None) -> dict[str, Any]:
    """What the ingested data and the feature build can train (training.readiness), written
    to the workspace's readiness report and logged in words."""
    from training.readiness import readiness as run_readiness
    from training.readiness import readiness_lines, write_readiness

    with stage(log, "readiness"):
        report = run_readiness(
            settings.paths, settings.labels, settings.training, kinds_or_all(kinds)
        )
        write_readiness(report, settings.paths.readiness_report)
    for line in readiness_lines(report):
        log.info("readiness: %s", line)
    return report


def refuse_unready(report: dict[str, Any], kinds: list[str], path: Path) -> None:
    """ValueError when a model asked for cannot be trained (readiness report), naming why
    and what to run instead."""
    unready = {
        m["model"]: m["reason"] for m in report["models"] if m["model"] in kinds and not m["ready"]
    }
    if not unready:
        return
    ready = [m["model"] for m in report["models"] if m["ready"]]
    why = "; ".join(f"{k}: {reason}" for k, reason in unready.items())
    then = (
        f"train the others: `crmscore train {' '.join(f'--model {k}' for k in ready)}`"
        if ready
        else "bring more customers or a longer history, then `crmscore ingest`"
    )
    raise ValueError(f"too little data to train ({path}): {why}; {then}")


def registered_kinds(settings: Settings) -> list[str]:
    """The model kinds with a registered version (none without an MLflow store)."""
    if settings.mlflow_tracking_uri is None and not settings.paths.mlflow_db.exists():
        return []
    client = mlflow_client(settings)
    with quiet():
        return [
            kind
            for kind, spec in MODEL_SPECS.items()
            if client.search_model_versions(f"name='{spec.registry_name}'", max_results=1)
        ]


def fixed_slots(settings: Settings) -> list[str] | None:
    """The category slots of the last feature build when registered models depend on them;
    None when they are free to change."""
    from features.snapshots import snapshots_meta

    if not settings.paths.snapshots_meta.exists() or not registered_kinds(settings):
        return None
    return list(snapshots_meta(settings.paths).get("category_slots", []))


def latest_cutoff(settings: Settings) -> str:
    """The latest cutoff of the feature snapshots (YYYY-MM-DD)."""
    from features.snapshots import snapshots_meta

    return str(snapshots_meta(settings.paths)["cutoffs"][-1])[:10]


def apply(settings: Settings) -> dict[str, Any]:
    """Register entities, feature views and feature services in the Feast registry."""
    from features.store import apply_repo

    with stage(log, "features apply"), quiet():
        names = apply_repo(settings.feast, settings.paths)
    return {"registry": str(settings.paths.feast_dir), **names}


def materialize(settings: Settings, stock: bool = False) -> dict[str, Any]:
    """Load the latest feature values into the online store (incremental, idempotent)."""
    from features.snapshots import snapshots_meta

    snapshots_meta(settings.paths)  # FileNotFoundError naming `features build` before Feast
    from features.store import materialize as run_materialize

    started = time.perf_counter()
    with stage(log, "features materialize"), quiet():
        result = run_materialize(settings.feast, settings.paths, stock=stock)
    return {**result, "seconds": _seconds(started, 2)}


# --- models --------------------------------------------------------------------------------


def train(settings: Settings, kinds: list[str] | None = None) -> dict[str, Any]:
    """Train and evaluate models against their baselines; register them as @challenger.
    Models the data cannot have are skipped with the reason (`skipped_kinds`); a model
    below the readiness minimums refuses the whole run (`refuse_unready`)."""
    kinds = kinds_or_all(kinds)
    skipped = skipped_kinds(settings, kinds)
    paths = settings.paths
    started = time.perf_counter()
    summaries: list[dict[str, Any]] = []
    trainable = [k for k in kinds if k not in skipped]
    refuse_unready(readiness(settings, trainable), trainable, paths.readiness_report)
    if trainable:
        from crmscore.settings import PROJECT_ROOT
        from features.store import open_store
        from training.tracking import git_commit, settings_json
        from training.train import train_models

        client = mlflow_client(settings)
        with quiet():
            summaries = train_models(
                trainable,
                open_store(settings.feast, paths),
                paths,
                settings.labels,
                settings.training,
                client,
                settings_json(settings),
                git_commit(PROJECT_ROOT),
                settings.id_salt.get_secret_value(),
                settings.dataset.currency or "",
            )
    summaries += [{"model": k, "skipped": reason} for k, reason in skipped.items()]
    order = {k: i for i, k in enumerate(kinds)}
    summaries.sort(key=lambda s: order.get(str(s["model"]), len(order)))
    return {"models": summaries, "seconds": _seconds(started), "reports": str(paths.report_dir)}


def promote(settings: Settings, kinds: list[str] | None = None) -> dict[str, Any]:
    """Move @champion to @challenger where the promotion gate passes."""
    from training.tracking import promote as run_promote

    kinds = kinds_or_all(kinds)
    skipped = skipped_kinds(settings, kinds)
    client = mlflow_client(settings)
    with quiet():
        return {
            "decisions": [
                {
                    "model": k,
                    "promoted": False,
                    "version": None,
                    "reason": f"skipped: {skipped[k]}",
                }
                if k in skipped
                else run_promote(k, settings.training.gate, client).as_dict()
                for k in kinds
            ]
        }


def rollback(settings: Settings, kind: str) -> dict[str, Any]:
    """Put the previous champion back; "promoted" says whether it could."""
    from training.tracking import rollback as run_rollback

    (kind,) = check_kinds([kind])
    with quiet():
        decision: dict[str, Any] = run_rollback(kind, mlflow_client(settings)).as_dict()
    return decision


def retrain_decision(settings: Settings) -> Decision | None:
    """Monitoring's retrain decision (None when monitoring has not written one)."""
    from monitoring.decision import read_decision

    return read_decision(settings.paths.decision_file)


# --- scores --------------------------------------------------------------------------------


def score_batch(settings: Settings, as_of: date) -> dict[str, Any]:
    """Score every customer of the snapshot at `as_of` with the served models."""
    import pandas as pd

    from features.snapshots import offers_skipped, snapshots_meta

    paths = settings.paths
    partitions = int(snapshots_meta(paths).get("partitions", 1))  # `features build` first
    from serving.batch import load_champions
    from serving.batch import score_batch as run_score_batch

    started = time.perf_counter()
    with stage(log, "score batch: load the champion models"), quiet():
        models = load_champions(mlflow_client(settings), offers_skipped(paths))
    with stage(log, f"score batch: score the snapshot of {as_of}"), quiet():
        parquet, csv, rows = run_score_batch(
            pd.Timestamp(as_of),
            settings.feast,
            paths,
            models,
            partitions,
            settings.engine,
            settings.dataset.currency,
        )
    return {
        "customers": rows,
        "partitions": partitions,
        "engine": settings.engine.kind,
        "parquet": str(parquet),
        "csv": str(csv),
        "dictionary": str(paths.dictionary_file(parquet)),
        "model_versions": models.versions,
        **({"offers": f"none: {models.no_offers}"} if models.no_offers else {}),
        "seconds": _seconds(started),
    }


def target(
    settings: Settings,
    objective: str,
    budget: int,
    control: float = 0.1,
    seed: int = 0,
    as_of: str | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """A campaign target list (CSV) and its data dictionary from the latest batch scores (of
    `as_of` when given). An existing list of the same name (objective, budget, control
    share, seed and date) is kept unless `force`."""
    import pandas as pd

    from serving.targets import (
        OBJECTIVE_COLUMNS,
        budget_warnings,
        publish_target_list,
        target_list,
    )

    paths = settings.paths
    if objective not in OBJECTIVE_COLUMNS:
        raise ValueError(f"--objective {objective}: expected one of {sorted(OBJECTIVE_COLUMNS)}")
    files = paths.scores_files(as_of)
    if not files:
        raise FileNotFoundError(
            f"{paths.scores_dir}: no batch scores{f' for {as_of}' if as_of else ''}; run "
            "`crmscore score batch --as-of DATE`"
        )
    scores = pd.read_parquet(files[-1])
    chosen = target_list(scores, objective, budget, control, seed)  # type: ignore[arg-type]
    date = paths.scores_date(files[-1])
    out = paths.targets_file(objective, date, budget, control, seed)
    warnings = budget_warnings(budget, len(scores), date)
    about = {"objective": objective, "budget": budget, "control": control, "seed": seed}
    publish_target_list(chosen, out, files[-1], {**about, "warnings": warnings}, force)
    return {
        "csv": str(out),
        "dictionary": str(paths.dictionary_file(out)),
        "customers": len(chosen),
        "control": int((chosen["group"] == "control").sum()),
        "objective_total": round(float(chosen["objective_value"].sum()), 2),
        "scores": str(files[-1]),
        "warnings": warnings,
    }


# --- monitoring ----------------------------------------------------------------------------


def drift(
    settings: Settings,
    kinds: list[str] | None = None,
    scores: str | None = None,
    start: date | None = None,
    end: date | None = None,
    alias: str | None = None,
    dashboard: bool = True,
) -> DriftRun:
    """Drift and data-quality reports of current data against each model's reference."""
    from monitoring.checks import run_drift

    with stage(log, "monitor drift"), quiet():
        return run_drift(
            settings.paths,
            mlflow_client(settings),
            settings.monitoring,
            kinds,
            scores=scores,
            start=start,
            end=end,
            alias=alias,
            dashboard=dashboard,
            salt=settings.id_salt.get_secret_value(),
            active_window_days=settings.labels.active_window_days,
        )


def backtest(settings: Settings, kinds: list[str] | None = None) -> BacktestRun:
    """Realised quality of earlier batch scores whose horizons have passed."""
    from monitoring.checks import run_backtest

    with stage(log, "monitor backtest"), quiet():
        return run_backtest(
            settings.paths,
            mlflow_client(settings),
            settings.monitoring.backtest,
            settings.training.nbo.top_k,
            kinds,
        )


def uplift(settings: Settings, targets: Path) -> dict[str, Any]:
    """Campaign uplift of a target list against its control group."""
    from monitoring.checks import run_uplift

    return run_uplift(settings.paths, targets, settings.monitoring.uplift, settings.labels)


def dashboard_command(settings: Settings, host: str, port: int) -> list[str]:
    """The command that opens Evidently's UI on the workspace's monitoring snapshots."""
    from monitoring.dashboard import ui_command

    return ui_command(settings.paths.evidently_dir, host, port)


# --- serving -------------------------------------------------------------------------------


def service_settings(settings: Settings) -> ServiceSettings:
    """What the scoring service needs of the settings (written to its own file)."""
    from serving.config import ServiceSettings

    return ServiceSettings(
        workspace=settings.workspace,
        tracking_uri=tracking_uri(settings),
        feast=settings.feast,
        serving=settings.serving,
        currency=settings.dataset.currency,
    )


def serve(
    settings: Settings,
    env: dict[str, str],
    host: str | None = None,
    port: int | None = None,
    new_keys: bool = False,
) -> Launch:
    """Everything to start the scoring API (serving.bootstrap.prepare); ServeError (a
    ValueError) lists what stops it."""
    from serving.bootstrap import prepare

    with quiet():
        return prepare(
            service_settings(settings),
            env,
            settings.id_salt.get_secret_value(),
            host,
            port,
            new_keys,
        )


# The demo's pipeline up to trained and promoted models: (command, step).
PIPELINE: list[tuple[str, Callable[[Settings], dict[str, Any]]]] = [
    ("ingest", ingest),
    ("features build", build_features),
    ("features apply", apply),
    ("features materialize", materialize),
    ("train", train),
    ("promote", promote),
]
