"""Command-line responsiveness (issue 14): how long a bad `--as-of` takes to be refused, and
how long `crmscore serve` takes to say "ready on ...".

    .venv/bin/python benchmarks/cli.py [--workspace DIR --dataset YAML] [--runs 5] [--no-serve]

A bad date against two references in the same run: Python starting and exiting, and
Python importing what `score batch` loads (settings, pandas, MLflow, Feast, the batch
scorer): what a bad date cost before it was checked ahead of those imports.
Serving: `crmscore serve` until its "ready on" line, against the BentoML command it starts
(`python -m bentoml serve ...`, same environment) until `/readyz` answers. Without
--workspace, a workspace is trained here on a generated export (benchmarks/serving.py).
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)  # import the project's packages, not this folder's modules


def _seconds(command: list[str], env: dict[str, str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run(command, env=env, cwd=cwd, capture_output=True, check=False)
    return time.perf_counter() - started


def _median(command: list[str], env: dict[str, str], cwd: Path, runs: int) -> float:
    return statistics.median(_seconds(command, env, cwd) for _ in range(runs))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _until_ready_line(command: list[str], env: dict[str, str]) -> float:
    """Seconds from starting `crmscore serve` to its "ready on" line; stops it then."""
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    try:
        for line in process.stderr:
            if line.startswith("ready on "):
                return time.perf_counter() - started
            if line.startswith("error:"):
                raise SystemExit(line)
        raise SystemExit(f"{command} ended without a ready line")
    finally:
        process.terminate()
        process.wait()


def _until_readyz(command: list[str], env: dict[str, str], port: int) -> float:
    """Seconds from starting `command` to /readyz answering 200; stops it then."""
    from crmscore.server import is_ready

    started = time.perf_counter()
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT
    )
    try:
        while not is_ready(f"http://127.0.0.1:{port}"):
            if process.poll() is not None:
                raise SystemExit(f"{command} exited {process.returncode}")
            time.sleep(0.2)
        return time.perf_counter() - started
    finally:
        process.terminate()
        process.wait()


def bad_date(runs: int) -> None:
    """The bad --as-of figures."""
    crmscore = [sys.executable, "-m", "crmscore"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRMSCORE_")}
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        bare = _median([sys.executable, "-c", "pass"], env, cwd, runs)
        bad = _median([*crmscore, "score", "batch", "--as-of", "2019-13-01"], env, cwd, runs)
        heavy = "import crmscore.settings, features.store, serving.batch, mlflow"
        loaded = _median([sys.executable, "-c", heavy], {**env, "PYTHONPATH": str(ROOT)}, cwd, runs)
    print(f"python start and exit:                    {bare:6.2f} s")
    print(f"bad --as-of 2019-13-01 refused:           {bad:6.2f} s")
    print(f"importing what score batch loads:         {loaded:6.2f} s")
    print(f"ratio imports / bad date refusal:         {loaded / bad:6.1f}x")


def serve_ready(workspace: Path, dataset: Path, runs: int) -> None:
    """The `crmscore serve` to ready figures."""
    from crmscore import steps
    from crmscore.settings import load_settings

    env = {
        **os.environ,
        "CRMSCORE_HOME": str(workspace),
        "CRMSCORE_API_KEYS": "bench-key",
        "CRMSCORE_ADMIN_KEYS": "bench-admin",
    }
    cli, direct = [], []
    for _ in range(runs):
        port = _free_port()
        command = [sys.executable, "-m", "crmscore", "--dataset", str(dataset), "serve"]
        cli.append(_until_ready_line([*command, "--port", str(port)], env))
        settings = load_settings(workspace, dataset=str(dataset), env=env)
        launch = steps.serve(settings, env, port=_free_port())
        direct.append(_until_readyz(launch.command, launch.env, launch.port))
    c, d = statistics.median(cli), statistics.median(direct)
    print(f"crmscore serve -> 'ready on' line:        {c:6.2f} s (median of {runs})")
    print(f"bentoml serve (same service) -> /readyz:  {d:6.2f} s")
    print(f"ratio crmscore serve / bentoml serve:     {c / d:6.2f}x")


def main() -> None:
    """Print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workspace", type=Path)
    parser.add_argument("--dataset", type=Path)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-serve", action="store_true", help="only the bad-date figures")
    args = parser.parse_args()
    bad_date(args.runs)
    if args.no_serve:
        return
    if args.workspace is not None and args.dataset is not None:
        serve_ready(args.workspace.resolve(), args.dataset.resolve(), min(args.runs, 3))
        return
    from benchmarks.serving import _build_workspace

    with tempfile.TemporaryDirectory() as tmp:
        workspace, dataset = _build_workspace(Path(tmp))
        serve_ready(workspace, dataset, min(args.runs, 3))


if __name__ == "__main__":
    main()
