"""Soak test of the real service: `crmscore serve` under steady load for a long time, with a
model reload every minute and a `features materialize` half-way; it prints the failed
requests (by status), the server's memory (RSS of all its processes) at the start and the
end, and latency percentiles, with the last minute's p99 against the first minute's (the
reference, measured in the same run).

    .venv/bin/python benchmarks/soak.py [--workspace DIR --dataset YAML] [--minutes 10]
        [--concurrency 8] [--reload-every 60]

Without --workspace, a workspace is built and trained here first (as benchmarks/serving.py
does). Requests: 9 in 10 score one customer, 1 in 10 a page of 20."""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)  # import the project's packages, not this folder's modules

from benchmarks.serving import (  # noqa: E402
    _free_port,
    _start,
    _stop,
    customers,
    trained_workspace,
)

KEY, ADMIN = "soak-key", "soak-admin"


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants, in MB (from /proc)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            rss[int(entry.name)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
            children.setdefault(int(fields[1]), []).append(int(entry.name))
        except (OSError, IndexError, ValueError):
            continue
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += rss.get(p, 0)
        todo += children.get(p, [])
    return total / 1e6


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1e3 if ordered else 0.0


def soak(
    port: int,
    ids: list[str],
    seconds: float,
    concurrency: int,
    events: Sequence[tuple[float, str]],
) -> tuple[list[tuple[float, float]], Counter[int]]:
    """Load for `seconds` over `concurrency` keep-alive connections; runs each (time, name)
    event meanwhile. Returns (start time, latency) per request and the statuses."""
    samples: list[tuple[float, float]] = []
    statuses: Counter[int] = Counter()
    lock = threading.Lock()
    stop = time.monotonic() + seconds
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"}

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        mine, seen = [], Counter[int]()
        while (now := time.monotonic()) < stop:
            body: dict[str, object]
            if rng.random() < 0.1:
                body = {"customer_ids": rng.sample(ids, 20)}
            else:
                body = {"customer_id": rng.choice(ids)}
            try:
                conn.request("POST", "/v1/score", body=json.dumps(body), headers=headers)
                response = conn.getresponse()
                response.read()
                seen[response.status] += 1
            except OSError:
                seen[0] += 1  # no answer at all
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                continue
            mine.append((now, time.monotonic() - now))
        conn.close()
        with lock:
            samples.extend(mine)
            statuses.update(seen)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for at, name in sorted(events):
        time.sleep(max(0.0, started + at - time.monotonic()))
        print(f"  {time.monotonic() - started:6.0f} s  {name}", flush=True)
        EVENTS[name.split()[0]](port)
    for t in threads:
        t.join()
    return samples, statuses


def _reload(port: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    conn.request("POST", "/v1/admin/reload", headers={"Authorization": f"Bearer {ADMIN}"})
    answer = conn.getresponse()
    answer.read()
    if answer.status != 200:
        print(f"  reload answered {answer.status}", flush=True)


MATERIALIZE: list[str] = []
EVENTS = {
    "reload": _reload,
    "materialize": lambda port: print(
        "  materialize:",
        subprocess.run(MATERIALIZE, cwd=ROOT, capture_output=True, text=True).returncode,
        flush=True,
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workspace", type=Path)
    parser.add_argument("--dataset", help="dataset name or YAML of that workspace")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--reload-every", type=float, default=60.0, help="seconds")
    args = parser.parse_args()

    tmp = tempfile.TemporaryDirectory()
    workspace, args.dataset = trained_workspace(args.workspace, args.dataset, Path(tmp.name))
    ids = customers(workspace)
    globals_ = ["--workspace", str(workspace)]
    if args.dataset:
        globals_ += ["--dataset", args.dataset]
    MATERIALIZE[:] = [sys.executable, "-m", "crmscore", *globals_, "features", "materialize"]
    env = {
        **os.environ,
        "CRMSCORE_API_KEYS": KEY,
        "CRMSCORE_ADMIN_KEYS": ADMIN,
        "BENTOML_DO_NOT_TRACK": "true",
    }
    port = _free_port()
    command = [sys.executable, "-m", "crmscore", *globals_, "serve", "--port", str(port)]
    log = Path(tmp.name) / "server.log"
    server = _start(command, env, port, log, KEY)
    try:
        seconds = args.minutes * 60
        print(f"warm-up 20 s, then {args.minutes:g} min at concurrency {args.concurrency}")
        soak(port, ids, 20, args.concurrency, [])
        rss_start = tree_rss_mb(server.pid)
        every = args.reload_every
        events = [(every * i, "reload") for i in range(1, int(seconds // every) + 1)]
        events = [(t, name) for t, name in events if t < seconds]
        events.append((seconds / 2, "materialize (half-way)"))
        samples, statuses = soak(port, ids, seconds, args.concurrency, events)
        rss_end = tree_rss_mb(server.pid)
    finally:
        _stop(server)
    begin = min(t for t, _ in samples)
    first = [d for t, d in samples if t - begin < 60]
    last = [d for t, d in samples if t - begin >= seconds - 60]
    everything = [d for _, d in samples]
    failed = sum(n for status, n in statuses.items() if status != 200)
    result = {
        "minutes": args.minutes,
        "concurrency": args.concurrency,
        "requests": len(everything),
        "failed": failed,
        "statuses": dict(statuses),
        "rss_start_mb": round(rss_start, 1),
        "rss_end_mb": round(rss_end, 1),
        "rss_growth": round(rss_end / rss_start - 1, 4),
        "p50_ms": round(_percentile(everything, 0.5), 2),
        "p99_ms": round(_percentile(everything, 0.99), 2),
        "p99_first_minute_ms": round(_percentile(first, 0.99), 2),
        "p99_last_minute_ms": round(_percentile(last, 0.99), 2),
    }
    result["p99_last_vs_first"] = round(
        result["p99_last_minute_ms"] / max(result["p99_first_minute_ms"], 1e-9), 3
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
