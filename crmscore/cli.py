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
