"""The cost of the stale-feature warning on the API's fastest path: a precomputed answer of
one customer (`Scorer.from_table`, what `POST /v1/score` returns without reading the store)
with the age check on and the warning due on every answer, against the same answers with the
check off (`stale_after_days=None`), in one run, in alternating blocks. The machine's load
(`uptime`) is printed with the figures.

    .venv/bin/python benchmarks/answers.py --workspace DIR --dataset FILE [--blocks 40]

The workspace must be trained and materialized (the demo's, or a test run's) with features
older than `serving.stale_feature_days` (the synthetic data's are years old).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from serving.scoring import Scorer

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)  # import the project's packages, not this folder's modules


def _block(scorer: Scorer, ids: list[str]) -> float:
    """Microseconds per answer over one pass of `ids`, one customer per call."""
    from_table = scorer.from_table
    started = time.perf_counter()
    for cid in ids:
        from_table([cid])
    return (time.perf_counter() - started) / len(ids) * 1e6


def main() -> None:
    """Print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workspace", type=Path, required=True)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--blocks", type=int, default=40)
    args = parser.parse_args()

    from crmscore import steps
    from crmscore.settings import load_settings
    from features.store import open_store
    from serving.registry import configure
    from serving.state import load_scorer

    settings = load_settings(args.workspace, dataset=args.dataset)
    params = settings.serving
    scorer = load_scorer(
        configure(steps.tracking_uri(settings)),
        open_store(settings.feast, settings.paths),
        params.explain_top,
        settings.paths,
        params.store_timeout_seconds,
        params.stale_feature_days,
    )
    if not scorer.precompute(params.precompute_customers) or scorer.precomputed is None:
        raise SystemExit("no precomputed answers: is the online store materialized?")
    ids = sorted(scorer.precomputed.answers)
    answers = scorer.from_table(ids[:1]) or []
    if not any(w.startswith("stale features") for a in answers for w in a["warnings"]):
        raise SystemExit("the features are not stale: the warning would not be measured")
    timed: dict[float | None, list[float]] = {None: [], params.stale_feature_days: []}
    for _ in range(args.blocks):
        for limit in timed:
            scorer.stale_after_days = limit
            timed[limit].append(_block(scorer, ids))
    off = statistics.median(timed[None])
    on = statistics.median(timed[params.stale_feature_days])
    print(f"customers: {len(ids)}, blocks: {args.blocks} of each, one customer per call")
    print(f"precomputed answer, stale check off (reference): {off:.2f} us")
    print(f"precomputed answer, stale check on, warning due: {on:.2f} us")
    print(f"ratio: {on / off:.2f} (+{on - off:.2f} us per answer)")
    print(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())


if __name__ == "__main__":
    main()
