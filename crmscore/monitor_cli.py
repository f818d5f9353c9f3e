"""`crmscore monitor ...`: drift reports, delayed-label backtests, campaign uplift and the
monitoring dashboard. Exit codes: 0 ok, 1 thresholds crossed, 2 bad input.

Each command parses its options, calls one function of `crmscore.steps` (which calls
`monitoring.checks`) and prints its answer."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from crmscore import steps
from crmscore.cliutil import echo_json, fail, kinds, parse_date, run, settings_of
from features.model_spec import MODEL_KINDS

monitor_app = typer.Typer(
    help="Drift reports, backtests, campaign uplift and the monitoring dashboard.",
    no_args_is_help=True,
)


ModelsOption = Annotated[
    list[str] | None,
    typer.Option(
        "--model",
        help=f"{', '.join(MODEL_KINDS)}; repeatable; default: monitoring.models (drift), "
        "all of them (backtest).",
    ),
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
    chosen = kinds(model)
    if end and not start:
        fail("--to needs --from")
    first = parse_date(start, "--from") if start else None
    last = parse_date(end, "--to") if end else None
    settings = settings_of(ctx)
    found = run(steps.drift, settings, chosen, scores, first, last, alias, dashboard)
    echo_json(found.as_dict())
    if found.alarmed and not exit_zero:
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
    settings = settings_of(ctx)
    command = run(steps.dashboard_command, settings, host, port)
    if print_only:
        typer.echo(" ".join(command))
        return
    from monitoring.dashboard import ui_environment

    folder = settings.paths.evidently_dir
    typer.echo(f"Evidently UI on http://{host}:{port} (workspace {folder}); Ctrl-C stops it")
    sys.stdout.flush()
    # The UI replaces this process, so whoever stops the command stops the UI.
    os.execve(command[0], command, ui_environment(os.environ))


@monitor_app.command("backtest")
def backtest(ctx: typer.Context, model: ModelsOption = None) -> None:
    """Realised quality of every earlier batch-scores file whose horizon has passed, against
    the figures from evaluation time; exits 1 when the latest matured snapshot degraded."""
    found = run(steps.backtest, settings_of(ctx), kinds(model))
    echo_json(found.as_dict())
    if found.degraded:
        raise typer.Exit(code=1)


@monitor_app.command("uplift")
def uplift(
    ctx: typer.Context,
    targets: Annotated[Path, typer.Option(help="A target list CSV from `crmscore target`.")],
) -> None:
    """Incremental retention and revenue of contacted customers against the control group,
    with confidence intervals, once the outcome horizons have passed."""
    echo_json(run(steps.uplift, settings_of(ctx), targets))
