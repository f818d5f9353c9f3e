"""Pseudonymous customer ids for logs, prediction logs and reference samples.

Customer ids are personal data: anything written outside the feature store carries
`hash_id(customer_id, key)` instead: HMAC-SHA256 with a secret key, so the hashes cannot be
reversed by hashing every possible id. The key is the configured one (CRMSCORE_ID_SALT), else a
random key generated once and kept in the workspace (`Workspace.id_key_file`, owner-only);
serving, training and monitoring resolve it the same way (`resolve_id_key`) so their hashes
join. No hash is ever made with an empty key."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import stat
from collections.abc import Iterable

from features.catalog import Workspace
from features.publish import write_private

HASH_CHARS = 16
CUSTOMER_HASH = "customer_hash"  # the column that carries it wherever ids are hashed


def hash_id(customer_id: str, key: str) -> str:
    """First 16 hex characters of HMAC-SHA256(key, customer_id); ValueError for an empty key."""
    if not key:
        raise ValueError("customer ids are hashed with a secret key: got an empty one")
    mac = hmac.new(key.encode("utf8"), str(customer_id).encode("utf8"), hashlib.sha256)
    return mac.hexdigest()[:HASH_CHARS]


def hash_ids(customer_ids: Iterable[object], key: str) -> list[str]:
    """`hash_id` of each id."""
    if not key:
        raise ValueError("customer ids are hashed with a secret key: got an empty one")
    return [hash_id(str(c), key) for c in customer_ids]


def workspace_id_key(paths: Workspace) -> str:
    """The workspace's hash key (`paths.id_key_file`), created when missing: 32 random bytes
    (hex), in a file created with mode 0600 and renamed into place without replacing one that
    exists (when two processes race, both use the first one written). A key file others may
    read is refused (ValueError): its hashes would be reversible by them."""
    path = paths.id_key_file
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_private(path, secrets.token_hex(32) + "\n", replace=False)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise ValueError(
            f"{path}: the id hash key is readable by others (mode {mode:o}); "
            "make it owner-only (chmod 600) or configure CRMSCORE_ID_SALT"
        )
    key = path.read_text().strip()
    if not key:
        raise ValueError(f"{path}: the id hash key file is empty; delete it to create a new key")
    return key


def resolve_id_key(configured: str, paths: Workspace) -> str:
    """The key of the customer-id hashes: `configured` (CRMSCORE_ID_SALT) when set, else the
    workspace's (`workspace_id_key`)."""
    return configured or workspace_id_key(paths)
