"""Scale benchmark (#11): ingest, feature build (in-process and on a local Ray), apply and
materialize, training (on a seeded, stratified sample of customers above
`training.max_training_rows`) and batch scoring of every customer, on a generated export of
N lines, with the time, lines/s and peak memory of every process of each stage.

    nice -n 10 .venv/bin/python benchmarks/scale.py --lines 10000000 [--partitions 16]
        [--stages ingest,features_local] [--reference DIR] [--keep DIR]
        [--max-training-rows N]

The export is written once per size (`export_<lines>.csv` in the kept folder, published by
a rename) and reused by later runs with `--keep`.

`--reference DIR`: a checkout of the code to compare with (`git archive COMMIT | tar -x -C
DIR`); its feature build runs on the same ingested tables just before this code's, the ratio
of the times is printed and the two builds' outputs are compared (identical, or the largest
difference).

Each stage runs in its own process; a sampler polls the resident memory (RSS) and the CPU
time of that process and of all its descendants (Ray's raylet, GCS and workers) every 0.2 s
and reports the peak memory of the whole tree, of the stage's own process and of the
largest other process, and the CPU seconds of the tree (up to the last sample). RSS counts
pages of Ray's shared-memory object store in every process that maps them, so the tree's
sum is an upper bound. The reference, measured in the same run, is the in-process feature
build: the Ray build's time is given as a ratio to it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)  # this file's folder holds a features.py: import the project's

# Lines per generated piece (bounded memory while writing the export) and per customer
# (10M lines: 157k customers, as in the issue).
PIECE_LINES = 1_000_000
LINES_PER_CUSTOMER = 64


def write_scaled_export(lines: int, path: Path, seed: int = 1) -> Path:
    """A synthetic export of about `lines` lines over 2 years, written piece by piece: each
    piece has its own customers and invoice numbers."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    from features.synthetic import synthetic_export

    partial = path.with_name(path.name + ".partial")
    writer = None
    pieces = max(1, -(-lines // PIECE_LINES))
    for piece in range(pieces):
        n = min(PIECE_LINES, lines - piece * PIECE_LINES)
        frame = synthetic_export(n, max(1, n // LINES_PER_CUSTOMER), seed=seed + piece)
        frame["Customer ID"] = (frame["Customer ID"].astype(int) + piece * 10_000_000).astype(str)
        frame["Invoice"] = frame["Invoice"].str.replace(r"^(C?)", rf"\g<1>{piece:04d}", regex=True)
        table = pa.Table.from_pandas(frame, preserve_index=False)
        if writer is None:
            writer = pacsv.CSVWriter(partial, table.schema)
        writer.write_table(table)
    assert writer is not None
    writer.close()
    partial.rename(path)
    return path


STAGES = ("ingest", "features_local", "features_ray", "materialize", "train", "score")


class StepLines(logging.Handler):
    """Keeps the stage lines the feature build logs (`features.progress.stage`)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def stage(
    name: str, workspace: Path, dataset: str, partitions: int, max_training_rows: int | None = None
) -> dict[str, Any]:
    """Run one stage in this process; its figures."""
    from crmscore import steps
    from crmscore.settings import load_settings
    from features.config import EngineParams
    from features.ingest import ingest
    from features.snapshots import build_snapshots, partitioned_tables

    overrides: dict[str, Any] = {"features": {"partitions": partitions}}
    if max_training_rows is not None:
        overrides["training"] = {"max_training_rows": max_training_rows}
    settings = load_settings(workspace, dataset=dataset, overrides=overrides)
    paths = settings.paths
    started = time.perf_counter()
    out: dict[str, Any] = {}
    if name == "ingest":
        report = ingest(settings.dataset, settings.data_root, paths, partitions)
        out = {"lines": report["input_rows"], "customers": report["customers"]}
    elif name in ("features_local", "features_ray"):
        engine = (
            EngineParams(kind="ray", num_cpus=os.cpu_count())
            if name == "features_ray"
            else EngineParams()
        )
        step_lines = StepLines()
        build_log = logging.getLogger("features.snapshots")
        build_log.setLevel(logging.INFO)
        build_log.addHandler(step_lines)
        tables = partitioned_tables(paths)
        meta = build_snapshots(
            tables, settings.features, settings.labels, settings.segments, paths, engine=engine
        )
        out = {
            "partitions": meta["partitions"],
            "cutoffs": len(meta["cutoffs"]),
            "rows": meta["rows"]["customer_features"],
            "steps": step_lines.lines,
        }
    elif name == "materialize":  # what `crmscore features apply` and `materialize` do
        steps.apply(settings)
        out = {"entities": steps.materialize(settings)["entities"]}
    elif name == "train":
        trained = steps.train(settings)
        promoted = steps.promote(settings)
        out = {"models": trained["models"], "promoted": promoted["decisions"]}
    elif name == "score":
        from datetime import date

        answer = steps.score_batch(settings, date.fromisoformat(steps.latest_cutoff(settings)))
        out = {key: answer[key] for key in ("customers", "partitions", "parquet", "csv")}
    out["seconds"] = round(time.perf_counter() - started, 1)
    return out


def sample_tree(process: subprocess.Popen[bytes]) -> dict[str, Any]:
    """Wait for `process`, sampling the RSS of it and its descendants; peaks in MB."""
    root = psutil.Process(process.pid)
    peak_tree = peak_own = peak_other = 0
    largest = ""
    cpu: dict[int, float] = {}  # the last CPU time (user + system) seen of each process
    while process.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            break
        sizes = []
        for proc in tree:
            try:
                sizes.append((proc.memory_info().rss, proc))
                times = proc.cpu_times()
                cpu[proc.pid] = times.user + times.system
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        peak_tree = max(peak_tree, sum(rss for rss, _ in sizes))
        for rss, proc in sizes:
            if proc.pid == root.pid:
                peak_own = max(peak_own, rss)
            elif rss > peak_other:
                peak_other = rss
                try:
                    largest = " ".join(proc.cmdline()[:3])[:60] or proc.name()
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    largest = "?"
        time.sleep(0.2)
    mb = 1024 * 1024
    return {
        "peak_tree_mb": round(peak_tree / mb),
        "peak_stage_process_mb": round(peak_own / mb),
        "peak_other_process_mb": round(peak_other / mb),
        "largest_other_process": largest,
        # CPU time of the tree (to the last sample): what the stage costs on a busy machine.
        "cpu_seconds": round(sum(cpu.values()), 1),
    }


def compare_builds(workspace: Path) -> dict[str, Any]:
    """The last two feature builds of `workspace` (the reference's, then this code's): per
    output, identical or the largest difference."""
    import numpy as np
    import pandas as pd

    from features.catalog import Workspace
    from features.snapshots import OUTPUTS

    versions = Workspace(workspace).snapshot_versions
    *_, before, after = sorted(versions.glob("v-*"))
    out: dict[str, Any] = {}
    for name in OUTPUTS:
        frames = []
        for version in (before, after):
            frame = pd.read_parquet(version / f"{name}.parquet")
            frame = frame.drop(columns=["created_timestamp"], errors="ignore")
            keys = [c for c in ("event_timestamp", "customer_id", "offer_id") if c in frame]
            frames.append(frame.sort_values(keys, kind="stable").reset_index(drop=True))
        old, new = frames
        if old.equals(new):
            out[name] = "identical"
            continue
        if list(old.columns) != list(new.columns) or len(old) != len(new):
            out[name] = f"differs: columns or rows ({len(old)} -> {len(new)} rows)"
            continue
        worst = 0.0
        for column in old.columns:
            if not old[column].equals(new[column]):
                if not pd.api.types.is_float_dtype(old[column]):
                    worst = float("inf")
                    break
                a, b = old[column].to_numpy(float), new[column].to_numpy(float)
                worst = max(worst, float(np.nanmax(np.abs(a - b), initial=0.0)))
        out[name] = f"largest difference {worst:.3g}"
    return out


def run_stage(
    name: str,
    workspace: Path,
    dataset: str,
    partitions: int,
    code: Path = ROOT,
    max_training_rows: int | None = None,
) -> dict[str, Any]:
    """A stage in a child process (of the code in `code`), sampled; its figures and memory
    peaks."""
    script = code / "benchmarks" / "scale.py"
    command = [sys.executable, str(script), "--stage", name, "--workspace", str(workspace)]
    command += ["--dataset", dataset, "--partitions", str(partitions)]
    if max_training_rows is not None:
        command += ["--max-training-rows", str(max_training_rows)]
    log = workspace.parent / f"{name}{'' if code == ROOT else '_reference'}.log"
    with log.open("wb") as err:
        child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=err)
        memory = sample_tree(child)
        stdout = child.stdout.read().decode() if child.stdout else ""
    if child.returncode:
        raise SystemExit(f"stage {name} failed:\n{log.read_text()[-3000:]}")
    figures = dict(json.loads(stdout.strip().splitlines()[-1]))
    return {**figures, **memory}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stage")
    parser.add_argument("--workspace", type=Path)
    parser.add_argument("--dataset")
    parser.add_argument("--lines", type=int, default=10_000_000)
    parser.add_argument("--partitions", type=int, default=16)
    parser.add_argument("--keep", type=Path, help="keep the export and workspace here")
    parser.add_argument("--stages", default=",".join(STAGES), help="comma-separated stages")
    parser.add_argument("--reference", type=Path, help="a checkout of the code to compare with")
    parser.add_argument(
        "--max-training-rows", type=int, help="training.max_training_rows (default: settings)"
    )
    args = parser.parse_args()
    if args.stage:
        answer = stage(
            args.stage, args.workspace, args.dataset, args.partitions, args.max_training_rows
        )
        print(json.dumps(answer, default=str))
        return
    stages = args.stages.split(",")
    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        parser.error(f"--stages: unknown {unknown}; expected some of {list(STAGES)}")

    from features.synthetic import dataset_yaml

    tmp = args.keep or Path(tempfile.mkdtemp(prefix="crmscore_scale_"))
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        started = time.perf_counter()
        csv = tmp / f"export_{args.lines}.csv"
        if not csv.exists():
            write_scaled_export(args.lines, csv)
        size = csv.stat().st_size / 1e9
        print(
            f"export of {args.lines:,} lines ({size:.2f} GB) ready in "
            f"{time.perf_counter() - started:.0f} s",
            flush=True,
        )
        config = tmp / "scale.yaml"
        config.write_text(dataset_yaml(csv))
        workspace = tmp / "ws"
        figures: dict[str, dict[str, Any]] = {}
        print(f"load before: {os.getloadavg()}", flush=True)
        for name in stages:
            if name == "features_local" and args.reference:
                reference = run_stage(name, workspace, str(config), args.partitions, args.reference)
                reference["lines_per_s"] = round(args.lines / reference["seconds"])
                figures["features_reference"] = reference
                print(f"features_reference: {json.dumps(reference)}", flush=True)
            figures[name] = run_stage(
                name, workspace, str(config), args.partitions, ROOT, args.max_training_rows
            )
            figures[name]["lines_per_s"] = round(args.lines / figures[name]["seconds"])
            print(f"{name}: {json.dumps(figures[name])}", flush=True)
            print(f"load after {name}: {os.getloadavg()}", flush=True)
        if "features_reference" in figures:
            ratio = figures["features_local"]["seconds"] / figures["features_reference"]["seconds"]
            print(f"features build: this code / reference time = {ratio:.3f}", flush=True)
            print(f"outputs against the reference: {compare_builds(workspace)}", flush=True)
        if "features_ray" in figures and "features_local" in figures:
            ratio = figures["features_ray"]["seconds"] / figures["features_local"]["seconds"]
            print(f"features build: ray/in-process time = {ratio:.2f}", flush=True)
        print(f"load after: {os.getloadavg()}", flush=True)
    finally:
        if args.keep is None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
