"""What every command shares: the global options, settings, errors and JSON output."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer

from crmscore import steps
from crmscore.logs import log_to_file

if TYPE_CHECKING:
    from crmscore.settings import Settings

T = TypeVar("T")


class State:
    """The global options (`crmscore --workspace ... --config ... --dataset ...`)."""

    workspace: Path | None = None
    config_dir: Path | None = None
    dataset: str | None = None


EngineOption = Annotated[
    str | None,
    typer.Option(
        help="Where the partitions run: local (this process) or ray; default: settings engine.kind."
    ),
]
AddressOption = Annotated[
    str | None,
    typer.Option(help="A Ray cluster's head (host:port, its GCS port); implies --engine ray."),
]


def engine_overrides(engine: str | None, address: str | None) -> dict[str, Any]:
    """Settings overrides of --engine and --address (exit 2 on an unknown engine)."""
    if engine is not None and engine not in ("local", "ray"):
        fail(f"--engine {engine}: expected local or ray")
    if address is not None and engine == "local":
        fail("--address names a Ray cluster: use it with --engine ray")
    chosen: dict[str, Any] = {}
    if engine is not None or address is not None:
        chosen["kind"] = "ray" if address is not None else engine
    if address is not None:
        chosen["address"] = address
    return {"engine": chosen} if chosen else {}


def settings_of(ctx: typer.Context, overrides: dict[str, Any] | None = None) -> Settings:
    """Settings from the global options and `overrides` (exit 2 on a bad settings file)."""
    from crmscore.settings import SettingsError, load_settings

    state: State = ctx.obj
    try:
        settings = load_settings(
            getattr(state, "workspace", None),
            getattr(state, "config_dir", None),
            getattr(state, "dataset", None),
            overrides,
        )
    except SettingsError as exc:
        fail(str(exc))
    log_to_file(settings.paths.log_file)
    return settings


def fail(message: str) -> NoReturn:
    """The message on stderr as one line, exit code 2."""
    line = " ".join(part.strip() for part in message.splitlines() if part.strip())
    typer.echo(f"error: {line}", err=True)
    raise typer.Exit(code=2)


def echo_json(data: dict[str, Any]) -> None:
    """A command's answer on stdout."""
    typer.echo(json.dumps(data, indent=2, default=str))


def note_skipped(entries: list[dict[str, Any]]) -> None:
    """One line on stderr per model a step skipped ("nbo: skipped: the data has no ...")."""
    for entry in entries:
        if entry.get("skipped"):
            typer.echo(f"{entry['model']}: skipped: {entry['skipped']}", err=True)


def run(step: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a step; its error's message (exit 2) instead of a traceback. An unexpected error
    (a bug) is one line too, its traceback in the log file."""
    try:
        return step(*args, **kwargs)
    except steps.STEP_ERRORS as exc:
        fail(str(exc))
    except Exception as exc:
        logging.getLogger(__name__).debug("unexpected error", exc_info=True)
        fail(
            f"unexpected {type(exc).__name__}: {exc} (a bug: the traceback is in the log "
            "file, workspace/logs/crmscore.log; rerun with --verbose to see it here)"
        )


def parse_date(value: str, option: str) -> date:
    """An option's YYYY-MM-DD value (exit 2 otherwise)."""
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        fail(f"{option} {value}: {exc} (expected YYYY-MM-DD)")


def kinds(model: list[str] | None) -> list[str] | None:
    """The checked `--model` values (exit 2 naming the known kinds); None when none given."""
    if not model:
        return None
    try:
        return steps.check_kinds(model)
    except ValueError as exc:
        fail(f"--model: {exc}")
