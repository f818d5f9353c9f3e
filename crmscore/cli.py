"""The `crmscore` command line: one Typer app with a sub-app per area.

Each command parses its options, calls one function of `crmscore.steps` and prints its answer
(JSON on stdout); an error's message goes to stderr with exit code 2."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from crmscore import steps
from crmscore.cliutil import (
    AddressOption,
    EngineOption,
    State,
    echo_json,
    engine_overrides,
    fail,
    kinds,
    note_skipped,
    parse_date,
    run,
    settings_of,
)
from crmscore.logs import setup_logging
from features.model_spec import MODEL_KINDS

app = typer.Typer(
    help="Churn, CLV and next-best-offer scores for CRM systems.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
features_app = typer.Typer(
    help="Point-in-time features, labels and the Feast store.", no_args_is_help=True
)
app.add_typer(features_app, name="features")


ModelOption = Annotated[
    list[str] | None,
    typer.Option("--model", help=f"{', '.join(MODEL_KINDS)}; repeatable; default: all of them."),
]


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
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Only warnings and errors on stderr.")
    ] = False,
    verbose: Annotated[
        bool,
        typer.Option("--verbose", "-v", help="Everything on stderr, libraries' lines included."),
    ] = False,
) -> None:
    """Global options shared by every command. Progress goes to stderr (a line per stage
    with its elapsed time), the answer to stdout, everything to workspace/logs/crmscore.log."""
    if quiet and verbose:
        fail("--quiet and --verbose exclude each other; choose one")
    setup_logging("quiet" if quiet else "verbose" if verbose else "normal", os.environ)
    state = State()
    state.workspace, state.config_dir, state.dataset = workspace, config_dir, dataset
    ctx.obj = state


@app.command()
def ingest(ctx: typer.Context) -> None:
    """Validate and normalise the dataset's exports into canonical tables."""
    echo_json(run(steps.ingest, settings_of(ctx)))


@app.command()
def init(
    source: Annotated[
        Path | None, typer.Option("--from", help="A transactions export to sniff.")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Write the draft here (default: stdout).")
    ] = None,
    configs: Annotated[
        Path | None,
        typer.Option("--configs", help="Copy the default configs into this folder instead."),
    ] = None,
) -> None:
    """Draft a dataset YAML from an export: delimiter, header, encoding, types and likely
    columns are guessed, each guess commented. With --configs DIR: copy the default
    settings.yaml and datasets/ there, to edit and use with `crmscore --config DIR`."""
    from crmscore.settings import copy_default_configs
    from features.sniff import draft_dataset

    if configs is not None:
        copied = run(copy_default_configs, configs)
        typer.echo("\n".join(str(path) for path in copied))
        typer.echo(f"edit them, then: crmscore --config {configs} ...", err=True)
        return
    if source is None:
        fail("give --from FILE (draft a dataset YAML) or --configs DIR (copy the defaults)")
    if out is not None and out.exists():
        fail(f"{out} exists; choose another --out or remove it")
    draft = run(draft_dataset, source)
    for warning in draft.warnings:
        typer.echo(f"warning: {warning}", err=True)
    if out is None:
        typer.echo(draft.yaml, nl=False)
    else:
        out.write_text(draft.yaml)
        typer.echo(f"wrote {out}; check it, then: crmscore --dataset {out} ingest", err=True)


@features_app.command("build")
def features_build(
    ctx: typer.Context,
    cutoffs: Annotated[
        list[str] | None,
        typer.Option(
            help="Cutoff dates (YYYY-MM-DD) to add to those of the last build, repeatable; "
            "default: the configured ones (monthly over the data)."
        ),
    ] = None,
    engine: EngineOption = None,
    address: AddressOption = None,
) -> None:
    """Compute point-in-time features and labels at every cutoff, then say what the data
    can train (the readiness report, also in workspace/reports/readiness.json)."""
    added = [parse_date(c, "--cutoffs") for c in cutoffs or []]
    settings = settings_of(ctx, engine_overrides(engine, address))
    echo_json(run(steps.build_features, settings, added))


@app.command()
def readiness(ctx: typer.Context, model: ModelOption = None) -> None:
    """What the data can train: customers, history, purchases per customer, missing values,
    and for each model its horizon and whether the time split has enough customers (the
    minimums `train` enforces). Written to workspace/reports/readiness.json."""
    chosen = kinds(model)
    echo_json(run(steps.readiness, settings_of(ctx), chosen))


@features_app.command("apply")
def features_apply(ctx: typer.Context) -> None:
    """Register entities, feature views and feature services in the Feast registry."""
    echo_json(run(steps.apply, settings_of(ctx)))


@features_app.command("materialize")
def features_materialize(
    ctx: typer.Context,
    stock: Annotated[
        bool,
        typer.Option(help="Use Feast's stock materialize_incremental instead of the fast writer."),
    ] = False,
) -> None:
    """Load the latest feature values into the online store (incremental, idempotent)."""
    echo_json(run(steps.materialize, settings_of(ctx), stock))


@app.command()
def train(ctx: typer.Context, model: ModelOption = None) -> None:
    """Train and evaluate models against their baselines; register them as @challenger.
    A model the data cannot have (offers without products) is skipped, saying why."""
    answer = run(steps.train, settings_of(ctx), kinds(model))
    note_skipped(answer["models"])
    echo_json(answer)


@app.command()
def promote(ctx: typer.Context, model: ModelOption = None) -> None:
    """Move @champion to @challenger where the promotion gate passes."""
    echo_json(run(steps.promote, settings_of(ctx), kinds(model)))


@app.command()
def rollback(
    ctx: typer.Context, model: Annotated[str, typer.Option(help=", ".join(MODEL_KINDS))]
) -> None:
    """Put the previous champion back."""
    chosen = kinds([model]) or [model]
    decision = run(steps.rollback, settings_of(ctx), chosen[0])
    echo_json(decision)
    if not decision["promoted"]:
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
    settings = settings_of(ctx)
    if if_recommended:
        decision = run(steps.retrain_decision, settings)
        if decision is None or not decision.recommended:
            why = "no monitoring decision yet" if decision is None else "monitoring says ok"
            typer.echo(f"retrain not needed: {why} ({settings.paths.decision_file})")
            return
        typer.echo(f"retrain recommended: {'; '.join(decision.reasons)}", err=True)
        model = model or [m for m in decision.models if m in MODEL_KINDS] or None
    chosen = kinds(model)
    for step in (steps.ingest, steps.build_features, steps.apply, steps.materialize):
        echo_json(run(step, settings))
    trained = run(steps.train, settings, chosen)
    note_skipped(trained["models"])
    promoted = run(steps.promote, settings, chosen)
    echo_json({"models": trained["models"], "decisions": promoted["decisions"]})


@app.command()
def serve(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    new_keys: Annotated[
        bool, typer.Option("--new-keys", help="Create (and print) a new API key pair.")
    ] = False,
) -> None:
    """Serve the scoring API (BentoML) with the champion models and the online store; one
    "ready on URL" line when it answers (the server's own output: workspace/logs/)."""
    from crmscore.server import run_server

    settings = settings_of(ctx)
    launch = run(steps.serve, settings, dict(os.environ), host, port, new_keys)
    if launch.new_keys:
        user, admin = launch.new_keys
        typer.echo(
            f"API key:   {user}\nadmin key: {admin}\n"
            f"(only their hashes are kept: {launch.key_folder})"
        )
    typer.echo(f"starting on {launch.url} (OpenAPI: /docs) ...", err=True)
    sys.stdout.flush()
    code = run_server(launch.command, launch.env, launch.url, settings.paths.server_log)
    if code:
        raise typer.Exit(code=code)


score_app = typer.Typer(help="Batch scoring of the whole customer base.", no_args_is_help=True)
app.add_typer(score_app, name="score")


@score_app.command("batch")
def score_batch_command(
    ctx: typer.Context,
    as_of: Annotated[
        str,
        typer.Option("--as-of", help="Cutoff date (YYYY-MM-DD) of the feature snapshot to score."),
    ],
    engine: EngineOption = None,
    address: AddressOption = None,
) -> None:
    """Score every customer with the @champion models -> parquet and CSV in workspace/scores."""
    day = parse_date(as_of, "--as-of")
    echo_json(run(steps.score_batch, settings_of(ctx, engine_overrides(engine, address)), day))


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
    force: Annotated[
        bool,
        typer.Option(help="Replace a list of the same objective, budget, control, seed and date."),
    ] = False,
) -> None:
    """A campaign target list as CSV for CRM import, with a random control group flagged and
    a data dictionary beside it. The file name carries the budget, control share and seed;
    an existing list (and its control group) is never replaced without --force."""
    settings = settings_of(ctx)
    listed = run(steps.target, settings, objective, budget, control, seed, as_of, force)
    for warning in listed["warnings"]:
        typer.echo(f"warning: {warning}", err=True)
    echo_json(listed)


from crmscore.monitor_cli import monitor_app  # noqa: E402

app.add_typer(monitor_app, name="monitor")
