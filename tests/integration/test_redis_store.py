"""The Redis online store end to end, on a real redis-server: fast materialize writes what
Feast's writes, a workspace switched to Redis loads everything, the reader (catalog scan and
event times included) returns what Feast and the SQLite store return, and the API and batch
scoring answer on Redis as on SQLite (precomputed answers included), and a stopped Redis
gives the documented 503 instead of a hung request."""

from __future__ import annotations

import math
import os
import shutil
import signal
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import redis

from crmscore import steps
from crmscore.settings import Settings, load_settings
from features.feast_repo import AFFINITY_VIEW, BTYD_VIEW, CUSTOMER_VIEW, OFFER_VIEW, VIEWS
from features.online import OnlineFeatures
from features.store import materialize, open_store
from tests.integration.conftest import Server, Trained, serving

pytestmark = pytest.mark.slow

REDIS_SETTINGS = "  feast:\n    online_store: redis\n"


def _settings(ws: Path, dataset: Path, url: str) -> Settings:
    return load_settings(ws, dataset=str(dataset), env={**os.environ, "CRMSCORE_REDIS_URL": url})


def _dump(url: str) -> dict[bytes, dict[bytes, bytes]]:
    host, rest = url.split(":", 1)
    port, db = rest.split(",db=")
    client = redis.Redis(host=host, port=int(port), db=int(db))
    try:
        return {bytes(k): client.hgetall(k) for k in client.scan_iter(count=1000)}
    finally:
        client.close()


@pytest.fixture(scope="module")
def on_redis(
    trained: Trained, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Trained, str, list[dict[str, Any]]]:
    """A copy of the trained workspace switched to Redis (db 1) and materialized twice;
    the two materialize answers."""
    root = tmp_path_factory.mktemp("on_redis")
    shutil.copytree(trained.workspace, root / "ws", symlinks=True)
    dataset = root / "redis.yaml"
    dataset.write_text(trained.dataset.read_text() + REDIS_SETTINGS)
    url = f"{redis_url},db=1"
    settings = _settings(root / "ws", dataset, url)
    assert settings.feast.online_store == "redis"
    steps.apply(settings)
    answers = [steps.materialize(settings), steps.materialize(settings)]
    return Trained(root / "ws", dataset, trained.latest), url, answers


def test_switching_a_workspace_to_redis_loads_every_view(
    on_redis: tuple[Trained, str, list[dict[str, Any]]],
) -> None:
    """The SQLite store of the copy was materialized; Redis has its own record: all of it."""
    _, _, (first, again) = on_redis
    assert first["online_store"] == "redis" and first["path"] == "fast"
    assert sorted(first["reloaded"]) == sorted(VIEWS)
    assert first["entities"][CUSTOMER_VIEW] > 300
    assert first["entities"][OFFER_VIEW] > 3
    assert first["entities"][AFFINITY_VIEW] > 1000
    assert again["reloaded"] == [] and sum(again["entities"].values()) == 0
    assert again["end"] == first["end"]


def test_fast_materialize_on_redis_writes_what_feast_writes(
    on_redis: tuple[Trained, str, list[dict[str, Any]]], redis_url: str
) -> None:
    ws, _, _ = on_redis
    dumps = {}
    for db, stock in ((2, False), (3, True)):
        url = f"{redis_url},db={db}"
        settings = _settings(ws.workspace, ws.dataset, url)
        answer = steps.materialize(settings, stock)
        assert answer["path"] == ("stock" if stock else "fast")
        dumps[db] = _dump(url)
    assert len(dumps[2]) > 1000
    assert dumps[2] == dumps[3]


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    return a == b


def test_reader_on_redis_equals_feast_and_the_sqlite_store(
    on_redis: tuple[Trained, str, list[dict[str, Any]]], trained: Trained
) -> None:
    ws, url, _ = on_redis
    settings = _settings(ws.workspace, ws.dataset, url)
    store = open_store(settings.feast, settings.paths)
    reader = OnlineFeatures(store)
    sqlite = OnlineFeatures(
        open_store(
            load_settings(trained.workspace, dataset=str(trained.dataset)).feast,
            load_settings(trained.workspace, dataset=str(trained.dataset)).paths,
        )
    )
    names = {v: [f.name for f in store.get_feature_view(v).features] for v in VIEWS}

    offers = reader.scan(OFFER_VIEW, names[OFFER_VIEW])
    sqlite_offers = sqlite.scan(OFFER_VIEW, names[OFFER_VIEW])
    assert len(offers) > 3 and list(offers) == list(sqlite_offers)
    for offer, row in offers.items():
        assert row.event_timestamp == sqlite_offers[offer].event_timestamp
        assert all(_same(row.values[n], sqlite_offers[offer].values[n]) for n in names[OFFER_VIEW])

    affinity = pd.read_parquet(settings.paths.snapshot(AFFINITY_VIEW))
    pairs = list(affinity[["customer_id", "offer_id"]].astype(str).itertuples(index=False))[:40]
    customers = sorted({c for c, _ in pairs})[:20]
    cases = {
        CUSTOMER_VIEW: ([(c,) for c in customers] + [("no-such-customer",)], ["customer_id"]),
        BTYD_VIEW: ([(c,) for c in customers], ["customer_id"]),
        OFFER_VIEW: ([(o,) for o in offers] + [("no-such-offer",)], ["offer_id"]),
        AFFINITY_VIEW: ([tuple(p) for p in pairs] + [("x", "y")], ["customer_id", "offer_id"]),
    }
    for view, (keys, join_keys) in cases.items():
        ours = reader.read(view, keys, names[view])
        expected = sqlite.read(view, keys, names[view])
        theirs = store.get_online_features(
            features=[f"{view}:{n}" for n in names[view]],
            entity_rows=[dict(zip(join_keys, k, strict=True)) for k in keys],
        ).to_dict()
        assert sum(r is not None for r in ours) >= len(keys) - 1, view
        for i, (row, other) in enumerate(zip(ours, expected, strict=True)):
            if row is None or other is None:
                assert row is None and other is None, (view, keys[i])
                assert all(theirs[n][i] is None for n in names[view])
                continue
            assert row.event_timestamp == other.event_timestamp is not None
            for n in names[view]:
                assert _same(row.values[n], other.values[n]), (view, keys[i], n)
                value = theirs[n][i]
                value = float(value) if isinstance(row.values[n], float) else value
                assert _same(row.values[n], value), (view, keys[i], n)


HEADERS = {"Authorization": "Bearer test-user-key"}


def _answers(url: str, ids: list[str], explain: bool = True) -> list[dict[str, Any]]:
    out = []
    with httpx.Client(base_url=url, headers=HEADERS, timeout=30) as client:
        for start in range(0, len(ids), 50):
            body = {"customer_ids": ids[start : start + 50], "explain": explain}
            response = client.post("/v1/score", json=body)
            assert response.status_code == 200, response.text
            out += response.json()["scores"]
    return out


def test_api_and_batch_on_redis_answer_as_on_sqlite(
    on_redis: tuple[Trained, str, list[dict[str, Any]]], server: Server, tmp_path: Path
) -> None:
    ws, url, _ = on_redis
    settings = _settings(ws.workspace, ws.dataset, url)
    batch = pd.read_parquet(settings.paths.scores_file(ws.latest))
    ids = [*map(str, batch["customer_id"]), "never-seen-1"]
    with serving(ws.base, tmp_path / "redis-server.log", {"CRMSCORE_REDIS_URL": url}) as redis_api:
        on_redis_answers = _answers(redis_api, ids)
        # The precomputed answers are used on Redis too, and forgotten when the store is
        # written again.
        precomputed = _precomputed_on_every_worker(redis_api)
        assert precomputed == len(ids) - 1
        plain = _answers(redis_api, ids, explain=False)
        reader = OnlineFeatures(open_store(settings.feast, settings.paths))
        before = reader.version()
        assert before is not None and reader.version() == before
        later = pd.Timestamp(ws.latest, tz="UTC").to_pydatetime() + timedelta(days=2)
        materialize(settings.feast, settings.paths, end=later)  # a new window: nothing new
        assert reader.version() not in (None, before)
        assert _strip(_answers(redis_api, ids, explain=False)) == _strip(plain)
        _a_stopped_redis_answers_503_then_recovers(redis_api, url, ids[0])
    on_sqlite_answers = _answers(server.url, ids)
    assert _strip(plain) == _strip(_answers(server.url, ids, explain=False))
    assert len(on_redis_answers) == len(ids) > 100
    for a, b in zip(on_redis_answers, on_sqlite_answers, strict=True):
        for answer in (a, b):
            age = answer.pop("feature_age_seconds")  # grows between the two calls
            assert (age is None) == answer["cold_start"]
            answer.pop("model_versions")  # the SQLite server's may have been reloaded
        assert a == b
    assert sum(a["as_of"] is not None for a in on_redis_answers) == len(ids) - 1
    assert sum(len(a["offers"]) > 0 for a in on_redis_answers) > 100

    # Batch scores from the Redis workspace equal the SQLite workspace's.
    steps.score_batch(settings, pd.Timestamp(ws.latest).date())
    again = pd.read_parquet(settings.paths.scores_file(ws.latest))
    pd.testing.assert_frame_equal(again, batch)


def _models(url: str) -> dict[str, Any]:
    response = httpx.get(f"{url}/v1/models", headers=HEADERS, timeout=30)
    assert response.status_code == 200, response.text
    return dict(response.json())


def _precomputed_on_every_worker(url: str, checks: int = 10) -> int:
    """The number of precomputed answers once `checks` calls in a row (new connections,
    so either worker) report a table."""
    seen: list[int] = []
    for _ in range(600):
        count = _models(url)["precomputed_customers"]
        seen = [*seen, count] if count else []
        if len(seen) >= checks:
            assert len(set(seen)) == 1, seen
            return seen[0]
        time.sleep(0.5)
    pytest.fail("the answers were not precomputed on Redis within 300 s")


def _strip(answers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Answers without what differs between two servers or grows between two calls."""
    return [
        {k: v for k, v in a.items() if k not in ("feature_age_seconds", "model_versions")}
        for a in answers
    ]


def _a_stopped_redis_answers_503_then_recovers(api: str, url: str, customer: str) -> None:
    """With the Redis server stopped (SIGSTOP: connections stay open, nothing answers), a
    score gives up after `serving.store_timeout_seconds` with the documented 503 and
    readiness says the store is out; once it continues, answers come back."""
    host, rest = url.split(":", 1)
    pid = redis.Redis(host=host, port=int(rest.split(",")[0])).info("server")["process_id"]
    body = {"customer_id": customer, "explain": True}
    os.kill(pid, signal.SIGSTOP)
    try:
        answer = httpx.post(f"{api}/v1/score", json=body, headers=HEADERS, timeout=60)
        assert answer.status_code == 503, answer.text
        assert answer.json()["error"]["code"] == "store_unavailable"
        ready = httpx.get(f"{api}/readyz", timeout=60)
        assert ready.status_code == 503 and ready.json()["detail"]["online_store"] is False
    finally:
        os.kill(pid, signal.SIGCONT)
    answer = httpx.post(f"{api}/v1/score", json=body, headers=HEADERS, timeout=60)
    assert answer.status_code == 200, answer.text
    assert httpx.get(f"{api}/readyz", timeout=60).status_code == 200
