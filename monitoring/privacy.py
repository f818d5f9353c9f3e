"""Customer ids never appear in monitoring outputs: they are replaced by the project's
keyed short hash (features.privacy), the same one serving and training log."""

from __future__ import annotations

import pandas as pd

from features.privacy import CUSTOMER_HASH, hash_id

__all__ = ["CUSTOMER_HASH", "hash_ids"]


def hash_ids(ids: pd.Series, key: str) -> pd.Series:
    """`features.privacy.hash_id` of every id in a column (with the secret `key`), as a
    column."""
    return pd.Series([hash_id(str(c), key) for c in ids], index=ids.index, dtype="string")
