"""Train and evaluate the next-best-offer ranker against popularity, buy-again and a
history/popularity blend, on the customers who bought something in the test horizon."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
from feast import FeatureStore

from features.catalog import Workspace
from features.config import LabelParams
from features.feast_repo import AFFINITY_VIEW, OFFER_VIEW
from features.labels import ACCEPTED
from features.model_spec import model_spec
from features.names import CUSTOMER_ID, EVENT_TIMESTAMP, OFFER_ID
from features.retrieval import historical_features, service_features
from serving.models import BundleModel, candidates, recommend, set_population
from training import baselines
from training.config import TrainingParams
from training.evaluate import plot_importance, score_with_intervals
from training.metrics import ranking_metrics
from training.nbo import train_nbo, with_labels
from training.pipeline import TrainResult, _importance, _judge, _labelled, _parts, _sizes


def _nbo_pairs(
    store: FeatureStore, paths: Workspace, rows: pd.DataFrame, params: TrainingParams
) -> pd.DataFrame:
    """Candidate pairs for the customers in `rows`, with Feast features and labels."""
    keys = [CUSTOMER_ID, EVENT_TIMESTAMP]
    stamps = set(rows[EVENT_TIMESTAMP])
    filters = [(EVENT_TIMESTAMP, "in", sorted(stamps))]
    affinity = pd.read_parquet(
        paths.snapshot(AFFINITY_VIEW),
        columns=[*keys, OFFER_ID, "affinity_orders_365d", "affinity_recency_days"],
        filters=filters,
    )
    offers = pd.read_parquet(paths.snapshot(OFFER_VIEW), filters=filters)
    for f in (affinity, offers):
        f[EVENT_TIMESTAMP] = pd.to_datetime(f[EVENT_TIMESTAMP], utc=True)
    customers = rows[keys].drop_duplicates()
    pairs = candidates(
        affinity,
        offers,
        customers,
        params.nbo.history_candidates,
        params.nbo.popular_candidates,
    )
    pairs = historical_features(store, model_spec("nbo").feature_service, pairs)
    pairs[ACCEPTED] = with_labels(pairs, rows)
    return pairs


def _ranked(model: BundleModel, pairs: pd.DataFrame, k: int) -> dict[str, list[str]]:
    """Each customer's top-k offers as the bundle recommends them (rules applied)."""
    top = recommend(model, pairs, k=k)
    return {str(c): list(g[OFFER_ID]) for c, g in top.groupby(CUSTOMER_ID, sort=False)}


def run_nbo(
    store: FeatureStore,
    paths: Workspace,
    labels: LabelParams,
    params: TrainingParams,
    out_dir: Path,
) -> TrainResult:
    """Offer ranker vs popularity, buy-again and a history/popularity blend, on the customers
    who bought something in the test horizon."""
    spec = model_spec("nbo")
    rows, split = _labelled(spec, paths, labels, params, params.nbo.max_train_cutoffs)
    pairs = _nbo_pairs(store, paths, rows, params)
    train, valid, test = _parts(pairs, split)
    features = service_features(spec.feature_service)
    model, info = train_nbo(
        train,
        train[spec.target].to_numpy(),
        valid,
        valid[spec.target].to_numpy(),
        features,
        params.nbo,
        params.seed,
    )
    p_test = model.predict(test)
    set_population(model, p_test)
    k = params.nbo.top_k
    key = spec.primary_key(k)
    test_rows = rows[rows[EVENT_TIMESTAMP] == split.test]
    actual = {str(c): set(g[OFFER_ID]) for c, g in test_rows.groupby(CUSTOMER_ID)}
    customers = sorted(actual)
    ranked = _ranked(model, test, max(k, 10))
    test_offers = pd.read_parquet(
        paths.snapshot(OFFER_VIEW), filters=[(EVENT_TIMESTAMP, "==", split.test)]
    )
    test_affinity = pd.read_parquet(
        paths.snapshot(AFFINITY_VIEW), filters=[(EVENT_TIMESTAMP, "==", split.test)]
    )
    test_affinity = test_affinity[test_affinity[CUSTOMER_ID].isin(actual)]
    top_popular = baselines.popularity(test_offers, max(k, 10))
    recs = {
        "lightgbm": {c: ranked.get(c, []) for c in customers},
        "popularity": dict.fromkeys(customers, top_popular),
        "buy-again": baselines.buy_again(test_affinity, max(k, 10)),
        "history x popularity blend": baselines.history_popularity_blend(
            test_affinity, test_offers, customers, max(k, 10)
        ),
    }
    catalog = int(test_offers[OFFER_ID].nunique())

    def metrics(idx: np.ndarray, r: dict[str, list[str]]) -> dict[str, float]:
        chosen = [customers[i] for i in idx]
        # Resampled customers may repeat: key each draw separately.
        act = {f"{j}:{c}": actual[c] for j, c in enumerate(chosen)}
        rec = {f"{j}:{c}": r.get(c, []) for j, c in enumerate(chosen)}
        out = ranking_metrics(rec, act, k, catalog)
        out["recall@10"] = ranking_metrics(rec, act, 10, catalog)["recall@10"]
        return out

    scored = [
        score_with_intervals(
            name,
            partial(metrics, r=r),
            len(customers),
            params.bootstrap,
            params.seed,
            [key, "recall@10"],
        )
        for name, r in recs.items()
    ]
    importance = _importance(model)
    plots = [plot_importance(importance, out_dir, "nbo")]
    info["test_buyers"] = len(customers)
    info["candidate_recall"] = float(test[spec.target].sum() / max(1, len(test_rows)))
    everybody = np.arange(len(customers))
    return TrainResult(
        "nbo",
        model,
        info,
        split,
        scored,
        *_judge(scored, spec.primary, key, params),
        plots,
        importance,
        test[features].head(5),
        _sizes(train, valid, test),
        test,
        p_test,
        key,
        lambda m: metrics(everybody, _ranked(m, test, max(k, 10)))[key],
    )
