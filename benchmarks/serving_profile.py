"""Where one real-time answer's CPU goes: the API app (the same FastAPI app, state and models
as `crmscore serve`) called in process, without a network or server, under cProfile.

    .venv/bin/python benchmarks/serving_profile.py --workspace workspace [--requests 3000]

Prints the mean time per request and the functions with the most time of their own (and the
cumulative view) for `POST /v1/score` of one customer, then for pages of 1,000 customers.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import os
import pstats
import random
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)  # import the project's packages, not this folder's modules
KEY = "bench-key"


async def call(app: Any, body: bytes) -> tuple[int, bytes]:
    """One POST /v1/score through the ASGI app: its status and body."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/score",
        "raw_path": b"/v1/score",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"content-type", b"application/json"),
            (b"authorization", f"Bearer {KEY}".encode()),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    sent = False
    status, parts = 0, []

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.sleep(3600)
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            parts.append(message.get("body", b""))

    await app(scope, receive, send)
    return status, b"".join(parts)


def profile(app: Any, bodies: list[bytes], top: int) -> float:
    """Mean ms per request over `bodies` (after a warm-up); prints the profile's top lines."""

    async def run(items: list[bytes]) -> None:
        for body in items:
            status, answer = await call(app, body)
            if status != 200:
                raise SystemExit(f"status {status}: {answer[:300]!r}")

    loop = asyncio.new_event_loop()
    loop.run_until_complete(run(bodies[: max(1, len(bodies) // 10)]))
    started = time.perf_counter()
    loop.run_until_complete(run(bodies))
    mean_ms = (time.perf_counter() - started) / len(bodies) * 1e3
    profiler = cProfile.Profile()
    profiler.enable()
    loop.run_until_complete(run(bodies))
    profiler.disable()
    loop.close()
    for order in ("tottime", "cumulative"):
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).strip_dirs().sort_stats(order).print_stats(top)
        lines = out.getvalue().splitlines()
        start = next(i for i, line in enumerate(lines) if "ncalls" in line)
        print(f"\ntop {top} by {order}:")
        print("\n".join(lines[start : start + top + 1]))
    return mean_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workspace", type=Path, default=Path("workspace"))
    parser.add_argument("--dataset", help="dataset name or YAML of that workspace")
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--pages", type=int, default=5)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()

    from benchmarks.serving import customers
    from crmscore.settings import load_settings
    from crmscore.steps import service_settings
    from serving.api import create_app
    from serving.state import build_state

    os.environ["OMP_NUM_THREADS"] = "1"
    settings = load_settings(args.workspace.resolve(), dataset=args.dataset)
    env = {**os.environ, "CRMSCORE_API_KEYS": KEY}
    app = create_app()
    app.state.serving = build_state(service_settings(settings), env)
    ids = customers(settings.workspace, 1000)
    rng = random.Random(0)
    single = [json.dumps({"customer_id": rng.choice(ids)}).encode() for _ in range(args.requests)]
    print(f"one customer per request, {args.requests} requests")
    one = profile(app, single, args.top)
    page = json.dumps({"customer_ids": ids}).encode()
    print(f"\npages of {len(ids)} customers, {args.pages} requests")
    many = profile(app, [page] * args.pages, args.top)
    print(f"\nmean per request: one customer {one:.3f} ms; a page of {len(ids)} {many:.1f} ms")
    app.state.serving.close()


if __name__ == "__main__":
    main()
