"""What every command shares: the global options, settings, errors and JSON output."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import typer

from crmscore import steps
from crmscore.settings import Settings, SettingsError, load_settings

T = TypeVar("T")


class State:
    """The global options (`crmscore --workspace ... --config ... --dataset ...`)."""

    workspace: Path | None = None
    config_dir: Path | None = None
    dataset: str | None = None


def settings_of(ctx: typer.Context, overrides: dict[str, Any] | None = None) -> Settings:
    """Settings from the global options and `overrides` (exit 2 on a bad settings file)."""
    state: State = ctx.obj
    try:
        return load_settings(
            getattr(state, "workspace", None),
            getattr(state, "config_dir", None),
            getattr(state, "dataset", None),
            overrides,
        )
    except SettingsError as exc:
        fail(str(exc))


def fail(message: str) -> NoReturn:
    """The message on stderr, exit code 2."""
    typer.echo(f"error: {message}", err=True)
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
    """Run a step; its error's message (exit 2) instead of a traceback."""
    try:
        return step(*args, **kwargs)
    except steps.STEP_ERRORS as exc:
        fail(str(exc))


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
