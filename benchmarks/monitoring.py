"""Drift report time and peak memory on 100k and 1M rows with every customer feature.

Data: generated rows with the real feature schema (features.names: numerical and
categorical customer features, the CLV service's columns) and a shifted copy as current.
Each case runs in a fresh process so its peak RSS is its own. The reference measured in the
same run: a plain pandas/scipy per-column two-sample KS over the same (unsampled) data; and
sampled vs unsampled reports on 100k rows (how much the 50k-row sample changes the scores).

    .venv/bin/python benchmarks/monitoring.py            # 100k and 1M rows
    .venv/bin/python benchmarks/monitoring.py --rows 100000
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)  # import the project's packages, not this folder's modules

from features.feast_repo import SERVICE_FEATURES  # noqa: E402
from features.names import ALL_FEATURES  # noqa: E402

FEATURES = SERVICE_FEATURES["clv_v1"]["customer_features"]


def frame(rows: int, seed: int, shift: float) -> pd.DataFrame:
    """Rows with the CLV model's features; `shift` moves every numerical column."""
    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {}
    for name in FEATURES:
        if ALL_FEATURES[name].dtype == "string":
            out[name] = rng.choice(["a", "b", "c", "d", "e"], rows)
        else:
            out[name] = rng.lognormal(1.0, 1.0, rows) + shift
    out["prediction"] = rng.random(rows)
    return pd.DataFrame(out)


def run_case(rows: int, sample_rows: int, mode: str) -> dict[str, Any]:
    """One measurement in this process."""
    reference, current = frame(rows, 0, 0.0), frame(rows, 1, 0.05)
    started = time.perf_counter()
    if mode == "ks":
        from scipy.stats import ks_2samp

        scores = {
            c: float(ks_2samp(reference[c], current[c]).statistic)
            for c in FEATURES
            if ALL_FEATURES[c].dtype != "string"
        }
        drifted = -1
    else:
        from monitoring.config import MonitoringParams
        from monitoring.drift import drift_check

        result = drift_check(
            reference, current, FEATURES, MonitoringParams(sample_rows=sample_rows), "clv"
        )
        result.snapshot.get_html_str(as_iframe=False)
        scores = {
            c: f["drift"]["score"] for c, f in result.summary["features"].items() if f["drift"]
        }
        drifted = len(result.summary["drifted_features"])
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "rows": rows,
        "mode": mode,
        "sample_rows": sample_rows,
        "seconds": round(seconds, 2),
        "peak_mb": round(peak_mb),
        "drifted": drifted,
        "scores": scores,
    }


def measure(rows: int, sample_rows: int, mode: str) -> dict[str, Any]:
    """`run_case` in a fresh process."""
    out = subprocess.run(
        [sys.executable, __file__, "--case", str(rows), str(sample_rows), mode],
        check=True,
        capture_output=True,
        text=True,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, nargs="*", default=[100_000, 1_000_000])
    parser.add_argument("--case", nargs=3)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(int(args.case[0]), int(args.case[1]), args.case[2])))
        return
    print(f"{len(FEATURES)} features + prediction; 2 cores")
    for rows in args.rows:
        ks = measure(rows, rows, "ks")
        sampled = measure(rows, 50_000, "evidently")
        print(
            f"{rows:>9,} rows  scipy KS per column: {ks['seconds']:6.2f} s {ks['peak_mb']:5} MB"
            f" | drift report (50k sample): {sampled['seconds']:6.2f} s "
            f"{sampled['peak_mb']:5} MB  ratio {sampled['seconds'] / ks['seconds']:.1f}x"
        )
        if rows <= 100_000:
            full = measure(rows, rows, "evidently")
            diff = max(abs(full["scores"][c] - sampled["scores"][c]) for c in full["scores"])
            print(
                f"{'':>15}unsampled report: {full['seconds']:6.2f} s {full['peak_mb']:5} MB; "
                f"sampled/unsampled time {sampled['seconds'] / full['seconds']:.2f}; largest "
                f"drift-score difference {diff:.4f}; drifted {sampled['drifted']} vs "
                f"{full['drifted']}"
            )


if __name__ == "__main__":
    main()
