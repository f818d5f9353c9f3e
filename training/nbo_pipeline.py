"""Train and evaluate the next-best-offer ranker against popularity, buy-again and a
history/popularity blend, on the customers who bought something in the test horizon."""

from __future__ import annotations

import logging
from collections.abc import Collection
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
from features.progress import stage
from features.retrieval import historical_features, service_features
from serving.models import (
    COPURCHASE,
    HISTORY_WEIGHT,
    RECENCY,
    BundleModel,
    candidates,
    recommend,
    set_population,
)
from training import baselines
from training.config import NboParams, TrainingParams
from training.contenders import BASELINE, MODEL
from training.evaluate import plot_importance, score_with_intervals
from training.metrics import RankingTable, ranking_metrics, ranking_table
from training.nbo import (
    fit_neighbours,
    neighbours_meta,
    refit_nbo,
    sample_negatives,
    train_nbo,
    with_labels,
)
from training.pipeline import TrainResult, _importance, _judge, _labelled, _parts, _sizes

log = logging.getLogger(__name__)


def cutoff_pairs(
    affinity: pd.DataFrame,
    offers: pd.DataFrame,
    customers: pd.DataFrame,
    labels: pd.DataFrame,
    nbo: NboParams,
    seed: int,
    sample: bool,
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """One cutoff's candidate pairs (`candidates`) and co-purchase neighbours (None when
    neighbour candidates are off). With `sample` (a training cutoff) only the pairs
    `sample_negatives` keeps, the accepted ones known from `labels`."""
    use = nbo.neighbour_candidates > 0 and nbo.neighbours_per_offer > 0
    near = fit_neighbours(affinity, nbo.neighbours_per_offer) if use else None
    pairs = candidates(
        affinity,
        offers,
        customers,
        nbo.history_candidates,
        nbo.popular_candidates,
        nbo.trending_candidates,
        nbo.neighbour_candidates if near is not None else 0,
        near,
    )
    if sample:
        kept = sample_negatives(
            pairs, with_labels(pairs, labels), nbo.train_negatives_per_query, seed
        )
        pairs = pairs.iloc[kept].reset_index(drop=True)
    return pairs, near


def _nbo_pairs(
    store: FeatureStore,
    paths: Workspace,
    rows: pd.DataFrame,
    params: TrainingParams,
    sampled: Collection[pd.Timestamp] = (),
) -> tuple[pd.DataFrame, dict[pd.Timestamp, pd.DataFrame]]:
    """Candidate pairs for the customers in `rows`, with Feast features, co-purchase
    features and labels, and the co-purchase neighbours of each cutoff (fitted on every
    customer's affinity rows of that cutoff: only what was known at the cutoff). On the
    `sampled` cutoffs (the training ones) the negatives are sampled before the features
    are fetched (`sample_negatives`)."""
    keys = [CUSTOMER_ID, EVENT_TIMESTAMP]
    nbo = params.nbo
    stamps = sorted(set(rows[EVENT_TIMESTAMP]))
    filters = [(EVENT_TIMESTAMP, "in", stamps)]
    affinity = pd.read_parquet(
        paths.snapshot(AFFINITY_VIEW),
        columns=[*keys, OFFER_ID, "affinity_orders_365d", RECENCY, HISTORY_WEIGHT],
        filters=filters,
    )
    offers = pd.read_parquet(paths.snapshot(OFFER_VIEW), filters=filters)
    for f in (affinity, offers):
        f[EVENT_TIMESTAMP] = pd.to_datetime(f[EVENT_TIMESTAMP], utc=True)
    customers = rows[keys].drop_duplicates()
    neighbours: dict[pd.Timestamp, pd.DataFrame] = {}
    parts = []
    for stamp in stamps:
        part, near = cutoff_pairs(
            affinity[affinity[EVENT_TIMESTAMP] == stamp],
            offers[offers[EVENT_TIMESTAMP] == stamp],
            customers[customers[EVENT_TIMESTAMP] == stamp],
            rows,
            nbo,
            params.seed,
            pd.Timestamp(stamp) in sampled,
        )
        if near is not None:
            neighbours[pd.Timestamp(stamp)] = near
        parts.append(part)
    pairs = pd.concat(parts, ignore_index=True)
    pairs = historical_features(store, model_spec("nbo").feature_service, pairs)
    pairs[ACCEPTED] = with_labels(pairs, rows)
    return pairs, neighbours


def _model_features(pairs: pd.DataFrame, spec_service: str) -> list[str]:
    """The Feast features of the service plus the co-purchase features the candidates
    carry (when neighbour candidates are on)."""
    extra = [c for c in COPURCHASE if c in pairs]
    return [*service_features(spec_service), *extra]


def candidate_recall(pairs: pd.DataFrame, bought: pd.DataFrame) -> float:
    """Share of the (customer, offer, cutoff) purchases in `bought` that are candidate
    `pairs`: what the best possible ranking of the candidates could recall."""
    keys = [CUSTOMER_ID, OFFER_ID, EVENT_TIMESTAMP]
    if bought.empty:
        return 0.0
    found = (
        bought[keys]
        .astype({OFFER_ID: str})
        .merge(pairs[keys].astype({OFFER_ID: str}).drop_duplicates(), on=keys)
    )
    return float(len(found) / len(bought[keys].drop_duplicates()))


# Light buyers: at most this many orders in the year before the cutoff (the segment where
# offers are hardest to guess: most of what they buy next they never bought).
LIGHT_BUYER_ORDERS = 3


def buyer_segments(pairs: pd.DataFrame) -> dict[str, set[str]]:
    """The customers of candidate `pairs` by segment: "light_buyers" (at most
    LIGHT_BUYER_ORDERS orders in the year before the cutoff, `frequency_365d`; none known
    counts as none) and "heavy_buyers" (more). Empty without `frequency_365d`."""
    if "frequency_365d" not in pairs:
        return {}
    orders = pairs.groupby(pairs[CUSTOMER_ID].astype(str))["frequency_365d"].first()
    light = orders.fillna(0) <= LIGHT_BUYER_ORDERS
    return {"light_buyers": set(orders.index[light]), "heavy_buyers": set(orders.index[~light])}


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
    rows, split, sample = _labelled(spec, paths, labels, params, params.nbo.max_train_cutoffs)
    with stage(log, "train nbo: candidates and training set from Feast"):
        train_stamps = {pd.Timestamp(s) for s in split.train}
        pairs, neighbours = _nbo_pairs(store, paths, rows, params, train_stamps)
    train, valid, test = _parts(pairs, split)
    features = _model_features(pairs, spec.feature_service)
    # Serving uses the neighbours of the latest cutoff (the test cutoff's: fitted on what
    # was known before its horizon).
    near = neighbours.get(pd.Timestamp(split.test))
    with stage(log, "train nbo: LightGBM fit"):
        model, info = train_nbo(
            train,
            train[spec.target].to_numpy(),
            valid,
            valid[spec.target].to_numpy(),
            features,
            params.nbo,
            params.seed,
            None if near is None else neighbours_meta(near),
        )
    if params.split.refit:
        # The validation cutoffs join the training ones: their negatives sampled alike.
        kept = sample_negatives(
            valid,
            valid[spec.target].to_numpy(),
            params.nbo.train_negatives_per_query,
            params.seed,
        )
        observed = pd.concat([train, valid.iloc[kept]], ignore_index=True)
        with stage(log, "train nbo: refit on every observed cutoff"):
            model = refit_nbo(
                model, info["lgbm_params"], observed, observed[spec.target].to_numpy(), params.seed
            )
        info["refit_rows"] = len(observed)
    if sample is not None:
        info["training_sample"] = sample
    info["train_negatives_per_query"] = params.nbo.train_negatives_per_query
    valid_rows = rows[rows[EVENT_TIMESTAMP].isin(split.valid)]
    info["candidate_recall_valid"] = candidate_recall(valid, valid_rows)
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

    def tables(r: dict[str, list[str]]) -> tuple[RankingTable, RankingTable]:
        at_k = ranking_table(r, actual, customers, k, catalog)
        return at_k, ranking_table(r, actual, customers, 10, catalog)

    def metrics(idx: np.ndarray, at: tuple[RankingTable, RankingTable]) -> dict[str, float]:
        out = at[0].summary(idx)
        out["recall@10"] = at[1].summary(idx)["recall@10"]
        return out

    scored = [
        score_with_intervals(
            name,
            partial(metrics, at=tables(r)),
            len(customers),
            params.bootstrap,
            params.seed,
            [key, "recall@10"],
            MODEL if name == "lightgbm" else BASELINE,
        )
        for name, r in recs.items()
    ]
    importance = _importance(model)
    plots = [plot_importance(importance, out_dir, "nbo")]
    info["test_buyers"] = len(customers)
    # The ceiling of any ranking: the share of test-horizon purchases among the candidates
    # (and among the history + popular candidates alone, the narrower set).
    info["candidate_recall"] = candidate_recall(test, test_rows)
    narrow = candidates(
        test_affinity.assign(**{EVENT_TIMESTAMP: split.test}),
        test_offers.assign(**{EVENT_TIMESTAMP: split.test}),
        test_rows[[CUSTOMER_ID, EVENT_TIMESTAMP]].drop_duplicates(),
        params.nbo.history_candidates,
        params.nbo.popular_candidates,
    )
    info["candidate_recall_history_popular"] = candidate_recall(narrow, test_rows)
    info["candidates_per_customer"] = float(len(test) / max(1, len(customers)))
    # Per segment: the buyers, the candidates' recall ceiling and hit@k of the model and the
    # blend (light buyers are where hits are lost).
    for segment, members in buyer_segments(test).items():
        act = {c: actual[c] for c in customers if c in members}
        info[segment] = len(act)
        bought = test_rows[test_rows[CUSTOMER_ID].astype(str).isin(members)]
        info[f"{segment}_candidate_recall"] = candidate_recall(test, bought)
        for name in ("lightgbm", "history x popularity blend"):
            rec = {c: recs[name].get(c, []) for c in act}
            label = name.replace(" ", "_")
            info[f"{segment}_hit_at_{k}_{label}"] = ranking_metrics(rec, act, k, catalog)[key]
    everybody = np.arange(len(customers))
    return TrainResult(
        "nbo",
        model,
        info,
        split,
        scored,
        *_judge(scored, spec, key, params),
        plots,
        importance,
        test[features].head(5),
        _sizes(train, valid, test),
        test,
        p_test,
        key,
        lambda m: metrics(everybody, tables(_ranked(m, test, max(k, 10))))[key],
    )
