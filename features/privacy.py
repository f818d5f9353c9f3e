"""Pseudonymous customer ids for logs, prediction logs and reference samples.

Customer ids are personal data: anything written outside the feature store carries
`hash_id(customer_id, salt)` instead. Set a secret salt (CRMSCORE_ID_SALT) in production so the
hashes cannot be reversed by hashing every possible id; the same salt must be used by serving
and monitoring so their hashes join."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

HASH_CHARS = 16
CUSTOMER_HASH = "customer_hash"  # the column that carries it wherever ids are hashed


def hash_id(customer_id: str, salt: str = "") -> str:
    """First 16 hex characters of sha256(salt + customer_id)."""
    return hashlib.sha256((salt + str(customer_id)).encode("utf8")).hexdigest()[:HASH_CHARS]


def hash_ids(customer_ids: Iterable[object], salt: str = "") -> list[str]:
    """`hash_id` of each id."""
    return [hash_id(str(c), salt) for c in customer_ids]
