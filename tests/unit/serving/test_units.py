"""Serving parts on generated data: API keys, the prediction log, and hashed ids (the model
runtime's tests are in tests/unit/serving/)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from features.catalog import Workspace
from features.privacy import hash_id
from serving.auth import ApiKeys, create_key_files, key_hash
from serving.predlog import PredictionLog, encode_rows, lines_table, log_rows


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


def test_prediction_log_lines_keep_their_types_and_mixed_columns_become_text() -> None:
    now = datetime(2024, 1, 2, tzinfo=UTC)
    rows = [
        {"ts": now, "as_of": "2024-01-01T00:00:00+00:00", "x": 1, "seg": "a", "mix": 1.5},
        {"ts": now, "as_of": None, "x": 2.5, "seg": None, "mix": float("nan")},
    ]
    table = lines_table(encode_rows(rows))
    assert str(table.schema.field("as_of").type) == "timestamp[us, tz=UTC]"
    frame = table.to_pandas()
    assert frame["x"].tolist() == [1.0, 2.5] and frame["seg"].tolist() == ["a", None]
    assert frame["as_of"].isna().tolist() == [False, True] and frame["mix"].isna()[1]
    mixed = lines_table(encode_rows([*rows, {**rows[0], "mix": "text"}])).to_pandas()
    assert mixed["mix"].tolist()[::2] == ["1.5", "text"]
    assert "UTC" in str(mixed["ts"].dtype)


WRITER = """
import sys, time
from datetime import UTC, datetime
from pathlib import Path
from serving.predlog import PredictionLog, log_rows
log = PredictionLog(Path(sys.argv[1]), max_rows=1000, max_seconds=600)
answer = {"as_of": None, "cold_start": True, "churn": {"probability": 0.1},
          "clv": {"value": 1.0}, "model_versions": {"churn": "1@champion"}}
now = datetime(2024, 1, 2, tzinfo=UTC)
for i in range(60):
    log.put(log_rows([{**answer, "customer_id": f"cust-{i}"}], f"r{i}", "salt", now))
print("queued", flush=True)
time.sleep(600)
"""


def test_rows_of_a_killed_process_are_written_by_the_next_one(tmp_path: Path) -> None:
    """A process queues 60 rows (no batch due: 1,000 rows or 10 minutes) and is killed with
    SIGKILL; the next prediction log in the folder writes them from the dead one's spool."""
    folder = tmp_path / "predictions"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])}
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(folder)], env=env, stdout=subprocess.PIPE
    )
    try:
        assert writer.stdout is not None and writer.stdout.readline().strip() == b"queued"
        spools = lambda: list(folder.glob(".spool-*.jsonl"))  # noqa: E731
        deadline = time.monotonic() + 60
        while sum(s.read_bytes().count(b"\n") for s in spools()) < 60:
            assert time.monotonic() < deadline, "the writer never spooled its rows"
            time.sleep(0.05)
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    assert not list(folder.glob("date=*/*.parquet"))  # nothing was written before the kill
    log = PredictionLog(folder, max_rows=1000, max_seconds=600)
    log.close()
    frame = pd.concat(pd.read_parquet(f) for f in folder.glob("date=*/part-*.parquet"))
    assert sorted(frame["request_id"]) == sorted(f"r{i}" for i in range(60))
    assert log.stats()["rows_recovered"] == 60 and log.stats()["rows_waiting"] == 0
    assert not spools()  # the dead one's spool is gone, and so is the new one's
    idle = PredictionLog(tmp_path / "idle", max_rows=10, max_seconds=0.1)
    time.sleep(0.5)  # a few empty polls of the queue
    idle.close()
    assert not list((tmp_path / "idle").glob("date=*/*.parquet")), "an empty file was written"
