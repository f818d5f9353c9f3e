"""Serving parts on generated data: API keys, the prediction log, and hashed ids (the model
runtime's tests are in tests/unit/serving/)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from features.catalog import Workspace
from features.privacy import hash_id
from serving.auth import ApiKeys, create_key_files, key_hash
from serving.predlog import PredictionLog, log_rows


def test_api_keys_from_environment_and_hash_files(tmp_path: Path) -> None:
    user, admin = create_key_files(Workspace(tmp_path))
    files = Workspace(tmp_path).key_files()
    keys = ApiKeys.from_env(
        {"CRMSCORE_API_KEYS": "plain-1, plain-2", **{v: str(p) for v, p in files.items()}}
    )
    assert keys.role("plain-2") == "user" and keys.role(user) == "user"
    assert keys.role(admin) == "admin"
    assert keys.role("plain-3") is None and keys.role(None) is None and keys.role("") is None
    assert user not in files["CRMSCORE_API_KEYS_FILE"].read_text()
    assert key_hash(user) in files["CRMSCORE_API_KEYS_FILE"].read_text()
    assert not ApiKeys.from_env({}).configured

    bad = tmp_path / "bad.sha256"
    bad.write_text(f"{key_hash('x')}\nnot-a-hash\n")
    with pytest.raises(ValueError, match=r"bad.sha256, line 2: expected a SHA-256"):
        ApiKeys.from_env({"CRMSCORE_API_KEYS_FILE": str(bad)})


def _answer(customer: str, p: float) -> dict:
    return {
        "customer_id": customer,
        "as_of": "2024-01-01T00:00:00+00:00",
        "cold_start": False,
        "_features": {"recency_days": 3.0, "rfm_segment": "Loyal"},
        "churn": {"probability": p},
        "clv": {"value": 10.0},
        "offers": [{"offer_id": "o1"}],
        "model_versions": {"churn": "1@champion", "clv": "2@champion", "nbo": "1@challenger"},
    }


def test_prediction_log_writes_hashed_rows_off_the_request_path(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path, max_rows=3, max_seconds=60)
    now = datetime(2024, 1, 2, tzinfo=UTC)
    for i in range(5):
        log.put(log_rows([_answer(f"cust-{i}", i / 10)], f"r{i}", "salt", now))
    deadline = time.monotonic() + 10
    while not list(tmp_path.glob("date=*/part-*.parquet")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list(tmp_path.glob("date=*/part-*.parquet")), "3 rows reached max_rows: one file"
    log.close()  # the last 2 rows are flushed on close
    frame = pd.concat(pd.read_parquet(f) for f in tmp_path.glob("date=*/part-*.parquet"))
    assert sorted(frame["customer_hash"]) == sorted(hash_id(f"cust-{i}", "salt") for i in range(5))
    assert hash_id("cust-1", "salt") != hash_id("cust-1", "pepper")  # the key matters
    assert not frame.astype(str).apply(lambda c: c.str.contains("cust-")).any().any()
    assert set(frame["nbo_model_version"]) == {"1@challenger"}
    assert frame["churn_probability"].sort_values().tolist() == [0.0, 0.1, 0.2, 0.3, 0.4]
