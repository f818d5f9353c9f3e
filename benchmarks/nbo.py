"""Next-best-offer benchmark on Online Retail: the LightGBM offer model against popularity,
buy-again and the history x popularity blend on the same test cutoff, hit@k and recall@10
with 95% bootstrap intervals, the candidate recall ceiling and the training time.

    .venv/bin/python benchmarks/nbo.py [--workspace DIR] [--skip-features]
        [--objective binary --objective lambdarank] [--narrow] [--max-train-cutoffs N]

--narrow runs the candidates of before issue 15 (history + popular, no trending or
co-purchase neighbours). The test cutoff is never used to choose anything: the objective is
chosen on the validation cutoffs (`training.nbo.train_nbo`).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)  # import the project's packages, not this folder's modules


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workspace", type=Path)
    parser.add_argument("--skip-features", action="store_true")
    parser.add_argument("--objective", action="append", choices=["binary", "lambdarank"])
    parser.add_argument("--narrow", action="store_true")
    parser.add_argument("--max-train-cutoffs", type=int)
    parser.add_argument("--rank-by", choices=["probability", "expected_value"])
    parser.add_argument("--trending", type=int, help="trending candidates")
    parser.add_argument("--neighbours", type=int, help="co-purchase neighbour candidates")
    args = parser.parse_args()

    from crmscore.settings import load_settings
    from features.ingest import ingest
    from features.snapshots import build_snapshots, read_tables
    from features.store import apply_repo, open_store
    from training.nbo_pipeline import run_nbo

    workspace = args.workspace or Path(tempfile.mkdtemp(prefix="crmscore_nbo_bench_"))
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
    update: dict[str, Any] = {}
    if args.objective:
        update["objectives"] = args.objective
    if args.narrow:
        update.update(trending_candidates=0, neighbour_candidates=0)
    if args.max_train_cutoffs:
        update["max_train_cutoffs"] = args.max_train_cutoffs
    if args.rank_by:
        update["rank_by"] = args.rank_by
    if args.trending is not None:
        update["trending_candidates"] = args.trending
    if args.neighbours is not None:
        update["neighbour_candidates"] = args.neighbours
    training = settings.training.model_copy(
        update={"nbo": settings.training.nbo.model_copy(update=update)}
    )
    store = open_store(settings.feast, settings.paths)
    started = time.perf_counter()
    with redirect_stdout(sys.stderr):
        result = run_nbo(
            store, settings.paths, settings.labels, training, settings.paths.model_reports("nbo")
        )
    seconds = time.perf_counter() - started
    key = result.primary_key
    print(
        f"### nbo: test cutoff {result.split.test.date()}, rows {result.rows}, {seconds:.0f} s "
        f"(settings: {update or 'defaults'})"
    )
    print(f"| contender | {key} | recall@10 |")
    print("|---|---|---|")
    for scored in result.scored:
        cells = []
        for name in (key, "recall@10"):
            lo, hi = scored.intervals.get(name, (float("nan"), float("nan")))
            cells.append(f"{scored.metrics[name]:.3f} [{lo:.3f}, {hi:.3f}]")
        print(f"| {scored.name} | " + " | ".join(cells) + " |")
    info = {k: v for k, v in result.info.items() if k != "lgbm_params"}
    print(f"grade {result.grade[0]}: {result.grade[2]}")
    print(f"details: {info}", flush=True)


if __name__ == "__main__":
    main()
