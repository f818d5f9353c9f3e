"""The `crmscore` command line: one Typer app with a sub-app per area."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import typer

from crmscore.settings import Settings, SettingsError, load_settings

app = typer.Typer(
    help="Churn, CLV and next-best-offer scores for CRM systems.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
features_app = typer.Typer(
    help="Point-in-time features, labels and the Feast store.", no_args_is_help=True
)
app.add_typer(features_app, name="features")


class _State:
    workspace: Path | None = None
    config_dir: Path | None = None
    dataset: str | None = None


@app.callback()
def main(
    ctx: typer.Context,
    workspace: Annotated[
        Path | None,
        typer.Option(envvar="CRMSCORE_HOME", help="Where all state lives (default ./workspace)."),
    ] = None,
    config_dir: Annotated[
        Path | None,
        typer.Option(
            "--config", envvar="CRMSCORE_CONFIG", help="Folder with settings.yaml and datasets/."
        ),
    ] = None,
    dataset: Annotated[
        str | None,
        typer.Option(help="Dataset name in configs/datasets/ or a path to a dataset YAML."),
    ] = None,
) -> None:
    """Global options shared by every command."""
    state = _State()
    state.workspace, state.config_dir, state.dataset = workspace, config_dir, dataset
    ctx.obj = state


def _settings(ctx: typer.Context, overrides: dict[str, Any] | None = None) -> Settings:
    state: _State = ctx.obj
    try:
        return load_settings(state.workspace, state.config_dir, state.dataset, overrides)
    except SettingsError as exc:
        _fail(str(exc))
        raise  # unreachable: _fail exits


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=2)


def _echo_json(data: dict[str, Any]) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


@app.command()
def ingest(ctx: typer.Context) -> None:
    """Validate and normalise the dataset's exports into canonical tables."""
    from features.ingest import IngestError
    from features.ingest import ingest as run_ingest

    settings = _settings(ctx)
    started = time.perf_counter()
    try:
        report = run_ingest(settings.dataset, settings.data_root, settings.data_dir)
    except IngestError as exc:
        _fail(str(exc))
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
        )
    }
    summary["seconds"] = round(time.perf_counter() - started, 1)
    summary["report"] = str(settings.data_dir / "ingest_report.json")
    _echo_json(summary)


@features_app.command("build")
def features_build(
    ctx: typer.Context,
    cutoffs: Annotated[
        list[str] | None,
        typer.Option(help="Cutoff dates (YYYY-MM-DD), repeatable; default: monthly over the data."),
    ] = None,
    workers: Annotated[int, typer.Option(help="Processes for the customer partitions.")] = 1,
) -> None:
    """Compute point-in-time features and labels at every cutoff."""
    from features.snapshots import build_snapshots, read_tables

    overrides: dict[str, Any] = {}
    if cutoffs:
        try:
            overrides["features"] = {"cutoffs": [date.fromisoformat(c) for c in cutoffs]}
        except ValueError as exc:
            _fail(f"--cutoffs: {exc} (expected YYYY-MM-DD)")
    settings = _settings(ctx, overrides)
    started = time.perf_counter()
    try:
        tables = read_tables(settings.data_dir)
        metadata = build_snapshots(
            tables,
            settings.features,
            settings.labels,
            settings.segments,
            settings.snapshot_dir,
            workers=workers,
        )
    except (FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
    _echo_json(
        {
            "cutoffs": len(metadata["cutoffs"]),
            "offer_catalog": metadata["offer_catalog"],
            "rows": metadata["rows"],
            "seconds": round(time.perf_counter() - started, 1),
            "folder": str(settings.snapshot_dir),
        }
    )


@features_app.command("apply")
def features_apply(ctx: typer.Context) -> None:
    """Register entities, feature views and feature services in the Feast registry."""
    from features.store import apply_repo

    settings = _settings(ctx)
    try:
        names = apply_repo(settings.feast, settings.feast_dir, settings.snapshot_dir)
    except FileNotFoundError as exc:
        _fail(str(exc))
    _echo_json({"registry": str(settings.feast_dir), **names})


@features_app.command("materialize")
def features_materialize(
    ctx: typer.Context,
    stock: Annotated[
        bool,
        typer.Option(help="Use Feast's stock materialize_incremental instead of the fast writer."),
    ] = False,
) -> None:
    """Load the latest feature values into the online store (incremental, idempotent)."""
    from features.store import materialize

    settings = _settings(ctx)
    started = time.perf_counter()
    # Feast prints progress on stdout; keep stdout for this command's JSON answer.
    with contextlib.redirect_stdout(sys.stderr):
        result = materialize(settings.feast, settings.feast_dir, settings.snapshot_dir, stock=stock)
    _echo_json({**result, "seconds": round(time.perf_counter() - started, 2)})


MODELS = ["churn", "clv", "nbo"]


def _models(model: list[str] | None) -> list[str]:
    chosen = model or MODELS
    unknown = [m for m in chosen if m not in MODELS]
    if unknown:
        _fail(f"--model: {unknown} unknown; expected some of {MODELS}")
    return chosen


def _client(settings: Settings) -> Any:
    from serving.registry import configure, default_tracking_uri

    return configure(settings.mlflow_tracking_uri or default_tracking_uri(settings.paths))


def _train(settings: Settings, kinds: list[str]) -> list[dict[str, Any]]:
    from crmscore.settings import PROJECT_ROOT
    from features.store import open_store
    from training.tracking import git_commit, settings_json
    from training.train import train_models

    client = _client(settings)
    store = open_store(settings.feast, settings.feast_dir)
    try:
        # MLflow and Feast print progress on stdout; keep stdout for the JSON answer.
        with contextlib.redirect_stdout(sys.stderr):
            return train_models(
                kinds,
                store,
                settings.snapshot_dir,
                settings.labels,
                settings.training,
                settings.report_dir,
                client,
                settings.mlflow_artifacts,
                settings_json(settings),
                git_commit(PROJECT_ROOT),
                settings.id_salt.get_secret_value(),
            )
    except (FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
        raise


ModelOption = Annotated[
    list[str] | None,
    typer.Option("--model", help="churn, clv or nbo; repeatable; default: all three."),
]


@app.command()
def train(ctx: typer.Context, model: ModelOption = None) -> None:
    """Train and evaluate models against their baselines; register them as @challenger."""
    settings = _settings(ctx)
    started = time.perf_counter()
    summaries = _train(settings, _models(model))
    _echo_json(
        {
            "models": summaries,
            "seconds": round(time.perf_counter() - started, 1),
            "reports": str(settings.report_dir),
        }
    )


def _promote(settings: Settings, kinds: list[str]) -> list[dict[str, Any]]:
    from training.tracking import promote as run_promote

    client = _client(settings)
    return [run_promote(k, settings.training.gate, client).as_dict() for k in kinds]


@app.command()
def promote(ctx: typer.Context, model: ModelOption = None) -> None:
    """Move @champion to @challenger where the promotion gate passes."""
    settings = _settings(ctx)
    _echo_json({"decisions": _promote(settings, _models(model))})


@app.command()
def rollback(
    ctx: typer.Context, model: Annotated[str, typer.Option(help="churn, clv or nbo")]
) -> None:
    """Put the previous champion back."""
    from training.tracking import rollback as run_rollback

    settings = _settings(ctx)
    decision = run_rollback(_models([model])[0], _client(settings))
    _echo_json(decision.as_dict())
    if not decision.promoted:
        raise typer.Exit(code=1)


@app.command()
def retrain(
    ctx: typer.Context,
    model: ModelOption = None,
    if_recommended: Annotated[
        bool,
        typer.Option(
            "--if-recommended",
            help="Only when monitoring's decision says `retrain recommended` (the models it "
            "names, unless --model is given).",
        ),
    ] = False,
) -> None:
    """Refresh features (ingest, build, apply, materialize), train, and promote if the gate
    passes."""
    if if_recommended:
        from crmscore.monitor_cli import decision_path
        from monitoring.decision import read_decision

        path = decision_path(_settings(ctx))
        try:
            decision = read_decision(path)
        except ValueError as exc:
            _fail(str(exc))
        if decision is None or not decision.recommended:
            why = "no monitoring decision yet" if decision is None else "monitoring says ok"
            typer.echo(f"retrain not needed: {why} ({path})")
            return
        typer.echo(f"retrain recommended: {'; '.join(decision.reasons)}", err=True)
        model = model or [m for m in decision.models if m in MODELS] or None
    ctx.invoke(ingest, ctx=ctx)
    ctx.invoke(features_build, ctx=ctx, cutoffs=None, workers=1)
    ctx.invoke(features_apply, ctx=ctx)
    ctx.invoke(features_materialize, ctx=ctx, stock=False)
    settings = _settings(ctx)
    kinds = _models(model)
    summaries = _train(settings, kinds)
    _echo_json({"models": summaries, "decisions": _promote(settings, kinds)})


@app.command()
def serve(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    new_keys: Annotated[
        bool, typer.Option("--new-keys", help="Create (and print) a new API key pair.")
    ] = False,
) -> None:
    """Serve the scoring API (BentoML) with the champion models and the online store."""
    import os

    from crmscore.settings import PROJECT_ROOT
    from serving.auth import KEY_FILES, ApiKeys, create_key_files
    from serving.state import serving_problems

    settings = _settings(ctx)
    env = dict(os.environ)
    with contextlib.redirect_stdout(sys.stderr):
        problems = serving_problems(settings, env)
    if problems:
        _fail("cannot serve:\n  " + "\n  ".join(problems))
    folder = settings.workspace / "serving"
    configured = ApiKeys.from_env(env).configured
    if new_keys or not (configured or all((folder / f).exists() for f in KEY_FILES.values())):
        user, admin = create_key_files(folder)
        typer.echo(f"API key:   {user}\nadmin key: {admin}\n(only their hashes are kept: {folder})")
    if not configured:
        env.update({var: str(folder / name) for var, name in KEY_FILES.items()})
    state: _State = ctx.obj
    env["CRMSCORE_HOME"] = str(settings.workspace)
    env["CRMSCORE_CONFIG"] = str(settings.config_dir)
    if state.dataset:
        env["CRMSCORE_DATASET"] = state.dataset
    address = (host or settings.serving.host, port or settings.serving.port)
    typer.echo(f"serving on http://{address[0]}:{address[1]} (OpenAPI: /docs)", err=True)
    sys.stdout.flush()
    command = [sys.executable, "-m", "bentoml", "serve", "serving.service:CrmscoreService"]
    command += ["--host", address[0], "--port", str(address[1])]
    command += ["--working-dir", str(PROJECT_ROOT)]
    os.execvpe(sys.executable, command, env)


score_app = typer.Typer(help="Batch scoring of the whole customer base.", no_args_is_help=True)
app.add_typer(score_app, name="score")


@score_app.command("batch")
def score_batch_command(
    ctx: typer.Context,
    as_of: Annotated[
        str,
        typer.Option("--as-of", help="Cutoff date (YYYY-MM-DD) of the feature snapshot to score."),
    ],
) -> None:
    """Score every customer with the @champion models -> parquet and CSV in workspace/scores."""
    import pandas as pd

    from features.store import open_store
    from serving.batch import load_champions, score_batch

    settings = _settings(ctx)
    try:
        when = pd.Timestamp(date.fromisoformat(as_of))
    except ValueError as exc:
        _fail(f"--as-of: {exc} (expected YYYY-MM-DD)")
    started = time.perf_counter()
    try:
        with contextlib.redirect_stdout(sys.stderr):
            models = load_champions(_client(settings))
            parquet, csv, rows = score_batch(
                when,
                open_store(settings.feast, settings.feast_dir),
                settings.snapshot_dir,
                models,
                settings.workspace / "scores",
                settings.training,
            )
    except (FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
    _echo_json(
        {
            "customers": rows,
            "parquet": str(parquet),
            "csv": str(csv),
            "model_versions": models.versions,
            "seconds": round(time.perf_counter() - started, 1),
        }
    )


@app.command()
def target(
    ctx: typer.Context,
    objective: Annotated[str, typer.Option(help="retention, value or offer")],
    budget: Annotated[
        int, typer.Option(help="How many customers the campaign contacts (control group included).")
    ],
    control: Annotated[float, typer.Option(help="Share held out as a control group.")] = 0.1,
    seed: Annotated[int, typer.Option(help="Seed of the control-group draw.")] = 0,
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="Scores of this date (default: the latest batch).")
    ] = None,
) -> None:
    """A campaign target list as CSV for CRM import, with a random control group flagged."""
    import pandas as pd

    from serving.batch import write_atomic
    from serving.targets import OBJECTIVE_COLUMNS, target_list

    settings = _settings(ctx)
    if objective not in OBJECTIVE_COLUMNS:
        _fail(f"--objective {objective}: expected one of {sorted(OBJECTIVE_COLUMNS)}")
    folder = settings.workspace / "scores"
    files = sorted(folder.glob(f"scores_{as_of or '*'}.parquet"))
    if not files:
        _fail(
            f"{folder}: no batch scores{f' for {as_of}' if as_of else ''}; run "
            "`crmscore score batch --as-of DATE`"
        )
    try:
        chosen = target_list(
            pd.read_parquet(files[-1]),
            objective,  # type: ignore[arg-type]
            budget,
            control,
            seed,
        )
    except ValueError as exc:
        _fail(str(exc))
    out = folder / f"targets_{objective}_{files[-1].stem.removeprefix('scores_')}.csv"
    write_atomic(chosen, out)
    _echo_json(
        {
            "csv": str(out),
            "customers": len(chosen),
            "control": int((chosen["group"] == "control").sum()),
            "objective_total": round(float(chosen["objective_value"].sum()), 2),
            "scores": str(files[-1]),
        }
    )


from crmscore.monitor_cli import monitor_app  # noqa: E402

app.add_typer(monitor_app, name="monitor")
