"""API latency on the Redis online store against SQLite (the reference), in one run.

    .venv/bin/python benchmarks/serving_stores.py [--workspace DIR --dataset YAML] [--seconds 10]

One trained workspace (built here on a generated export without --workspace) is copied; the
copy is switched to a redis-server started here on a free port (`features apply` and
`materialize` into it). `crmscore serve` runs on each in turn and a Python keep-alive client
(benchmarks/serving.py's) sends one customer per request at concurrency 1 and 8: default
requests (answered from the answers precomputed per worker: no store read) and `explain:
true` requests (reason codes: a store read per request). Prints p50/p99 per store, the
Redis/SQLite ratio and the machine's load averages.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)  # import the project's packages, not this folder's modules

from benchmarks import serving as bench  # noqa: E402
from benchmarks.materialize import _redis  # noqa: E402

KINDS = {"default": {}, "explain": {"explain": True}}


def redis_dataset(dataset: Path, folder: Path) -> Path:
    """A copy of the dataset YAML whose settings select the Redis online store."""
    data = yaml.safe_load(dataset.read_text())
    settings = data.setdefault("settings", {})
    settings["feast"] = {**settings.get("feast", {}), "online_store": "redis"}
    out = folder / f"redis-{dataset.name}"
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    return out


def switch_to_redis(workspace: Path, dataset: Path, url: str, folder: Path) -> tuple[Path, Path]:
    """A copy of `workspace` with its online store on Redis at `url`, materialized."""
    from crmscore import steps
    from crmscore.settings import load_settings

    copy = folder / "redis-ws"
    shutil.copytree(workspace, copy, symlinks=True)
    on_redis = redis_dataset(dataset, folder)
    settings = load_settings(
        copy, dataset=str(on_redis), env={**os.environ, "CRMSCORE_REDIS_URL": url}
    )
    steps.apply(settings)
    steps.materialize(settings)
    return copy, on_redis


def measure(
    workspace: Path, dataset: Path, env: dict[str, str], ids: list[str], seconds: float, log: Path
) -> dict[tuple[str, int], dict[str, float]]:
    """p50/p99 of `crmscore serve` on `workspace` per request kind and concurrency."""
    port = bench._free_port()
    command = [sys.executable, "-m", "crmscore", "--workspace", str(workspace)]
    command += ["--dataset", str(dataset), "serve", "--port", str(port)]
    process = bench._start(command, {**env, "CRMSCORE_HOME": str(workspace)}, port, log)
    out = {}
    try:
        for kind, extra in KINDS.items():
            bodies = [json.dumps({"customer_id": c, **extra}).encode() for c in ids]
            for concurrency in (1, 8):
                out[(kind, concurrency)] = bench.load(port, bodies, concurrency, seconds)
    finally:
        bench._stop(process)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workspace", type=Path)
    parser.add_argument("--dataset", help="the workspace's dataset YAML")
    parser.add_argument("--seconds", type=float, default=10, help="per measured point")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="crmscore_serving_stores_"))
    server, url = _redis(tmp)
    try:
        workspace, dataset = bench.trained_workspace(args.workspace, args.dataset, tmp)
        if dataset is None:
            raise SystemExit("--dataset: the YAML of the workspace is needed to switch it")
        on_redis, redis_yaml = switch_to_redis(workspace, Path(dataset), url, tmp)
        ids = bench.customers(workspace, 500)
        env = {
            **os.environ,
            "CRMSCORE_API_KEYS": bench.KEY,
            "CRMSCORE_ADMIN_KEYS": "bench-admin",
            "BENTOML_DO_NOT_TRACK": "true",
            "OMP_NUM_THREADS": "1",
            "CRMSCORE_REDIS_URL": url,
        }
        results, loads = {}, {}
        for store, (ws, yaml_file) in {
            "SQLite": (workspace, Path(dataset)),
            "Redis": (on_redis, redis_yaml),
        }.items():
            loads[store] = bench.uptime()
            results[store] = measure(ws, yaml_file, env, ids, args.seconds, tmp / f"{store}.log")
            loads[store] += f" → {bench.uptime()}"
    finally:
        server.terminate()
        server.wait()
    print(f"\n{len(ids)} customers, {args.seconds:.0f} s per point, one customer per request")
    print("| request | concurrency | store | p50 ms | p99 ms | requests/s | errors |")
    print("|---|---|---|---|---|---|---|")
    for (kind, c), _ in results["SQLite"].items():
        for store in results:
            r = results[store][(kind, c)]
            print(
                f"| {kind} | {c} | {store} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} "
                f"| {r['rps']:.0f} | {r['errors']:.0f} |"
            )
    print("\nRedis / SQLite:")
    for kind, c in results["SQLite"]:
        red, lite = results["Redis"][(kind, c)], results["SQLite"][(kind, c)]
        print(
            f"  {kind}, concurrency {c}: p50 {red['p50_ms'] / lite['p50_ms']:.2f}, "
            f"p99 {red['p99_ms'] / lite['p99_ms']:.2f}"
        )
    print("\nload averages (1, 5, 15 min) before → after each store's run:")
    for store, text in loads.items():
        print(f"  {store}: {text}")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
