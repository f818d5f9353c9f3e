"""Customer hashes are keyed (HMAC-SHA256) and never made with an empty key; the workspace
key and the API key files are owner-only from the moment they exist (real files)."""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from features.catalog import Workspace
from features.privacy import hash_id, hash_ids, resolve_id_key, workspace_id_key
from monitoring.privacy import hash_ids as hash_column
from serving.auth import create_key_files
from serving.config import id_salt
from serving.predlog import log_rows


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_hashes_are_hmac_sha256_of_the_key() -> None:
    expected = hmac.new(b"k3y", b"cust-1", hashlib.sha256).hexdigest()[:16]
    assert hash_id("cust-1", "k3y") == expected
    assert hash_id("cust-1", "k3y") != hashlib.sha256(b"k3ycust-1").hexdigest()[:16]


def test_no_hash_is_made_with_an_empty_key() -> None:
    with pytest.raises(ValueError, match="empty"):
        hash_id("cust-1", "")
    with pytest.raises(ValueError, match="empty"):
        hash_ids(["cust-1"], "")
    with pytest.raises(ValueError, match="empty"):
        hash_column(pd.Series(["cust-1"]), "")
    answer = {
        "customer_id": "cust-1",
        "as_of": None,
        "cold_start": True,
        "churn": {"probability": 0.1},
        "clv": {"value": 1.0},
        "model_versions": {},
    }
    with pytest.raises(ValueError, match="empty"):
        log_rows([answer], "r1", "", datetime(2024, 1, 1, tzinfo=UTC))


def test_without_a_configured_key_the_workspace_gets_a_random_private_one(
    tmp_path: Path,
) -> None:
    old = os.umask(0)  # even a permissive umask must not widen the key file
    try:
        paths = Workspace(tmp_path / "ws")
        key = resolve_id_key("", paths)
    finally:
        os.umask(old)
    assert len(key) == 64 and int(key, 16) >= 0
    assert _mode(paths.id_key_file) == 0o600
    assert resolve_id_key("", paths) == key  # kept: hashes of later runs join
    assert id_salt({}, paths) == key  # the service resolves the same key
    assert resolve_id_key("configured", paths) == "configured"
    assert id_salt({"CRMSCORE_ID_SALT": "configured"}, paths) == "configured"
    other = Workspace(tmp_path / "other")
    assert workspace_id_key(other) != key  # random per workspace
    assert [p.name for p in paths.id_key_file.parent.iterdir()] == [paths.id_key_file.name]


def test_a_key_file_others_can_read_is_refused(tmp_path: Path) -> None:
    paths = Workspace(tmp_path / "ws")
    workspace_id_key(paths)
    paths.id_key_file.chmod(0o644)
    with pytest.raises(ValueError, match="readable by others"):
        workspace_id_key(paths)


def test_api_key_files_are_new_owner_only_files_never_rewritten_in_place(
    tmp_path: Path,
) -> None:
    paths = Workspace(tmp_path / "ws")
    files = paths.key_files()
    # An old key file someone left readable by others, and a second name for the same file
    # (what a reader that opened it would still see).
    for path in files.values():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("0" * 64 + "\n")
        path.chmod(0o644)
        os.link(path, path.with_name(path.name + ".seen"))
    create_key_files(paths)
    for path in files.values():
        assert _mode(path) == 0o600
        seen = path.with_name(path.name + ".seen")
        # The new hash never went into the readable file: it was created 0600 and renamed.
        assert seen.read_text() == "0" * 64 + "\n"
        assert _mode(seen) == 0o644
        assert path.read_text() != seen.read_text()
        assert not path.samefile(seen)
    assert not [p for p in paths.serving_dir.iterdir() if p.name.endswith(".tmp")]
