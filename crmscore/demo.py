"""`make demo`: the whole pipeline on the embedded Complete Journey data.

ingest -> features -> Feast apply -> materialize -> train -> promote -> batch scores -> a
campaign target list -> a drift report, each step the function its `crmscore` command calls
(crmscore/steps.py), printed under that command's name; then it serves the API on localhost.

A re-run skips the steps whose inputs did not change: each step's fingerprint (a hash of its
settings, of the code of the package that does its work and, for ingest, of the input files'
sizes and times) is kept in `<workspace>/demo_state.json`; from the first step that runs
(changed, or its output rewritten since), every later step runs too; `--rerun` runs them all.
The API keys of the previous run are kept unless `--new-keys`.

    python -m crmscore.demo [--workspace DIR] [--config DIR] [--dataset NAME] [--port PORT]
                            [--no-serve] [--rerun] [--new-keys]
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import json
import os
import socket
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import partial
from importlib import util
from pathlib import Path
from typing import Any

from crmscore import steps
from crmscore.logs import log_to_file, setup_logging
from crmscore.server import run_server
from crmscore.settings import Settings, SettingsError, load_settings

# The pipeline up to trained and promoted models: (command, step).
STEPS = steps.PIPELINE
# What the demo remembers of its last run, in the workspace.
STATE_FILE = "demo_state.json"
# What a failure that is not a step error (a bug, a library's own error) leaves behind.
ERROR_LOG = "demo_error.log"
# The environment variable of the API's port (the `--port` option wins).
PORT_VAR = "CRMSCORE_PORT"
# The package whose code does each step's work: a change to it re-runs the step.
STEP_CODE = {
    "ingest": "features",
    "features build": "features",
    "features apply": "features",
    "features materialize": "features",
    "train": "training",
    "promote": "training",
    "score batch": "serving",
    "target": "serving",
    "monitor drift": "monitoring",
}


@dataclass(frozen=True)
class DemoStep:
    """One step of the demo: its command, the options shown, what it runs, and the file it
    alone writes (its stamp must be unchanged for the step to be skipped; None: none)."""

    title: str
    options: str
    run: Callable[[], dict[str, Any]]
    output: Path | None = None


def demo_steps(settings: Settings) -> list[DemoStep]:
    """Every step of the demo, in order."""
    paths = settings.paths
    outputs = {
        "ingest": paths.ingest_report,
        "features build": paths.snapshots_meta,
        "features materialize": paths.materialized,
    }
    return [
        *(
            DemoStep(title, "", partial(step, settings), outputs.get(title))
            for title, step in STEPS
        ),
        DemoStep(
            "score batch",
            "--as-of <latest cutoff>",
            lambda: steps.score_batch(settings, date.fromisoformat(steps.latest_cutoff(settings))),
        ),
        DemoStep(
            "target",
            # The demo rebuilds its own list from fresh scores each run: --force.
            "--objective retention --budget 500 --control 0.1 --seed 1 --force",
            partial(steps.target, settings, "retention", 500, 0.1, 1, None, True),
        ),
        DemoStep("monitor drift", "--exit-zero", lambda: steps.drift(settings).as_dict()),
    ]


# --- fingerprints: what a step's result depends on --------------------------------------------


def file_stamp(path: Path) -> str:
    """A file's size and modification time ("missing" when it does not exist): it changes
    when the file is rewritten, without reading the file."""
    try:
        stat = path.stat()
    except OSError:
        return "missing"
    return f"{stat.st_size}:{stat.st_mtime_ns}"


def source_files(settings: Settings) -> list[Path]:
    """Every file the dataset's ingest reads: its sources and their lookups."""
    from features.ingest import resolve_location

    files = []
    for table in settings.dataset.tables.values():
        for source in table.sources:
            files.append(resolve_location(source.path, source.package, settings.data_root))
            files += [
                resolve_location(lookup.path, lookup.package, settings.data_root)
                for lookup in source.lookups
            ]
    return files


def code_digest(package: str) -> str:
    """A hash of the Python files of an importable package (where it is imported from)."""
    spec = util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return "missing"
    digest = hashlib.sha256()
    for folder in spec.submodule_search_locations:
        for path in sorted(Path(folder).rglob("*.py")):
            digest.update(str(path.relative_to(folder)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def step_inputs(settings: Settings) -> dict[str, Any]:
    """Per step title, the settings and files its result depends on, beyond the outputs of
    earlier steps."""

    def section(*names: str) -> dict[str, Any]:
        return {name: getattr(settings, name).model_dump(mode="json") for name in names}

    return {
        "ingest": {
            "dataset": settings.dataset.model_dump(mode="json"),
            "data_root": str(settings.data_root),
            "files": {str(path): file_stamp(path) for path in source_files(settings)},
        },
        "features build": section("features", "labels", "segments"),
        "features apply": section("feast"),
        "features materialize": section("feast"),
        "train": {
            **section("labels", "training"),
            "tracking_uri": steps.tracking_uri(settings),
            "id_salt": hashlib.sha256(settings.id_salt.get_secret_value().encode()).hexdigest(),
        },
        "promote": section("training"),
        "score batch": {"tracking_uri": steps.tracking_uri(settings)},
        "target": {},
        "monitor drift": section("monitoring"),
    }


def fingerprints(titles: list[str], inputs: dict[str, Any], code: dict[str, str]) -> dict[str, str]:
    """Each step's fingerprint: a hash of its inputs and of its code."""
    out: dict[str, str] = {}
    for title in titles:
        text = json.dumps(
            {"inputs": inputs.get(title), "code": code.get(title)}, sort_keys=True, default=str
        )
        out[title] = hashlib.sha256(text.encode()).hexdigest()
    return out


def can_skip(recorded: dict[str, Any] | None, fingerprint: str, output: Path | None) -> bool:
    """Whether a step may be skipped: the previous run recorded it as passed with the same
    fingerprint, and the file it writes (when it has one) is the one it wrote then."""
    if not recorded or recorded.get("fingerprint") != fingerprint:
        return False
    return output is None or recorded.get("output") == file_stamp(output)


def read_state(path: Path) -> dict[str, Any]:
    """What the previous run recorded, per step title (empty when unreadable or absent)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_state(path: Path, state: dict[str, Any]) -> None:
    """Record the state (written whole, then renamed into place)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial_file = path.with_suffix(".tmp")
    partial_file.write_text(json.dumps(state, indent=2, default=str))
    partial_file.replace(path)


# --- running ----------------------------------------------------------------------------------


def error_lines(exc: BaseException) -> list[str]:
    """The message of an error and of the errors that caused it, one line each; an error that
    is not a step error (ValueError, FileNotFoundError) is named by its type."""
    lines: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        message = str(current).strip() or "(no message)"
        if not isinstance(current, steps.STEP_ERRORS):
            message = f"{type(current).__name__}: {message}"
        lines.append(("error: " if not lines else "  caused by: ") + message)
        current = current.__cause__ or current.__context__
    return lines


def report_failure(title: str, exc: Exception, workspace: Path) -> None:
    """Print why a step failed on stderr: its error's message (and causes); for an error that
    is not a step error, the traceback goes to a log file in the workspace."""
    for line in error_lines(exc):
        print(line, file=sys.stderr)
    if not isinstance(exc, steps.STEP_ERRORS):
        log = workspace / ERROR_LOG
        try:
            log.parent.mkdir(parents=True, exist_ok=True)
            log.write_text("".join(traceback.format_exception(exc)))
            print(f"traceback: {log}", file=sys.stderr)
        except OSError:
            traceback.print_exception(exc, file=sys.stderr)
    print(f"demo stopped: `crmscore {title}` failed", file=sys.stderr)


def run_steps(settings: Settings, rerun: bool = False) -> int:
    """Run every step of the demo (`run_plan`), each with its fingerprint from the settings,
    the code and the input files; the state is kept in the workspace."""
    plan = demo_steps(settings)
    titles = [s.title for s in plan]
    code = {title: code_digest(STEP_CODE[title]) for title in titles}
    prints = fingerprints(titles, step_inputs(settings), code)
    return run_plan(plan, prints, settings.workspace, rerun)


def run_plan(plan: list[DemoStep], prints: dict[str, str], workspace: Path, rerun: bool) -> int:
    """Run the steps in order, printing each one's answer; a step that `can_skip` by the
    previous run's state (`<workspace>/demo_state.json`) is skipped, and its recorded answer
    shown, unless `rerun` or an earlier step ran (its outputs may differ from last time).
    Stops at the first failure with its message. Returns the exit code (0: every step passed
    or was skipped)."""
    state_file = workspace / STATE_FILE
    state = read_state(state_file)
    for index, step in enumerate(plan):
        print(f"\n== crmscore {step.title} {step.options}".rstrip(), flush=True)
        recorded = state.get(step.title)
        if not rerun and can_skip(recorded, prints[step.title], step.output):
            assert recorded is not None
            print(f"(unchanged since {recorded['finished']}: skipped; --rerun runs it again)")
            print(json.dumps(recorded.get("answer"), indent=2, default=str), flush=True)
            continue
        rerun = True  # every later step runs too
        try:
            answer = step.run()
        except Exception as exc:
            report_failure(step.title, exc, workspace)
            # What it may have half done is not what the previous run recorded.
            for later in plan[index:]:
                state.pop(later.title, None)
            write_state(state_file, state)
            return 2
        print(json.dumps(answer, indent=2, default=str), flush=True)
        state[step.title] = {
            "fingerprint": prints[step.title],
            "output": file_stamp(step.output) if step.output else None,
            "finished": datetime.now(UTC).isoformat(timespec="seconds"),
            "answer": json.loads(json.dumps(answer, default=str)),
        }
        write_state(state_file, state)
    return 0


# --- the API's port ---------------------------------------------------------------------------


def port_of(option: int | None, env: dict[str, str], default: int) -> int:
    """The API's port: the option, else the environment's CRMSCORE_PORT, else `default`.
    ValueError (with a one-line message) for a value that is not a port."""
    raw: object = option if option is not None else env.get(PORT_VAR) or default
    where = "--port" if option is not None else PORT_VAR if env.get(PORT_VAR) else "serving.port"
    try:
        port = int(str(raw))
    except ValueError:
        raise ValueError(f"{where} {raw!r}: not a port number") from None
    if not 1 <= port <= 65535:
        raise ValueError(f"{where} {port}: expected a port between 1 and 65535")
    return port


def port_problem(host: str, port: int) -> str | None:
    """Why the API could not listen on host:port (None when it can): tried by binding a socket
    there and closing it at once."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As the server does: a port whose old connections are in TIME_WAIT is free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return (
                    f"port {port} on {host} is in use; free it or choose another with --port "
                    f"or {PORT_VAR}"
                )
            return f"cannot listen on {host}:{port}: {exc.strerror or exc}"
    return None


# --- main -------------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The demo's options."""
    parser = argparse.ArgumentParser(
        prog="python -m crmscore.demo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--workspace", type=Path, help="where all state lives")
    parser.add_argument("--config", type=Path, help="folder with settings.yaml and datasets/")
    parser.add_argument("--dataset", help="dataset name or a dataset YAML")
    parser.add_argument(
        "--port", type=int, help=f"port of the API (default: ${PORT_VAR}, else serving.port)"
    )
    parser.add_argument("--no-serve", action="store_true", help="stop before serving the API")
    parser.add_argument("--rerun", action="store_true", help="run every step, changed or not")
    parser.add_argument(
        "--new-keys", action="store_true", help="a new API key pair (default: keep the last)"
    )
    return parser.parse_args(argv)


def main(argv: list[str], env: dict[str, str] | None = None) -> int:
    """Run every step; stop at the first failure with its message. Ends by serving the API
    unless `--no-serve` is given; a port already in use stops it before any step runs."""
    env = dict(os.environ) if env is None else env
    args = parse_args(argv)
    setup_logging("normal", os.environ)
    try:
        settings = load_settings(args.workspace, args.config, args.dataset, env=env)
        port = port_of(args.port, env, settings.serving.port)
    except (SettingsError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not args.no_serve:
        problem = port_problem(settings.serving.host, port)
        if problem:
            print(f"error: {problem}", file=sys.stderr)
            return 2
    log_to_file(settings.paths.log_file)
    code = run_steps(settings, args.rerun)
    if code:
        return code
    paths = settings.paths
    print("\nDone. In the workspace", settings.workspace)
    print("  data/      canonical tables, rejects.csv, ingest_report.json")
    print("  features/  feature snapshots and labels; feast/: the registry and online store")
    print(f"  reports/   evaluation reports: {paths.report_dir}/<model>/<model>_report.html")
    print("  scores/    batch scores (parquet, CSV) and the campaign target list (CSV)")
    print(f"  monitoring/ drift reports (open in a browser): {paths.drift_dir}/")
    uri = steps.tracking_uri(settings)
    print(f"MLflow UI:   {sys.executable} -m mlflow ui --backend-store-uri {uri}")
    if not args.no_serve:
        return _serve(settings, env, port, args.new_keys)
    return 0


def _serve(settings: Settings, env: dict[str, str], port: int, new_keys: bool) -> int:
    """End by serving the API on localhost, with the API keys (new ones only when created now:
    the first time or with `--new-keys`) and a sample request printed."""
    import pandas as pd

    problem = port_problem(settings.serving.host, port)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        launch = steps.serve(settings, env, port=port, new_keys=new_keys)
    except steps.STEP_ERRORS as exc:
        print(f"error: {exc}\ndemo stopped: `crmscore serve` failed", file=sys.stderr)
        return 2
    latest = settings.paths.scores_files()[-1]
    customer = str(pd.read_parquet(latest, columns=["customer_id"])["customer_id"].iloc[0])
    url = launch.url
    print(f"\n== crmscore serve: the scoring API on {url} (Ctrl-C stops it)")
    if launch.new_keys is not None:
        user, admin = launch.new_keys
        print(f"API key {user}; admin key {admin} (only their hashes are stored)")
    else:
        user = "<your API key>"
        print(
            f"API keys: unchanged, the ones configured or made by an earlier run (hashes in "
            f"{launch.key_folder}); `--new-keys` makes a new pair"
        )
    print(f"OpenAPI: {url}/docs   models: {url}/v1/models   ready: {url}/readyz")
    print("Try, once it says it is ready:")
    print(
        f"  curl -s -X POST {url}/v1/score -H 'Authorization: Bearer {user}' "
        f"-H 'Content-Type: application/json' "
        f'-d \'{{"customer_id": "{customer}", "explain": true}}\''
    )
    sys.stdout.flush()
    return run_server(launch.command, launch.env, url, settings.paths.server_log)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
