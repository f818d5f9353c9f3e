"""Real-time API latency: the BentoML service against a bare FastAPI + uvicorn app doing the
identical work (the same app, online feature look-up and three models), in one run, with the
same load generator at concurrency 1 and 8: p50, p99 and throughput, and their ratio.

    .venv/bin/python benchmarks/serving.py [--workspace DIR] [--requests 4000]

Without --workspace, a workspace is built and trained here on a generated export (about
3 minutes). With it, that workspace's champions and online store are used (e.g. the demo's
`workspace/`). Each request scores one customer with all three models (churn, CLV, offers).
"""

from __future__ import annotations

import argparse
import gc
import http.client
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)  # import the project's packages, not this folder's modules
KEY = "bench-key"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _build_workspace(root: Path) -> tuple[Path, Path]:
    from crmscore import steps
    from crmscore.settings import load_settings
    from features.synthetic import dataset_yaml, synthetic_export, write_export

    csv = write_export(
        synthetic_export(lines=200_000, customers=2_000, seed=3, days=730), root / "export.csv"
    )
    dataset = root / "synthetic.yaml"
    dataset.write_text(dataset_yaml(csv) + "settings:\n  training:\n    bootstrap: 20\n")
    settings = load_settings(root / "ws", dataset=str(dataset))
    for title, step in steps.PIPELINE:  # the demo's pipeline: ingest ... train, promote
        try:
            step(settings)
        except steps.STEP_ERRORS as exc:
            raise SystemExit(f"crmscore {title} failed:\n{exc}") from exc
    return settings.workspace, dataset


def bare_app() -> object:
    """The same FastAPI app and state for plain uvicorn (a factory: one per worker process),
    from the service settings `crmscore serve` wrote, like the BentoML service."""
    from serving.api import create_app
    from serving.config import load_service_settings
    from serving.state import build_state

    env = dict(os.environ)
    app = create_app()
    app.state.serving = build_state(load_service_settings(env), env)
    return app


def _start(command: list[str], env: dict[str, str], port: int, log: Path) -> subprocess.Popen:
    with log.open("w") as out:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{command} exited:\n{log.read_text()[-2000:]}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/readyz")
            if conn.getresponse().status == 200:
                return process
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"{command} not ready in 180 s:\n{log.read_text()[-2000:]}")


def _stop(process: subprocess.Popen) -> None:
    os.killpg(process.pid, 15)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, 9)


def load(port: int, bodies: list[bytes], concurrency: int, requests: int) -> dict[str, float]:
    """`requests` POST /v1/score over `concurrency` keep-alive connections (after 200 warm-up
    requests); latency percentiles in ms and throughput in requests/s."""
    gc.disable()
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"}

    def worker(seed: int, count: int, keep: bool) -> None:
        rng = random.Random(seed)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        mine = []
        for _ in range(count):
            body = bodies[rng.randrange(len(bodies))]
            start = time.perf_counter()
            conn.request("POST", "/v1/score", body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            mine.append(time.perf_counter() - start)
            if response.status != 200:
                errors[0] += 1
        conn.close()
        if keep:
            with lock:
                latencies.extend(mine)

    def run(count: int, keep: bool) -> float:
        threads = [
            threading.Thread(target=worker, args=(i, count // concurrency, keep))
            for i in range(concurrency)
        ]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return time.perf_counter() - started

    run(200, keep=False)
    wall = run(requests, keep=True)
    gc.enable()
    latencies.sort()

    def q(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1e3

    return {
        "p50_ms": q(0.50),
        "p99_ms": q(0.99),
        "max_ms": latencies[-1] * 1e3,
        "rps": len(latencies) / wall,
        "errors": errors[0],
    }


def _customers(workspace: Path, n: int = 500) -> list[str]:
    import pandas as pd

    from features.catalog import Workspace

    snap = pd.read_parquet(
        Workspace(workspace).snapshot("customer_features"),
        columns=["customer_id", "event_timestamp"],
    )
    latest = snap[snap["event_timestamp"] == snap["event_timestamp"].max()]
    return sorted(latest["customer_id"].astype(str))[:n]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workspace", type=Path)
    parser.add_argument("--dataset", help="dataset name or YAML of that workspace")
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--workers", type=int, default=2, help="uvicorn workers of the bare app")
    args = parser.parse_args()

    tmp = tempfile.TemporaryDirectory()
    if args.workspace is None:
        print("building and training a workspace on a generated export ...", flush=True)
        workspace, dataset = _build_workspace(Path(tmp.name))
        args.workspace, args.dataset = workspace, str(dataset)
    workspace = args.workspace.resolve()
    ids = _customers(workspace)
    bodies = [json.dumps({"customer_id": c}).encode() for c in ids]
    env = {
        **os.environ,
        "CRMSCORE_HOME": str(workspace),
        "CRMSCORE_API_KEYS": KEY,
        "CRMSCORE_ADMIN_KEYS": "bench-admin",
        "BENTOML_DO_NOT_TRACK": "true",
        "OMP_NUM_THREADS": "1",
    }
    globals_ = ["--workspace", str(workspace)]
    if args.dataset:
        globals_ += ["--dataset", args.dataset]
        env["CRMSCORE_DATASET"] = args.dataset
    bare = f"bare FastAPI + uvicorn ({args.workers} workers)"
    uvicorn = ["-m", "uvicorn", "benchmarks.serving:bare_app", "--factory", "--workers"]
    servers = {
        "BentoML (crmscore serve)": [sys.executable, "-m", "crmscore", *globals_, "serve"],
        bare: [sys.executable, *uvicorn, str(args.workers), "--log-level", "warning"],
    }
    results: dict[str, dict[int, dict[str, float]]] = {}
    for name, command in servers.items():
        port = _free_port()
        command = [*command, "--port", str(port)]
        log = Path(tmp.name) / f"{port}.log"
        process = _start(command, env, port, log)
        try:
            results[name] = {c: load(port, bodies, c, args.requests) for c in (1, 8)}
        finally:
            _stop(process)
    print(f"\n{len(ids)} customers, {args.requests} requests per run, one customer per request")
    print("| server | concurrency | p50 ms | p99 ms | max ms | requests/s | errors |")
    print("|---|---|---|---|---|---|---|")
    for name, by_c in results.items():
        for c, r in by_c.items():
            print(
                f"| {name} | {c} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['max_ms']:.1f} "
                f"| {r['rps']:.0f} | {r['errors']:.0f} |"
            )
    bento, reference = results["BentoML (crmscore serve)"], results[bare]
    for c in (1, 8):
        ratio = bento[c]["p99_ms"] / reference[c]["p99_ms"]
        print(f"concurrency {c}: p99 BentoML / bare FastAPI = {ratio:.2f}")
    tmp.cleanup()


if __name__ == "__main__":
    main()
