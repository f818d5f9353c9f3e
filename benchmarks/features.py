"""Feature pipeline benchmark: ingest, feature build and materialize, with peak memory.

    .venv/bin/python benchmarks/features.py [--lines 10000000] [--skip-real] [--skip-synthetic]

Each stage runs in its own process so its peak memory (max RSS) is its own. Materialize is
measured twice in the same run on copies of the same workspace: Feast's stock `materialize`
(the reference) and the fast writer, for the customer view (54 features); the ratio is printed.
Real data: ../shared/datasets/online_retail (both exports). Synthetic: a generated export.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# This file's name would shadow the `features` package: import from the project root instead.
sys.path[0] = str(ROOT)


def _stage(name: str, workspace: Path, dataset: str) -> dict[str, Any]:
    """Run one stage in this process and return its figures."""
    from crmscore.settings import load_settings
    from features.ingest import ingest
    from features.snapshots import build_snapshots, read_tables
    from features.store import apply_repo, fast_materialize, incremental_start, open_store

    settings = load_settings(workspace=workspace, dataset=dataset)
    started = time.perf_counter()
    out: dict[str, Any] = {}
    if name == "ingest":
        report = ingest(settings.dataset, settings.data_root, settings.paths)
        out = {k: report[k] for k in ("input_rows", "accepted_rows", "customers")}
    elif name == "features":
        tables = read_tables(settings.paths)
        meta = build_snapshots(
            tables, settings.features, settings.labels, settings.segments, settings.paths
        )
        out = {"cutoffs": len(meta["cutoffs"]), "rows": meta["rows"]["customer_features"]}
    elif name == "apply":
        apply_repo(settings.feast, settings.paths)
    elif name in ("materialize_stock", "materialize_fast"):
        import pandas as pd

        store = open_store(settings.feast, settings.paths)
        view = store.get_feature_view("customer_features")
        snap = pd.read_parquet(
            settings.paths.snapshot("customer_features"),
            columns=["customer_id", "event_timestamp"],
        )
        end = (snap["event_timestamp"].max() + pd.Timedelta(seconds=1)).to_pydatetime()
        start = incremental_start(view, end, None)
        started = time.perf_counter()
        if name == "materialize_stock":
            with redirect_stdout(sys.stderr):
                store.materialize(start, end, ["customer_features"])
        else:
            fast_materialize(store, "customer_features", start, end)
        in_window = snap["event_timestamp"] >= pd.Timestamp(start)
        out = {
            "customers": int(snap.loc[in_window, "customer_id"].nunique()),
            "features": len(view.features),
        }
    out["seconds"] = round(time.perf_counter() - started, 2)
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def peak_rss_mb() -> int:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss, not inherited from the
    process that started this one)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def run_stage(name: str, workspace: Path, dataset: str) -> dict[str, Any]:
    """Run a stage in a child process; return its JSON figures."""
    cmd = [
        sys.executable,
        __file__,
        "--stage",
        name,
        "--workspace",
        str(workspace),
        "--dataset",
        dataset,
    ]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def pipeline(label: str, workspace: Path, dataset: str) -> dict[str, Any]:
    """Ingest, features, apply and both materialize paths; prints figures as it goes."""
    figures: dict[str, Any] = {}
    for stage in ("ingest", "features", "apply"):
        figures[stage] = run_stage(stage, workspace, dataset)
        print(f"[{label}] {stage}: {figures[stage]}", flush=True)
    stock_ws = workspace.with_name(workspace.name + "_stock")
    shutil.rmtree(stock_ws, ignore_errors=True)
    shutil.copytree(workspace, stock_ws)
    # Both stores point at the same snapshots; only the online store and registry differ.
    figures["materialize_fast"] = run_stage("materialize_fast", workspace, dataset)
    figures["materialize_stock"] = run_stage("materialize_stock", stock_ws, dataset)
    for key in ("materialize_fast", "materialize_stock"):
        m = figures[key]
        m["customers_per_s"] = round(m["customers"] / max(m["seconds"], 1e-9))
        print(f"[{label}] {key}: {m}", flush=True)
    ing = figures["ingest"]
    ing["rows_per_s"] = round(ing["input_rows"] / ing["seconds"])
    ratio = (
        figures["materialize_fast"]["customers_per_s"]
        / figures["materialize_stock"]["customers_per_s"]
    )
    print(
        f"[{label}] ingest {ing['rows_per_s']:,} rows/s; features "
        f"{figures['features']['seconds']} s for {figures['features']['cutoffs']} cutoffs; "
        f"materialize fast/stock = {ratio:.1f}x",
        flush=True,
    )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stage")
    parser.add_argument("--workspace", type=Path)
    parser.add_argument("--dataset", default="online_retail")
    parser.add_argument("--lines", type=int, default=10_000_000)
    parser.add_argument("--customers", type=int, default=200_000)
    parser.add_argument("--skip-real", action="store_true")
    parser.add_argument("--skip-synthetic", action="store_true")
    args = parser.parse_args()
    if args.stage:
        print(json.dumps(_stage(args.stage, args.workspace, args.dataset)))
        return

    tmp = Path(tempfile.mkdtemp(prefix="crmscore_bench_"))
    try:
        if not args.skip_real:
            pipeline("online_retail", tmp / "real", "online_retail")
        if not args.skip_synthetic:
            from features.synthetic import dataset_yaml, synthetic_export, write_export

            started = time.perf_counter()
            csv = write_export(
                synthetic_export(args.lines, args.customers, seed=1), tmp / "synthetic.csv"
            )
            print(
                f"[synthetic] generated {args.lines:,} target lines in "
                f"{time.perf_counter() - started:.0f} s",
                flush=True,
            )
            config = tmp / "synthetic.yaml"
            config.write_text(dataset_yaml(csv))
            pipeline("synthetic", tmp / "synthetic", str(config))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
