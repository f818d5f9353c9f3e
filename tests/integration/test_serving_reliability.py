"""The real BentoML service (`crmscore serve`) with faults injected into its real parts: the
SQLite online store locked by another connection, renamed away or swapped; a burst of pages
beyond what a worker can score; an unwritable prediction-log folder; a client guessing keys.
Each answer is JSON in the API's error format, with Retry-After where a retry helps."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import psutil
import pytest

from features.catalog import Workspace
from features.names import CUSTOMER_ID
from features.store import serialize_string_keys
from serving.limits import key_fingerprint
from tests.integration.conftest import USER_KEY, Server, Trained, serving

pytestmark = pytest.mark.slow


def _store(server: Server) -> Path:
    return Workspace(server.trained.workspace).online_store


def _ids(server: Server, n: int, start: int = 0) -> list[str]:
    scores = pd.read_parquet(Workspace(server.trained.workspace).scores_file(server.trained.latest))
    return [str(c) for c in scores["customer_id"].iloc[start : start + n]]


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """The store file locked by another connection, as a writer holding it would."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=60)
    conn.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        conn.execute("ROLLBACK")
        conn.close()


def _until(read: Callable[[], dict], done: Callable[[dict], bool]) -> dict:
    """Read until `done` holds (the prediction log writes in the background)."""
    deadline = time.monotonic() + 60
    value = read()
    while not done(value):
        assert time.monotonic() < deadline, f"still {value}"
        time.sleep(0.2)
        value = read()
    return value


def _stable(body: dict[str, Any]) -> list[dict[str, Any]]:
    """A score answer's customers without what changes from call to call (feature age)."""
    return [{k: v for k, v in a.items() if k != "feature_age_seconds"} for a in body["scores"]]


def _assert_retry_error(answer: httpx.Response, status: int, code: str) -> None:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/json"
    assert answer.json()["error"]["code"] == code
    assert int(answer.headers["retry-after"]) >= 1


def test_a_locked_store_answers_503_while_health_answers_at_once(server: Server) -> None:
    """With the store locked, answers that need a store read (reasons asked: computed per
    request) get a fast 503; a precomputed answer needs no read and is given unchanged
    (or, where the lock touched the file's version stamp, the same fast 503); liveness
    answers at once, readiness says the store is out."""
    ids = _ids(server, 8)
    with server.client() as client:
        before = {c: client.post("/v1/score", json={"customer_id": c}).json() for c in ids}
    finished: list[str] = []
    answers: list[httpx.Response] = []
    plain: dict[str, httpx.Response] = {}

    def score(cid: str) -> None:
        with server.client() as client:
            answers.append(client.post("/v1/score", json={"customer_id": cid, "explain": True}))
            plain[cid] = client.post("/v1/score", json={"customer_id": cid})
        finished.append("score")

    def health() -> None:
        answer = httpx.get(f"{server.url}/healthz", timeout=30)
        assert answer.status_code == 200 and answer.json()["status"] == "ok"
        finished.append("health")

    with _locked(_store(server)):
        scorers = [threading.Thread(target=score, args=(c,)) for c in ids]
        for t in scorers:
            t.start()
        # Liveness answers while every worker has store reads waiting on the lock: the
        # reads are off the event loop.
        healths = [threading.Thread(target=health) for _ in range(4)]
        for t in healths:
            t.start()
        for t in healths + scorers:
            t.join()
        ready = httpx.get(f"{server.url}/readyz", timeout=30)
    assert finished[:4] == ["health"] * 4, finished
    for answer in answers:  # the store's short time-out, not the request's 504 or a 500
        _assert_retry_error(answer, 503, "store_unavailable")
    for cid, answer in plain.items():
        if answer.status_code == 503:
            _assert_retry_error(answer, 503, "store_unavailable")
            continue
        assert answer.status_code == 200, answer.text
        assert _stable(answer.json()) == _stable(before[cid])
    assert ready.status_code == 503
    assert ready.json()["detail"] == {"models_loaded": True, "online_store": False}
    # The lock released, the same workers answer again.
    with server.client() as client:
        again = client.post("/v1/score", json={"customer_id": ids[0], "explain": True})
        assert again.status_code == 200
    assert httpx.get(f"{server.url}/readyz").json()["status"] == "ready"


def test_a_store_file_renamed_away_is_not_ready_and_not_served(server: Server) -> None:
    path = _store(server)
    aside = path.with_name("renamed-away.db")
    path.rename(aside)
    try:
        ready = [httpx.get(f"{server.url}/readyz") for _ in range(4)]
        with server.client() as client:
            one = client.post("/v1/score", json={"customer_id": _ids(server, 1)[0]})
            page = client.post("/v1/score", json={"customer_ids": _ids(server, 20)})
    finally:
        aside.rename(path)
    assert {r.status_code for r in ready} == {503}
    assert all(r.json()["detail"]["online_store"] is False for r in ready)
    _assert_retry_error(one, 503, "store_unavailable")
    _assert_retry_error(page, 503, "store_unavailable")
    assert httpx.get(f"{server.url}/readyz").status_code == 200


def test_after_an_atomic_swap_every_path_reads_the_new_store(
    server: Server, tmp_path: Path
) -> None:
    path = _store(server)
    ids = _ids(server, 20, start=50)
    gone = ids[3]
    with server.client() as client:  # both paths read the store before the swap
        for _ in range(4):
            assert not client.post("/v1/score", json={"customer_id": gone}).json()["scores"][0][
                "cold_start"
            ]
            client.post("/v1/score", json={"customer_ids": ids})
    original = tmp_path / "original.db"
    shutil.copy2(path, original)
    # The new store: the same but without one customer, published by rename.
    new = path.with_name("online_store.new.db")
    shutil.copy2(path, new)
    conn = sqlite3.connect(new)
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    with server.client() as client:
        stored = client.post("/v1/score", json={"customer_id": gone}).json()["scores"][0]
    key = serialize_string_keys([CUSTOMER_ID], [[gone]])[0]
    for table in tables:
        columns = [r[1] for r in conn.execute(f'PRAGMA table_info("{table}")')]
        if "entity_key" in columns:
            conn.execute(f'DELETE FROM "{table}" WHERE entity_key = ?', (key,))
    conn.commit()
    conn.close()
    assert not stored["cold_start"]
    os.replace(new, path)
    try:
        with server.client() as client:
            for _ in range(8):  # answered by both workers, on every path
                one = client.post("/v1/score", json={"customer_id": gone}).json()["scores"][0]
                assert one["cold_start"], "the 1-id path served the old store"
                page = client.post("/v1/score", json={"customer_ids": ids}).json()["scores"]
                cold = {s["customer_id"] for s in page if s["cold_start"]}
                assert gone in cold, "a page served the old store"
            for fresh in (httpx.Client(base_url=server.url) for _ in range(4)):
                with fresh:
                    answer = fresh.post(
                        "/v1/score",
                        json={"customer_id": gone},
                        headers={"Authorization": f"Bearer {USER_KEY}"},
                    )
                assert answer.json()["scores"][0]["cold_start"]
    finally:
        os.replace(original, path)


def test_a_burst_beyond_capacity_is_shed_at_once_with_retry_after(server: Server) -> None:
    """24 concurrent pages of 50 customers; each worker admits 100 customers at once. With
    the store locked the admitted pages hold their budget until the store's time-out, so
    all the others must be shed; unlocked, every page is either answered or shed."""
    ids = _ids(server, 50)

    def page(_: int) -> httpx.Response:
        with server.client() as client:
            return client.post("/v1/score", json={"customer_ids": ids})

    with ThreadPoolExecutor(24) as pool:
        with _locked(_store(server)):
            locked = list(pool.map(page, range(24)))
        unlocked = list(pool.map(page, range(24)))
    shed = [a for a in locked if a.json()["error"]["code"] == "overloaded"]
    assert len(shed) >= 24 - 2 * 2, [a.status_code for a in locked]
    for answer in shed:
        _assert_retry_error(answer, 503, "overloaded")
    for answer in (a for a in locked if a not in shed):
        _assert_retry_error(answer, 503, "store_unavailable")
    assert any(a.status_code == 200 for a in unlocked)
    for answer in (a for a in unlocked if a.status_code != 200):
        _assert_retry_error(answer, 503, "overloaded")


def _log_stats(client: httpx.Client) -> dict:
    answer = client.get("/v1/models")
    assert answer.status_code == 200, answer.text
    stats: dict = answer.json()["prediction_log"]
    return stats


def test_an_unwritable_log_folder_is_reported_and_rows_beyond_the_bound_counted(
    server: Server,
) -> None:
    """The folder made unwritable (a read-only mode; as root, whom modes do not stop, a file
    in its place): rows wait up to `prediction_log_max_rows` (200 in the tests), the rest
    are dropped and counted, and the waiting rows are written once the folder is back."""
    folder = Workspace(server.trained.workspace).predictions_dir
    aside = folder.with_name("predictions-aside")
    ids = _ids(server, 50, start=100)
    with server.client() as client:  # one connection: one worker, whose counters we read
        assert client.post("/v1/score", json={"customer_id": ids[0]}).status_code == 200
        before = _until(lambda: _log_stats(client), lambda s: s["rows_waiting"] == 0)
        folder.rename(aside)
        if os.geteuid() == 0:
            folder.write_text("not a folder")
        else:
            folder.mkdir(mode=0o555)
        try:
            answers = [client.post("/v1/score", json={"customer_ids": ids}) for _ in range(6)]
            assert {a.status_code for a in answers} == {200}
            during = _until(
                lambda: _log_stats(client), lambda s: s["failed_writes"] > before["failed_writes"]
            )
        finally:
            folder.unlink() if folder.is_file() else folder.rmdir()
            aside.rename(folder)
        assert during["last_error"] and str(folder) not in during["last_error"]
        assert during["rows_dropped"] - before["rows_dropped"] == 6 * 50 - 200
        assert during["rows_waiting"] <= 200
        after = _until(lambda: _log_stats(client), lambda s: s["rows_waiting"] == 0)
    written = after["rows_written"] - before["rows_written"]
    assert written == 200 and after["rows_dropped"] == during["rows_dropped"]
    assert after["last_error"] is None
    logged = pd.concat(pd.read_parquet(f) for f in folder.glob("date=*/part-*.parquet"))
    kept = {a.json()["request_id"] for a in answers} & set(logged["request_id"])
    assert len(kept) * 50 == written


def test_failed_authentications_are_logged_and_limited_per_client(server: Server) -> None:
    """A client (its own address, 127.0.0.2) guessing keys: each failure is logged by the
    key's fingerprint and counted; after 50 in a minute (the tests' limit) it gets 429 with
    Retry-After whatever key it sends, while other clients are served."""
    transport = httpx.HTTPTransport(local_address="127.0.0.2")
    guesses = [f"guess-{i:03d}" for i in range(50)]
    with httpx.Client(base_url=server.url, transport=transport, timeout=30) as guesser:
        for key in guesses:
            answer = guesser.get("/v1/models", headers={"Authorization": f"Bearer {key}"})
            assert answer.status_code == 401
        for key in ("guess-again", USER_KEY):
            blocked = guesser.get("/v1/models", headers={"Authorization": f"Bearer {key}"})
            _assert_retry_error(blocked, 429, "too_many_failures")
    with server.client() as other:
        assert other.get("/v1/models").status_code == 200
    log = server.output()
    assert "guess-0" not in log
    assert f"key sha256 {key_fingerprint(guesses[-1])}, 50 failures" in log


def _workers(port: int) -> list[psutil.Process]:
    """The worker processes of the BentoML server listening on `port`."""
    for process in psutil.process_iter(["cmdline"]):
        line = process.info["cmdline"] or []
        if "bentoml" in " ".join(line) and "--port" in line and str(port) in line:
            children = process.children(recursive=True)
            return [c for c in children if "_bentoml_impl.worker" in " ".join(c.cmdline())]
    return []


def _logged(folder: Path, pattern: str) -> list[str]:
    """The request ids of the rows in the prediction log's files matching `pattern`."""
    ids: list[str] = []
    for path in folder.glob(pattern):
        try:
            if path.suffix == ".parquet":
                ids += pd.read_parquet(path, columns=["request_id"])["request_id"].tolist()
            else:
                ids += [json.loads(line)["request_id"] for line in path.read_text().splitlines()]
        except (OSError, ValueError, KeyError):
            continue  # written or removed while read: read again
    return ids


def test_a_killed_worker_s_log_rows_are_written_by_the_worker_that_replaces_it(
    trained: Trained, tmp_path: Path
) -> None:
    """A server whose log writes a file only every 10 minutes: its rows wait in the workers'
    spools; both workers are killed with SIGKILL, and their replacements write every row
    (each once) before they answer."""
    dataset = tmp_path / "slow-log.yaml"
    text = trained.dataset.read_text()
    dataset.write_text(
        text.replace("prediction_log_seconds: 0.5", "prediction_log_seconds: 600").replace(
            "prediction_log_rows: 50", "prediction_log_rows: 100000"
        )
    )
    base = ["--workspace", str(trained.workspace), "--dataset", str(dataset)]
    folder = Workspace(trained.workspace).predictions_dir
    scores = pd.read_parquet(Workspace(trained.workspace).scores_file(trained.latest))
    ids = [str(c) for c in scores["customer_id"].iloc[:5]]
    with serving(base, tmp_path / "serve.log") as url:
        port = int(url.rsplit(":", 1)[1])
        workers = _workers(port)
        assert len(workers) == 2, workers
        sent: list[str] = []
        for _ in range(20):  # new connections: both workers answer some
            with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {USER_KEY}"}) as c:
                answer = c.post("/v1/score", json={"customer_ids": ids})
                assert answer.status_code == 200, answer.text
                sent.append(answer.json()["request_id"])
        expected = sorted(sent * len(ids))
        spooled = _until(
            lambda: {"ids": _logged(folder, ".spool-*.jsonl")},
            lambda v: set(sent) <= set(v["ids"]),
        )
        assert not set(sent) & set(_logged(folder, "date=*/*.parquet")), "written before"
        assert sorted(i for i in spooled["ids"] if i in set(sent)) == expected
        for worker in workers:
            worker.send_signal(signal.SIGKILL)
        # A guard for replacements that never come, not a time limit: each new worker
        # loads the models and precomputes the answers first.
        deadline = time.monotonic() + 900
        while sorted(i for i in _logged(folder, "date=*/*.parquet") if i in set(sent)) != expected:
            assert time.monotonic() < deadline, "the killed workers' rows were never written"
            time.sleep(1)
        assert not set(sent) & set(_logged(folder, ".spool-*.jsonl"))
