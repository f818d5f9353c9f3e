"""Real-time API latency: `crmscore serve` (the BentoML service) against a bare FastAPI +
uvicorn app doing the identical work (the same app, online feature look-up and three models),
in one run, with two load generators, wrk (C; installed with apt-get when missing) and a
Python keep-alive client, at concurrency 1 and 8: p50, p99 and throughput, their ratio, and
the time of a page of 1,000 customers. Both servers run at once and each point is measured
on one then the other, the order reversed every round; with each point the servers' CPU ms
per request and the machine's load average.

    .venv/bin/python benchmarks/serving.py [--workspace DIR] [--seconds 15]

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
import shutil
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


def _start(
    command: list[str], env: dict[str, str], port: int, log: Path, key: str = KEY
) -> subprocess.Popen:
    """Start the server and wait until it is ready and its answers are precomputed (asked
    with the user `key` the server was given)."""
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
                _until_precomputed(port, key)
                return process
        except OSError:
            pass
        time.sleep(0.5)
    _stop(process)
    raise SystemExit(f"{command} not ready in 180 s:\n{log.read_text()[-2000:]}")


def _until_precomputed(port: int, key: str, checks: int = 20) -> None:
    """Wait until `checks` answers in a row, each on a new connection (so from either
    worker), say that the worker's answers are precomputed (done in the background after
    the models load)."""
    deadline, seen = time.monotonic() + 900, 0
    while seen < checks:
        if time.monotonic() > deadline:
            raise SystemExit("the answers were not precomputed in 900 s")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/v1/models", headers={"Authorization": f"Bearer {key}"})
        answer = conn.getresponse()
        body = json.loads(answer.read()) if answer.status == 200 else {}
        seen = seen + 1 if body.get("precomputed_customers") else 0
        if not seen:
            time.sleep(1)


def _stop(process: subprocess.Popen) -> None:
    os.killpg(process.pid, 15)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, 9)


def load(port: int, bodies: list[bytes], concurrency: int, seconds: float) -> dict[str, float]:
    """POST /v1/score for `seconds` over `concurrency` Python keep-alive connections (after
    2 s of warm-up): latency percentiles in ms and throughput in requests/s."""
    gc.disable()
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"}

    def worker(seed: int, until: float, keep: bool) -> None:
        rng = random.Random(seed)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        mine = []
        while time.perf_counter() < until:
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

    def run(duration: float, keep: bool) -> float:
        until = time.perf_counter() + duration
        threads = [
            threading.Thread(target=worker, args=(i, until, keep)) for i in range(concurrency)
        ]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return time.perf_counter() - started

    run(2, keep=False)
    wall = run(seconds, keep=True)
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


# wrk's script: a random customer's body per request; the summary as one JSON line.
WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %(key)s"
local bodies = {%(bodies)s}
request = function()
  return wrk.format(nil, nil, nil, bodies[math.random(#bodies)])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'RESULT {"p50_ms": %%f, "p99_ms": %%f, "max_ms": %%f, "requests": %%d, "seconds": %%f, '
    .. '"errors": %%d}\\n',
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000,
    summary.requests, summary.duration / 1e6,
    e.connect + e.read + e.write + e.status + e.timeout))
end
"""


def ensure_wrk() -> str:
    """The path of wrk, installed from the Debian packages when missing."""
    found = shutil.which("wrk")
    if found is None:
        print("installing wrk (apt-get install -y wrk) ...", flush=True)
        subprocess.run(["apt-get", "install", "-y", "wrk"], check=True, capture_output=True)
        found = shutil.which("wrk")
    if found is None:
        raise SystemExit("wrk could not be installed: apt-get install -y wrk")
    return found


def load_wrk(
    wrk: str, port: int, script: Path, concurrency: int, seconds: float
) -> dict[str, float]:
    """The same load as `load`, generated by wrk (one thread, `concurrency` connections)."""
    url = f"http://127.0.0.1:{port}/v1/score"
    base = [wrk, "-t1", f"-c{concurrency}", "-s", str(script), "--timeout", "10s"]
    subprocess.run([*base, "-d2s", url], check=True, capture_output=True)  # warm-up
    out = subprocess.run(
        [*base, f"-d{seconds:.0f}s", url], check=True, capture_output=True, text=True
    ).stdout
    line = next(x for x in out.splitlines() if x.startswith("RESULT "))
    r = json.loads(line[len("RESULT ") :])
    return {**r, "rps": r["requests"] / r["seconds"]}


def page(port: int, ids: list[str], repeats: int = 10) -> dict[str, float]:
    """A page of `ids` in one POST, `repeats` times after one warm-up: median and max ms."""
    body = json.dumps({"customer_ids": ids}).encode()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    times = []
    for i in range(repeats + 1):
        start = time.perf_counter()
        conn.request("POST", "/v1/score", body=body, headers=headers)
        response = conn.getresponse()
        answer = response.read()
        if response.status != 200 or len(json.loads(answer)["scores"]) != len(ids):
            raise SystemExit(f"page answered {response.status}: {answer[:300]!r}")
        if i:
            times.append(time.perf_counter() - start)
    conn.close()
    times.sort()
    return {"median_ms": times[len(times) // 2] * 1e3, "max_ms": times[-1] * 1e3}


def uptime() -> str:
    """The machine's load averages (1, 5, 15 minutes), as `uptime` prints them."""
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and all its descendants (server workers)."""
    import psutil

    root = psutil.Process(pid)
    total = 0.0
    for process in [root, *root.children(recursive=True)]:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


Point = tuple[str, str, int, int]  # server, client, concurrency, round


def measure(
    processes: dict[str, tuple[int, subprocess.Popen]],
    wrk: str,
    script: Path,
    bodies: list[bytes],
    seconds: float,
    rounds: int,
) -> dict[Point, dict[str, float]]:
    """Every (client, concurrency) point on every server, the servers' order reversed each
    round (so neither always runs first on a warmer or quieter machine); with each point the
    servers' CPU ms per answered request and the load average before it."""
    results: dict[Point, dict[str, float]] = {}
    names = list(processes)
    for r in range(rounds):
        for client in ("wrk", "Python"):
            for c in (1, 8):
                for name in names if r % 2 == 0 else names[::-1]:
                    port, process = processes[name]
                    load_before, cpu_before = os.getloadavg()[0], tree_cpu_seconds(process.pid)
                    if client == "wrk":
                        res = load_wrk(wrk, port, script, c, seconds)
                    else:
                        res = load(port, bodies, c, seconds)
                    cpu = tree_cpu_seconds(process.pid) - cpu_before
                    # the warm-up's 2 s are in the CPU seconds too
                    answered = res["rps"] * (seconds + 2)
                    results[(name, client, c, r)] = {
                        **res,
                        "cpu_ms": 1e3 * cpu / answered,
                        "load": load_before,
                    }
    return results


def report(
    results: dict[Point, dict[str, float]],
    pages: dict[str, dict[str, float]],
    serve: str,
    bare: str,
    customers: int,
    seconds: float,
) -> None:
    """Print the table, the pages and the p99 ratios of `serve` over `bare`, per round."""
    print(f"\n{customers} customers, {seconds:.0f} s per point, one customer per request")
    print(
        "| round | server | client | concurrency | p50 ms | p99 ms | max ms | requests/s "
        "| CPU ms/request | errors | load before |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for (name, client, c, r), x in sorted(results.items(), key=lambda kv: (kv[0][3], kv[0][1:3])):
        print(
            f"| {r + 1} | {name} | {client} | {c} | {x['p50_ms']:.2f} | {x['p99_ms']:.2f} "
            f"| {x['max_ms']:.1f} | {x['rps']:.0f} | {x['cpu_ms']:.3f} | {x['errors']:.0f} "
            f"| {x['load']:.2f} |"
        )
    print("\npage of 1,000 customers in one request (10 requests):")
    for name, x in pages.items():
        print(f"  {name}: median {x['median_ms']:.0f} ms, max {x['max_ms']:.0f} ms")
    print("\np99 ratio `crmscore serve` / bare uvicorn, per round:")
    rounds = sorted({r for *_, r in results})
    for client in ("wrk", "Python"):
        for c in (1, 8):
            ratios = [
                results[(serve, client, c, r)]["p99_ms"] / results[(bare, client, c, r)]["p99_ms"]
                for r in rounds
            ]
            print(f"  {client}, concurrency {c}: " + ", ".join(f"{x:.2f}" for x in ratios))


def trained_workspace(
    workspace: Path | None, dataset: str | None, scratch: Path
) -> tuple[Path, str | None]:
    """The benchmark's workspace and dataset: the given ones, or a workspace built and
    trained in `scratch` on a generated export."""
    if workspace is None:
        print("building and training a workspace on a generated export ...", flush=True)
        built, yaml = _build_workspace(scratch)
        return built.resolve(), str(yaml)
    return workspace.resolve(), dataset


def customers(workspace: Path, n: int = 500) -> list[str]:
    """The first `n` customers (by id) of the latest snapshot."""
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
    parser.add_argument("--seconds", type=float, default=15, help="per measured point")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn workers of the bare app")
    parser.add_argument(
        "--rounds", type=int, default=2, help="rounds, each server's order reversed every round"
    )
    args = parser.parse_args()

    wrk = ensure_wrk()
    tmp = tempfile.TemporaryDirectory()
    workspace, args.dataset = trained_workspace(args.workspace, args.dataset, Path(tmp.name))
    ids = customers(workspace, 1000)
    singles = ids[:500]
    bodies = [json.dumps({"customer_id": c}).encode() for c in singles]
    script = Path(tmp.name) / "score.lua"
    script.write_text(
        WRK_SCRIPT % {"key": KEY, "bodies": ", ".join(json.dumps(b.decode()) for b in bodies)}
    )
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
    serve, bare = "`crmscore serve`", f"bare uvicorn ({args.workers} workers)"
    uvicorn = ["-m", "uvicorn", "benchmarks.serving:bare_app", "--factory", "--workers"]
    servers = {
        serve: [sys.executable, "-m", "crmscore", *globals_, "serve"],
        bare: [sys.executable, *uvicorn, str(args.workers), "--log-level", "warning"],
    }
    processes: dict[str, tuple[int, subprocess.Popen]] = {}
    try:
        for name, command in servers.items():
            port = _free_port()
            log = Path(tmp.name) / f"{port}.log"
            processes[name] = (port, _start([*command, "--port", str(port)], env, port, log))
        results = measure(processes, wrk, script, bodies, args.seconds, args.rounds)
        pages = {name: page(port, ids) for name, (port, _) in processes.items()}
    finally:
        for _, process in processes.values():
            _stop(process)
    report(results, pages, serve, bare, len(singles), args.seconds)
    tmp.cleanup()


if __name__ == "__main__":
    main()
