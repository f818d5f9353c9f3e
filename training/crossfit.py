"""Cross-fitted scores: each row scored by a model fitted without any row of its customer.

The refit learns from every observed cutoff, so a correction fitted after it (CLV's mean)
cannot be measured on its own predictions of those rows (in-sample, the total looks right
by construction): it is measured on these instead."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from serving.models import BundleModel


def customer_folds(customers: pd.Series, folds: int, seed: int) -> np.ndarray:
    """Each row's fold (0 .. folds - 1): every row of a customer in the same fold, the
    customers dealt to the folds in a seeded random order."""
    ids = customers.astype(str)
    unique = pd.Index(ids.unique())
    dealt = np.random.default_rng(seed).permutation(len(unique)) % folds
    return np.asarray(dealt[unique.get_indexer(ids)], dtype=int)


def cross_fitted(
    refit: Callable[[pd.DataFrame, np.ndarray], BundleModel],
    score: Callable[[BundleModel, pd.DataFrame], dict[str, np.ndarray]],
    frame: pd.DataFrame,
    y: np.ndarray,
    folds: np.ndarray,
) -> dict[str, np.ndarray]:
    """For each fold, `refit(rows, labels)` on the other folds' rows, then `score(model,
    rows)` (named score arrays) on the fold's own rows. Returns every name's scores on all
    rows of `frame`, each from a model that never saw its row's customer."""
    out: dict[str, np.ndarray] = {}
    for fold in np.unique(folds):
        held = folds == fold
        model = refit(frame[~held].reset_index(drop=True), y[~held])
        for name, values in score(model, frame[held].reset_index(drop=True)).items():
            out.setdefault(name, np.full(len(frame), np.nan))[held] = values
    return out
