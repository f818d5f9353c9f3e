"""Batch scoring throughput: `serving.batch.score_frame` (all three models, offers ranked,
the full output table) against raw LightGBM `predict` on the same feature matrices, in one run.

    .venv/bin/python benchmarks/batch.py [--customers 1000000] [--candidates 5]

Models are trained here on generated data (the benchmark measures scoring, not accuracy).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)  # import the project's packages, not this folder's modules


def _frame(names: list[str], n: int, rng: np.random.Generator) -> pd.DataFrame:
    from features.names import ALL_FEATURES

    columns: dict[str, object] = {}
    for name in names:
        if ALL_FEATURES[name].dtype == "string":
            columns[name] = pd.Series(rng.choice(["a", "b", "c"], n), dtype="string")
        else:
            columns[name] = rng.gamma(2.0, 20.0, n)
    return pd.DataFrame(columns)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--candidates", type=int, default=5)
    args = parser.parse_args()

    from features.retrieval import service_features
    from serving.batch import Champions, score_frame
    from serving.models import recommend, set_population
    from training.churn import train_churn
    from training.clv import train_clv
    from training.config import ChurnParams, ClvParams, NboParams
    from training.nbo import train_nbo

    rng = np.random.default_rng(0)
    churn_names, clv_names = service_features("churn_v1"), service_features("clv_v1")
    nbo_names = service_features("nbo_v1")

    def labelled(names: list[str], n: int) -> tuple[pd.DataFrame, np.ndarray]:
        frame = _frame(names, n, rng)
        signal = frame[names[0]].to_numpy() - frame[names[1]].to_numpy()
        return frame, (signal + rng.normal(0, 20, n) > 0).astype(int)

    (tr, y), (va, yv) = labelled(churn_names, 20_000), labelled(churn_names, 5_000)
    churn, _ = train_churn(tr, y, va, yv, churn_names, ChurnParams(), 1)
    (tr, y), (va, yv) = labelled(clv_names, 20_000), labelled(clv_names, 5_000)
    clv, _ = train_clv(
        tr,
        y * tr[clv_names[2]].to_numpy(),
        va,
        yv * va[clv_names[2]].to_numpy(),
        clv_names,
        ClvParams(formulations=["two_part"]),
        1,
    )
    set_population(clv, clv.predict(va))
    (tr, y), (va, yv) = labelled(nbo_names, 50_000), labelled(nbo_names, 10_000)
    nbo, _ = train_nbo(tr, y, va, yv, nbo_names, NboParams(top_k=args.candidates), 1)
    models = Champions(churn, clv, nbo, {"churn": "1", "clv": "1", "nbo": "1"})

    n, k = args.customers, args.candidates
    ids = np.array([f"c{i}" for i in range(n)], dtype=object)
    customers = pd.DataFrame(
        {
            "customer_id": ids,
            "rfm_segment": rng.choice(["Champions", "At Risk"], n),
            "value_tier": rng.choice(["high", "medium", "low"], n),
            "lifecycle_stage": rng.choice(["active", "lapsed"], n),
        }
    )
    churn_x, clv_x = _frame(churn_names, n, rng), _frame(clv_names, n, rng)
    pairs = _frame(nbo_names, n * k, rng)
    pairs["customer_id"] = np.repeat(ids, k)
    pairs["offer_id"] = np.tile(np.array([f"o{j}" for j in range(k)], dtype=object), n)
    pairs["event_timestamp"] = pd.Timestamp("2024-01-01", tz="UTC")
    print(f"{n:,} customers, {n * k:,} (customer, offer) pairs", flush=True)

    # Reference: raw LightGBM predict on prepared matrices (no output table, no ranking).
    matrices = (churn.frame_matrix(churn_x), clv.frame_matrix(clv_x), nbo.frame_matrix(pairs))
    started = time.perf_counter()
    churn.boosters["churn"].predict(matrices[0])
    for booster in clv.boosters.values():
        booster.predict(matrices[1])
    nbo.boosters["nbo"].predict(matrices[2])
    raw = time.perf_counter() - started

    started = time.perf_counter()
    offers = recommend(nbo, pairs)
    scores = score_frame(customers, churn_x, clv_x, offers, models)
    full = time.perf_counter() - started
    assert len(scores) == n
    print(f"raw LightGBM predict (3 models): {raw:.1f} s = {n / raw:,.0f} customers/s")
    print(f"score_frame (features -> full score table): {full:.1f} s = {n / full:,.0f} customers/s")
    print(f"ratio score_frame / raw = {raw / full:.0%} of raw throughput")


if __name__ == "__main__":
    main()
