"""Materialize rates: SQLite and Redis, crmscore's fast path and Feast's stock materialize.

    .venv/bin/python benchmarks/materialize.py [--dataset online_retail] [--lines 0]

Builds one workspace (ingest, features, apply), then materializes the customer view four
times in the same run, each in its own process and into an empty online store: stock Feast
into SQLite (the reference), the fast path into SQLite, stock Feast into Redis, the fast path
into Redis (a redis-server started here on a free port, one database per run). Prints
customers/s and the ratios against stock SQLite and stock Redis. `--lines N` uses a
generated export of N lines instead of a dataset config.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

# benchmarks/features.py would shadow the `features` package: import from the project root.
sys.path[0] = str(Path(__file__).resolve().parent.parent)
VIEW = "customer_features"
RUNS = (("sqlite", True), ("sqlite", False), ("redis", True), ("redis", False))


def _settings(workspace: Path, dataset: str, store: str, redis_url: str) -> Any:
    from crmscore.settings import load_settings

    env = {**os.environ, "CRMSCORE_REDIS_URL": redis_url}
    overrides = {"feast": {"online_store": store}}
    return load_settings(workspace=workspace, dataset=dataset, overrides=overrides, env=env)


def _materialize(workspace: Path, dataset: str, store: str, stock: bool, url: str) -> dict:
    """One timed materialize of the customer view (run in a child process)."""
    import pandas as pd

    from features.store import fast_materialize, incremental_start, open_store

    settings = _settings(workspace, dataset, store, url)
    feast = open_store(settings.feast, settings.paths)
    view = feast.get_feature_view(VIEW)
    snap = pd.read_parquet(
        settings.paths.snapshot(VIEW), columns=["customer_id", "event_timestamp"]
    )
    end = (snap["event_timestamp"].max() + pd.Timedelta(seconds=1)).to_pydatetime()
    start = incremental_start(view, end, None)
    started = time.perf_counter()
    if stock:
        with redirect_stdout(sys.stderr):
            feast.materialize(start, end, [VIEW])
    else:
        fast_materialize(feast, VIEW, start, end)
    seconds = time.perf_counter() - started
    customers = int(snap.loc[snap["event_timestamp"] >= start, "customer_id"].nunique())
    return {"seconds": round(seconds, 2), "customers": customers, "features": len(view.features)}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _redis(folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A redis-server without persistence on a free port, and its address."""
    import redis

    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server is not installed (`make services` installs it as root)")
    port = _free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(folder)],
        stdout=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    while True:
        try:
            client.ping()
            return process, f"127.0.0.1:{port}"
        except redis.ConnectionError:
            time.sleep(0.1)


def _prepare(workspace: Path, dataset: str) -> None:
    from crmscore import steps

    settings = _settings(workspace, dataset, "sqlite", "")
    for step in (steps.ingest, steps.build_features, steps.apply):
        step(settings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", default="online_retail")
    parser.add_argument("--lines", type=int, default=0)
    parser.add_argument("--run", help=argparse.SUPPRESS)  # a child: store,stock,ws,url
    args = parser.parse_args()
    if args.run:
        store, stock, workspace, url = args.run.split("|")
        print(json.dumps(_materialize(Path(workspace), args.dataset, store, stock == "1", url)))
        return

    tmp = Path(tempfile.mkdtemp(prefix="crmscore_materialize_"))
    server, url = _redis(tmp)
    try:
        dataset = args.dataset
        if args.lines:
            from features.synthetic import dataset_yaml, synthetic_export, write_export

            csv = write_export(
                synthetic_export(args.lines, args.lines // 60, seed=1), tmp / "x.csv"
            )
            (tmp / "synthetic.yaml").write_text(dataset_yaml(csv))
            dataset = str(tmp / "synthetic.yaml")
        base = tmp / "base"
        _prepare(base, dataset)
        figures: dict[str, dict[str, Any]] = {}
        for db, (store, stock) in enumerate(RUNS):
            workspace = tmp / f"{store}_{'stock' if stock else 'fast'}"
            shutil.copytree(base, workspace, symlinks=True)
            run = f"{store}|{int(stock)}|{workspace}|{url},db={db}"
            command = [sys.executable, __file__, "--dataset", dataset, "--run", run]
            done = subprocess.run(command, check=True, capture_output=True, text=True)
            m = json.loads(done.stdout.strip().splitlines()[-1])
            m["customers_per_s"] = round(m["customers"] / max(m["seconds"], 1e-9))
            figures[f"{store} {'stock' if stock else 'fast'}"] = m
            print(f"{store} {'stock' if stock else 'fast'}: {m}", flush=True)
        rate = {k: v["customers_per_s"] for k, v in figures.items()}
        print(
            f"fast/stock on SQLite {rate['sqlite fast'] / rate['sqlite stock']:.1f}x; "
            f"on Redis {rate['redis fast'] / rate['redis stock']:.1f}x; "
            f"Redis fast / SQLite stock {rate['redis fast'] / rate['sqlite stock']:.1f}x",
            flush=True,
        )
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
