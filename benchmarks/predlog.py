"""What the prediction log costs the requests a worker serves: the time a request spends
handing its rows to the log, and the longest time the log's writer keeps the GIL (during
which the worker's event loop cannot answer anyone), for the writer as it is
(`serving/predlog.py`: JSON lines parsed by Arrow) against the reference it replaced (a
pandas DataFrame of the rows' dicts), on the same rows in the same run.

    .venv/bin/python benchmarks/predlog.py [--rows 5000] [--features 60] [--runs 5]

The longest stall is measured by a probe thread that sleeps 0.5 ms in a loop: its worst
over-sleep while the writer writes one batch.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)  # import the project's packages, not this folder's modules

from serving.predlog import encode_rows, lines_table, log_rows  # noqa: E402


def answers(n: int, features: int, seed: int = 0) -> list[dict[str, Any]]:
    """API answers with `features` logged features (a fifth of them categorical)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        values: dict[str, Any] = {f"num_{j}": float(rng.random()) for j in range(features)}
        for j in range(0, features, 5):
            values[f"num_{j}"] = str(rng.choice(["a", "b", "c"]))
        out.append(
            {
                "customer_id": f"c{i}",
                "as_of": "2018-01-01T00:00:00+00:00",
                "cold_start": False,
                "_features": values,
                "churn": {"probability": float(rng.random())},
                "clv": {"value": float(rng.gamma(2, 100))},
                "offers": [{"offer_id": "o1"}],
                "model_versions": {"churn": "1@champion", "clv": "1@champion"},
            }
        )
    return out


def pandas_write(rows: list[dict[str, Any]], path: Path) -> None:
    """The reference: the writer before, a DataFrame of the rows' dicts."""
    frame = pd.DataFrame(rows)
    frame["as_of"] = pd.to_datetime(frame["as_of"], utc=True)
    for column in frame.select_dtypes(include="object").columns:
        frame[column] = frame[column].astype("string")
    frame.to_parquet(path, index=False)


def worst_stall(work: Callable[[], None]) -> tuple[float, float]:
    """(seconds `work` took, the probe thread's worst over-sleep in seconds)."""
    stop, worst = threading.Event(), [0.0]

    def probe() -> None:
        while not stop.is_set():
            started = time.perf_counter()
            time.sleep(0.0005)
            worst[0] = max(worst[0], time.perf_counter() - started - 0.0005)

    thread = threading.Thread(target=probe)
    thread.start()
    started = time.perf_counter()
    work()
    took = time.perf_counter() - started
    stop.set()
    thread.join()
    return took, worst[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5000, help="rows per written batch")
    parser.add_argument("--features", type=int, default=60)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    now = datetime.now(UTC)
    batch = answers(args.rows, args.features)
    rows = [log_rows([a], f"r{i}", "salt", now)[0] for i, a in enumerate(batch)]
    started = time.perf_counter()
    lines = [encode_rows([row]) for row in rows]
    encode_us = (time.perf_counter() - started) / len(rows) * 1e6
    folder = Path(tempfile.mkdtemp())
    figures: dict[str, list[tuple[float, float]]] = {"pandas (reference)": [], "arrow": []}
    for _ in range(args.runs):
        figures["pandas (reference)"].append(
            worst_stall(lambda: pandas_write(rows, folder / "a.parquet"))
        )
        figures["arrow"].append(
            worst_stall(lambda: pq.write_table(lines_table(b"".join(lines)), folder / "b.parquet"))
        )
    print(f"{args.rows} rows of {args.features} features per batch, {args.runs} runs, medians")
    print(f"encoding one request's row for the queue: {encode_us:.1f} µs")
    print("| writer | batch ms | worst GIL stall ms |")
    print("|---|---|---|")
    medians = {}
    for name, runs in figures.items():
        took = statistics.median(t for t, _ in runs) * 1000
        stall = statistics.median(s for _, s in runs) * 1000
        medians[name] = stall
        print(f"| {name} | {took:.1f} | {stall:.1f} |")
    print(f"stall ratio arrow / pandas: {medians['arrow'] / medians['pandas (reference)']:.2f}")


if __name__ == "__main__":
    main()
