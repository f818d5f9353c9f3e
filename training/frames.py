"""Fitting LightGBM on the model input that serving computes (`serving.models.encode`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from features.names import ALL_FEATURES
from serving.models import encode


def fit_categories(frame: pd.DataFrame, columns: Sequence[str]) -> dict[str, list[str]]:
    """The categories of the string columns, learned from training rows (sorted; a category
    never seen in training is missing at scoring time)."""
    return {
        c: sorted(frame[c].dropna().astype(str).unique())
        for c in columns
        if ALL_FEATURES[c].dtype == "string"
    }


def fit_frame(
    frame: pd.DataFrame, columns: Sequence[str], categories: Mapping[str, Sequence[str]]
) -> pd.DataFrame:
    """What LightGBM is fitted on: the serving encoding of `frame`, with string columns as
    pandas categoricals of their codes (so LightGBM treats them as categorical)."""
    x = encode(frame, columns, categories)
    out: dict[str, Any] = {}
    for j, c in enumerate(columns):
        if c in categories:
            codes = np.where(np.isnan(x[:, j]), -1, x[:, j]).astype(np.int64)
            out[c] = pd.Categorical.from_codes(codes, categories=pd.Index(list(categories[c])))
        else:
            out[c] = x[:, j]
    return pd.DataFrame(out)


def fit_early_stopped(
    params: dict[str, Any],
    x: pd.DataFrame,
    y: np.ndarray,
    xv: pd.DataFrame,
    yv: np.ndarray,
    seed: int,
    rounds: int,
    patience: int,
    offsets: tuple[np.ndarray, np.ndarray] | None = None,
) -> lgb.Booster:
    """LightGBM on (x, y), stopped when the validation loss has not improved for `patience`
    rounds; deterministic for a given seed (2 threads). `offsets` (training, validation):
    each row's starting raw score, which the boosters then correct."""
    start, start_v = offsets if offsets is not None else (None, None)
    train_set = lgb.Dataset(x, y, init_score=start, free_raw_data=False)
    valid_set = lgb.Dataset(xv, yv, init_score=start_v, reference=train_set)
    return train_on_sets(params, train_set, valid_set, seed, rounds, patience)


def train_on_sets(
    params: dict[str, Any],
    train_set: lgb.Dataset,
    valid_set: lgb.Dataset,
    seed: int,
    rounds: int,
    patience: int,
) -> lgb.Booster:
    """LightGBM on prepared datasets (e.g. with ranking groups), stopped when the validation
    loss has not improved for `patience` rounds; deterministic for a given seed (2 threads)."""
    return lgb.train(
        _deterministic(params, seed),
        train_set,
        rounds,
        valid_sets=[valid_set],
        callbacks=[lgb.early_stopping(patience, verbose=False)],
    )


def fit_rounds(
    params: dict[str, Any],
    x: pd.DataFrame,
    y: np.ndarray,
    seed: int,
    rounds: int,
    offset: np.ndarray | None = None,
) -> lgb.Booster:
    """LightGBM on (x, y) for a fixed number of rounds (e.g. the rounds early stopping chose
    on validation, when refitting on training and validation cutoffs together), from each
    row's starting raw score `offset` if given."""
    return train_rounds(params, lgb.Dataset(x, y, init_score=offset), seed, rounds)


def train_rounds(params: dict[str, Any], data: lgb.Dataset, seed: int, rounds: int) -> lgb.Booster:
    """LightGBM on a prepared dataset (e.g. with ranking groups) for a fixed number of
    rounds; deterministic for a given seed (2 threads)."""
    return lgb.train(_deterministic(params, seed), data, max(int(rounds), 1))


def _deterministic(params: dict[str, Any], seed: int) -> dict[str, Any]:
    """`params` seeded, deterministic and on 2 threads: the same data gives the same model."""
    return {**params, "seed": seed, "deterministic": True, "num_threads": 2}


def fit_on_frames(
    params: dict[str, Any],
    features: Sequence[str],
    categories: Mapping[str, Sequence[str]],
    train: pd.DataFrame,
    y: np.ndarray,
    valid: pd.DataFrame,
    yv: np.ndarray,
    seed: int,
    rounds: int,
    patience: int,
) -> lgb.Booster:
    """`fit_early_stopped` on the model inputs of training and validation frames."""
    return fit_early_stopped(
        params,
        fit_frame(train, features, categories),
        y,
        fit_frame(valid, features, categories),
        yv,
        seed,
        rounds,
        patience,
    )
