"""Next-best-offer: a LightGBM model over (customer, offer) pairs, a binary classifier or a
LambdaRank ranker per customer and cutoff (`NboParams.objectives`, compared on validation).
Candidate pairs and the ranking with the business rules are the serving runtime's
(`serving.models.candidates`, `serving.models.recommend`), so training evaluates exactly
what is served. The co-purchase neighbours the candidates use are fitted here
(`fit_neighbours`) and kept in the bundle."""

from __future__ import annotations

import dataclasses
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from scipy import sparse

from features.labels import ACCEPTED
from features.names import CUSTOMER_ID, EVENT_TIMESTAMP, OFFER_ID
from serving.models import NEIGHBOUR, SIMILARITY, BundleModel, recommend
from training.config import NboParams
from training.frames import (
    fit_categories,
    fit_frame,
    fit_on_frames,
    fit_rounds,
    train_on_sets,
    train_rounds,
)

DEFAULT_LGBM: dict[str, Any] = {
    "objective": "binary",
    "learning_rate": 0.05,
    "num_leaves": 31,
    "min_child_samples": 100,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 5.0,
    "verbose": -1,
}
RANKER_LGBM: dict[str, Any] = {
    **DEFAULT_LGBM,
    "objective": "lambdarank",
    "metric": "ndcg",
    "lambdarank_truncation_level": 20,
}
ROUNDS = 1000
PATIENCE = 50
KEYS = [CUSTOMER_ID, EVENT_TIMESTAMP]
# Offers bought by fewer common customers than this are not neighbours (noise).
MIN_COMMON_CUSTOMERS = 2


def with_labels(pairs: pd.DataFrame, labels: pd.DataFrame) -> np.ndarray:
    """1 where the customer accepted the offer in the horizon after the pair's cutoff."""
    keys = [CUSTOMER_ID, OFFER_ID, EVENT_TIMESTAMP]
    merged = pairs[keys].merge(labels[[*keys, ACCEPTED]], on=keys, how="left")
    return merged[ACCEPTED].fillna(0).to_numpy(dtype=int)


def sample_negatives(
    pairs: pd.DataFrame, y: np.ndarray, per_query: int | None, seed: int
) -> np.ndarray:
    """Positions of the pairs to train on: every accepted pair, and per customer and cutoff
    a seeded uniform sample of at most `per_query` of the others. None keeps every pair.

    Uniform, not the hard negatives first: every kind of candidate keeps its share, so the
    ranker does not learn that a kind left out of the sample is a purchase."""
    if per_query is None:
        return np.arange(len(pairs))
    query = pairs.groupby(KEYS, sort=False).ngroup().to_numpy()
    draw = np.random.default_rng(seed).random(len(pairs))
    negative = np.flatnonzero(y == 0)
    order = negative[np.lexsort((draw[negative], query[negative]))]
    q = query[order]
    starts = np.flatnonzero(np.r_[True, q[1:] != q[:-1]]) if len(q) else np.empty(0, int)
    rank = np.arange(len(q)) - np.repeat(starts, np.diff(np.r_[starts, len(q)]))
    keep = y != 0
    keep[order[rank < per_query]] = True
    return np.flatnonzero(keep)


def fit_neighbours(
    affinity: pd.DataFrame, per_offer: int, min_common: int = MIN_COMMON_CUSTOMERS
) -> pd.DataFrame:
    """Co-purchase neighbours from one cutoff's customer x offer rows (what each customer
    bought in the year): for each offer the `per_offer` other offers with the highest
    cosine similarity over customers, common / sqrt(buyers_a x buyers_b), among those with
    at least `min_common` common customers (ties: offer id). Columns offer_id,
    neighbour_id, similarity (rounded to 6 digits, as stored in the bundle)."""
    columns = [OFFER_ID, NEIGHBOUR, SIMILARITY]
    if affinity.empty or per_offer <= 0:
        return pd.DataFrame(columns=columns)
    pairs = affinity[[CUSTOMER_ID, OFFER_ID]].astype(str).drop_duplicates()
    c_codes, _ = pd.factorize(pairs[CUSTOMER_ID])
    o_codes, offers = pd.factorize(pairs[OFFER_ID])
    a = sparse.csr_matrix(
        (np.ones(len(pairs), dtype=np.float64), (c_codes, o_codes)),
        shape=(int(c_codes.max()) + 1, len(offers)),
    )
    common = (a.T @ a).tocoo()
    keep = (common.row != common.col) & (common.data >= min_common)
    row, col, n = common.row[keep], common.col[keep], common.data[keep]
    buyers = np.asarray(a.sum(axis=0)).ravel()
    similarity = np.round(n / np.sqrt(buyers[row] * buyers[col]), 6)
    names = np.asarray(offers, dtype=object)
    frame = pd.DataFrame({OFFER_ID: names[row], NEIGHBOUR: names[col], SIMILARITY: similarity})
    frame = frame.sort_values(
        [OFFER_ID, SIMILARITY, NEIGHBOUR], ascending=[True, False, True], kind="stable"
    )
    return frame.groupby(OFFER_ID, sort=False).head(per_offer).reset_index(drop=True)


def neighbours_meta(frame: pd.DataFrame) -> dict[str, list[list[Any]]]:
    """A neighbour frame as the bundle keeps it: offer -> [[neighbour, similarity], ...]."""
    return {
        str(o): [[str(n), float(s)] for n, s in zip(g[NEIGHBOUR], g[SIMILARITY], strict=True)]
        for o, g in frame.groupby(OFFER_ID, sort=True)
    }


def hit_rate(model: BundleModel, pairs: pd.DataFrame, y: np.ndarray, k: int) -> float:
    """Share of customers (and cutoffs) with an accepted candidate whose top k, as the
    bundle recommends them, holds one: the validation criterion between objectives."""
    labelled = pairs[[*KEYS, OFFER_ID]].assign(_y=y)
    wanted = labelled[labelled["_y"] > 0]
    if wanted.empty:
        return 0.0
    top = recommend(model, pairs, k=k)
    hits = top.merge(wanted, on=[*KEYS, OFFER_ID])
    return float(hits[KEYS].drop_duplicates().shape[0] / wanted[KEYS].drop_duplicates().shape[0])


def _groups(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Row order grouping each (customer, cutoff) together, and the group sizes."""
    codes = frame.groupby(KEYS, sort=True).ngroup().to_numpy()
    order = np.argsort(codes, kind="stable")
    return order, np.bincount(codes[order])


def _logistic(score: np.ndarray, y: np.ndarray, iterations: int = 50) -> dict[str, float]:
    """P(y = 1) = 1 / (1 + exp(-(coef x score + intercept))), fitted by Newton's method
    (with a small ridge so a separable sample stays finite)."""
    x = np.column_stack([score, np.ones(len(score))])
    w = np.zeros(2)
    for _ in range(iterations):
        p = 1 / (1 + np.exp(-(x @ w)))
        grad = x.T @ (p - y) + 1e-3 * w
        hess = (x * (p * (1 - p))[:, None]).T @ x + 1e-3 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return {"coef": float(w[0]), "intercept": float(w[1])}


def _ranking_set(
    frame: pd.DataFrame,
    y: np.ndarray,
    features: list[str],
    categories: dict[str, list[str]],
    reference: lgb.Dataset | None = None,
) -> lgb.Dataset:
    """A LambdaRank dataset with one query per customer and cutoff; queries without an
    accepted candidate teach nothing and are left out."""
    order, sizes = _groups(frame)
    query = np.repeat(np.arange(len(sizes)), sizes)
    useful = np.bincount(query, weights=y[order], minlength=len(sizes)) > 0
    rows = order[useful[query]]
    x = fit_frame(frame.iloc[rows], features, categories)
    return lgb.Dataset(x, y[rows], group=sizes[useful], reference=reference, free_raw_data=False)


def _fit_ranker(
    lgbm: dict[str, Any],
    features: list[str],
    categories: dict[str, list[str]],
    train: pd.DataFrame,
    y_train: np.ndarray,
    valid: pd.DataFrame,
    y_valid: np.ndarray,
    seed: int,
) -> lgb.Booster:
    """LambdaRank over (customer, cutoff) queries, stopped on validation NDCG."""
    train_set = _ranking_set(train, y_train, features, categories)
    valid_set = _ranking_set(valid, y_valid, features, categories, train_set)
    return train_on_sets(lgbm, train_set, valid_set, seed, ROUNDS, PATIENCE)


def refit_nbo(
    model: BundleModel, lgbm: dict[str, Any], frame: pd.DataFrame, y: np.ndarray, seed: int
) -> BundleModel:
    """The offer model fitted again with its objective and `lgbm` parameters on `frame`
    (the training and validation cutoffs together: every cutoff whose outcome is observed
    before the test cutoff) for the rounds early stopping chose on validation. The
    candidate settings, neighbours and the ranker's probability map are kept."""
    rounds = model.boosters["nbo"].best_iteration
    if model.meta["objective"] == "lambdarank":
        data = _ranking_set(frame, y, model.columns, model.categories)
        booster = train_rounds(lgbm, data, seed, rounds)
    else:
        x = fit_frame(frame, model.columns, model.categories)
        booster = fit_rounds(lgbm, x, y, seed, rounds)
    return dataclasses.replace(model, boosters={"nbo": booster}, meta=dict(model.meta))


def train_nbo(
    train: pd.DataFrame,
    y_train: np.ndarray,
    valid: pd.DataFrame,
    y_valid: np.ndarray,
    features: list[str],
    params: NboParams,
    seed: int,
    neighbours: dict[str, list[list[Any]]] | None = None,
) -> tuple[BundleModel, dict[str, Any]]:
    """Fit the pair model with each objective of `params.objectives` (early stopping on the
    validation cutoffs) and keep the one with the better validation hit@top_k. The bundle
    keeps the candidate settings, co-purchase `neighbours` (offer -> [[neighbour,
    similarity], ...]; None: no neighbour candidates), top-k and rules serving applies."""
    if not params.objectives:
        raise ValueError("training.nbo.objectives: name at least one of binary, lambdarank")
    categories = fit_categories(train, features)
    meta: dict[str, Any] = {
        "top_k": params.top_k,
        "exclude_bought_within_days": params.exclude_bought_within_days,
        "history_candidates": params.history_candidates,
        "popular_candidates": params.popular_candidates,
        "trending_candidates": params.trending_candidates,
        "neighbour_candidates": params.neighbour_candidates if neighbours is not None else 0,
        "rank_by": params.rank_by,
    }
    if neighbours is not None:
        meta["neighbours"] = neighbours
    fitted: dict[str, tuple[BundleModel, dict[str, Any], float]] = {}
    for objective in dict.fromkeys(params.objectives):
        if objective == "lambdarank":
            lgbm = {**RANKER_LGBM, "eval_at": [params.top_k], **params.lgbm}
            lgbm["objective"] = "lambdarank"
            booster = _fit_ranker(lgbm, features, categories, train, y_train, valid, y_valid, seed)
        else:
            lgbm = {**DEFAULT_LGBM, **params.lgbm, "objective": "binary"}
            booster = fit_on_frames(
                lgbm, features, categories, train, y_train, valid, y_valid, seed, ROUNDS, PATIENCE
            )
        model = BundleModel.create(
            "nbo", features, categories, {"nbo": booster}, objective=objective, **meta
        )
        if objective == "lambdarank":
            raw = model.raw(model.frame_matrix(valid))
            model.meta["probability"] = _logistic(raw, y_valid.astype(float))
        hit = hit_rate(model, valid, y_valid, params.top_k)
        fitted[objective] = (model, lgbm, hit)
    best = max(fitted, key=lambda o: (fitted[o][2], o == params.objectives[0]))
    model, lgbm, _ = fitted[best]
    return model, {
        "objective": best,
        "valid_hit": {o: round(f[2], 4) for o, f in fitted.items()},
        "best_iteration": model.boosters["nbo"].best_iteration,
        "lgbm_params": lgbm,
        "train_pairs": len(train),
        "train_positive_rate": float(y_train.mean()),
    }
