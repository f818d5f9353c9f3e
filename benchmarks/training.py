"""Model benchmark on the real Online Retail data: every model against its baselines on the
same time-based test set, with 95% bootstrap intervals, and the training time of each.

    .venv/bin/python benchmarks/training.py [--workspace DIR] [--skip-features]

The baselines are the reference, measured in the same run on the same rows. The workspace is
built (ingest, features, Feast apply) unless --skip-features reuses one.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from contextlib import redirect_stdout
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)  # import the project's packages, not this folder's modules


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workspace", type=Path)
    parser.add_argument("--skip-features", action="store_true")
    parser.add_argument("--model", action="append", choices=["churn", "clv", "nbo"])
    args = parser.parse_args()

    from crmscore.settings import load_settings
    from features.ingest import ingest
    from features.snapshots import build_snapshots, read_tables
    from features.store import apply_repo, open_store
    from training.pipeline import runner

    workspace = args.workspace or Path(tempfile.mkdtemp(prefix="crmscore_train_bench_"))
    settings = load_settings(workspace=workspace, dataset="online_retail")
    if not args.skip_features:
        ingest(settings.dataset, settings.data_root, settings.paths)
        build_snapshots(
            read_tables(settings.paths),
            settings.features,
            settings.labels,
            settings.segments,
            settings.paths,
        )
        with redirect_stdout(sys.stderr):
            apply_repo(settings.feast, settings.paths)
    store = open_store(settings.feast, settings.paths)
    for kind in args.model or ["churn", "clv", "nbo"]:
        started = time.perf_counter()
        with redirect_stdout(sys.stderr):
            result = runner(kind)(
                store,
                settings.paths,
                settings.labels,
                settings.training,
                settings.paths.model_reports(kind),
            )
        seconds = time.perf_counter() - started
        print(
            f"\n### {kind}: test cutoff {result.split.test.date()}, rows {result.rows}, "
            f"{seconds:.0f} s (training sets from Feast + training + evaluation)"
        )
        print(f"grade {result.grade[0]}: {result.grade[2]}")
        keys = list(result.scored[0].metrics)
        print("| contender | " + " | ".join(keys) + " |")
        print("|---|" + "---|" * len(keys))
        for scored in result.scored:
            cells = []
            for key in keys:
                value = scored.metrics[key]
                cell = f"{value:.3f}" if abs(value) < 1000 else f"{value:,.0f}"
                if key in scored.intervals:
                    lo, hi = scored.intervals[key]
                    cell += (
                        f" [{lo:.3f}, {hi:.3f}]" if abs(lo) < 1000 else f" [{lo:,.0f}, {hi:,.0f}]"
                    )
                cells.append(cell)
            print(f"| {scored.name} | " + " | ".join(cells) + " |")
        info = {k: v for k, v in result.info.items() if k != "lgbm_params"}
        print(f"details: {info}", flush=True)


if __name__ == "__main__":
    main()
