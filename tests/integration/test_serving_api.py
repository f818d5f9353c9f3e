"""The real BentoML service over HTTP: contract, auth, limits, cold start, what-if, reload under
load, the prediction log and a schema fuzz run against its own OpenAPI document."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from features.catalog import Workspace
from features.model_spec import CHAMPION, model_spec
from features.privacy import hash_id, workspace_id_key
from serving.registry import configure
from tests.integration.conftest import ADMIN_KEY, USER_KEY, Server

pytestmark = pytest.mark.slow


def _scores(server: Server) -> pd.DataFrame:
    return pd.read_parquet(Workspace(server.trained.workspace).scores_file(server.trained.latest))


def _post(client: httpx.Client, body: dict, path: str = "/v1/score") -> httpx.Response:
    return client.post(path, json=body)


def test_score_answers_the_contract_and_equals_batch_scores(server: Server) -> None:
    """Every customer of the batch, page by page: the same churn, CLV with its percentile and
    tier (one definition: among the model's test population), offers and segments."""
    batch = _scores(server).set_index("customer_id")
    all_ids = list(batch.index)
    answers = []
    with server.client() as client:
        for start in range(0, len(all_ids), 50):
            page = all_ids[start : start + 50]
            response = _post(client, {"customer_ids": page, "explain": start == 0})
            assert response.status_code == 200, response.text
            assert [a["customer_id"] for a in response.json()["scores"]] == page
            answers += response.json()["scores"]
    assert len(answers) == len(batch) > 100
    for a in answers:
        expected = batch.loc[a["customer_id"]]
        assert a["churn"]["probability"] == pytest.approx(expected["churn_probability"], abs=1e-6)
        assert a["churn"]["band"] == expected["churn_band"]
        assert a["churn"]["flag"] == bool(expected["churn_flag"])
        assert a["clv"]["value"] == pytest.approx(expected["clv"], abs=0.01)
        assert a["clv"]["percentile"] == pytest.approx(expected["clv_percentile"], abs=1e-9)
        assert a["clv"]["tier"] == expected["clv_tier"]
        for o in a["offers"]:
            k = o["rank"]
            assert o["offer_id"] == expected[f"offer_{k}"]
            assert o["probability"] == pytest.approx(expected[f"offer_{k}_probability"], abs=1e-6)
            assert o["expected_value"] == pytest.approx(
                expected[f"offer_{k}_expected_value"], abs=1e-4
            )
        assert [o["offer_id"] for o in a["offers"]] == [
            expected[f"offer_{k}"] for k in range(1, len(a["offers"]) + 1)
        ]
        assert a["retention_priority"] == pytest.approx(
            a["churn"]["probability"] * a["clv"]["value"], abs=0.01
        )
        assert a["segment"]["rfm_segment"] == expected["rfm_segment"]
        assert a["segment"]["value_tier"] == expected["value_tier"]
        assert a["segment"]["lifecycle_stage"] == expected["lifecycle_stage"]
        assert a["as_of"].startswith(server.trained.latest)
        assert a["feature_age_seconds"] > 0
        assert set(a["model_versions"]) == {"churn", "clv", "nbo"}
        # The synthetic history ended long ago: the one warning is the stale features'.
        assert not a["cold_start"] and len(a["warnings"]) == 1
        assert a["warnings"][0].startswith("stale features")
    assert batch["clv_tier"].nunique() > 1
    for a in answers[:50]:
        assert a["reasons"]["churn"]["up"] or a["reasons"]["churn"]["down"]
        assert all(
            isinstance(t, str) and " the churn risk" in t for t in a["reasons"]["churn"]["up"]
        )


def test_serve_says_once_that_it_is_ready(server: Server) -> None:
    """`crmscore serve` prints one "ready on <url>" line (the fixture saw /readyz answer;
    the command's own check may print a moment later)."""
    for _ in range(60):
        lines = [line for line in server.log.read_text().splitlines() if "ready on" in line]
        if lines:
            break
        time.sleep(0.5)
    assert len(lines) == 1, server.log.read_text()[-2000:]
    assert lines[0].startswith(f"ready on {server.url} in ")


def test_unknown_customer_gets_a_flagged_cold_start_answer(server: Server) -> None:
    known = str(_scores(server)["customer_id"].iloc[0])
    with server.client() as client:
        response = _post(client, {"customer_ids": ["never-seen-1", known], "top_k": 3})
    assert response.status_code == 200
    cold, warm = response.json()["scores"]
    assert cold["cold_start"] and cold["warnings"] and cold["as_of"] is None
    assert 0 <= cold["churn"]["probability"] <= 1 and cold["clv"]["value"] >= 0
    assert len(cold["offers"]) == 3 and len(warm["offers"]) == 3
    assert not warm["cold_start"]


def test_authentication(server: Server) -> None:
    body = {"customer_id": "x"}
    for key in (None, "wrong-key"):
        with server.client(key) as client:
            response = _post(client, body)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthorized"
    with httpx.Client(base_url=server.url, headers={"X-API-Key": USER_KEY}) as client:
        assert _post(client, body).status_code == 200
    with server.client(USER_KEY) as client:
        response = client.post("/v1/admin/reload")
        assert response.status_code == 403 and response.json()["error"]["code"] == "forbidden"
        assert client.get("/v1/models").status_code == 200


def test_limits_and_malformed_input_answer_4xx_json(server: Server) -> None:
    with server.client() as client:
        too_many = _post(client, {"customer_ids": [f"c{i}" for i in range(51)]})
        assert too_many.status_code == 422
        assert too_many.json()["error"]["fields"][0]["field"] == "customer_ids"
        huge = client.post(
            "/v1/score",
            content=b'{"customer_ids": ["' + b"x" * 30_000 + b'"]}',
            headers={"content-type": "application/json"},
        )
        assert huge.status_code == 413 and huge.json()["error"]["code"] == "body_too_large"

        def chunks():  # no Content-Length: the limit is counted as the body streams
            yield b'{"customer_ids": ["'
            for _ in range(30):
                yield b"x" * 1000
            yield b'"]}'

        streamed = client.post(
            "/v1/score", content=chunks(), headers={"content-type": "application/json"}
        )
        assert streamed.status_code == 413, streamed.text
        assert streamed.json()["error"]["code"] == "body_too_large"
        broken = client.post(
            "/v1/score", content=b"{not json", headers={"content-type": "application/json"}
        )
        assert broken.status_code == 422 and "error" in broken.json()
        wrong_type = _post(client, {"customer_id": "x", "top_k": "many"})
        assert wrong_type.status_code == 422
        assert any(f["field"] == "top_k" for f in wrong_type.json()["error"]["fields"])
        both = _post(client, {"customer_id": "x", "customer_ids": ["y"]})
        assert both.status_code == 422
        assert client.get("/v1/nothing-here").status_code == 404


def test_what_if_features_score_like_the_store_and_are_validated(server: Server) -> None:
    customer = str(_scores(server)["customer_id"].iloc[3])
    with server.client() as client:
        stored = _post(client, {"customer_id": customer}).json()["scores"][0]
        from_store = server_features(server, customer)
        what_if = _post(
            client, {"customers": [{"customer_id": customer, **from_store}]}, "/v1/score/features"
        )
        assert what_if.status_code == 200, what_if.text
        answer = what_if.json()["scores"][0]
        assert answer["churn"]["probability"] == pytest.approx(stored["churn"]["probability"])
        assert answer["clv"]["value"] == pytest.approx(stored["clv"]["value"])
        assert [o["offer_id"] for o in answer["offers"]] == [
            o["offer_id"] for o in stored["offers"]
        ]
        # A more recent last purchase never raises the churn risk (monotone constraint).
        fresher = {**from_store["features"], "recency_days": 0.0}
        recent = _post(
            client,
            {"customers": [{"features": fresher, "offers": from_store["offers"]}]},
            "/v1/score/features",
        ).json()["scores"][0]
        assert recent["churn"]["probability"] <= answer["churn"]["probability"] + 1e-9
        bad = _post(
            client,
            {"customers": [{"features": {"recency_days": "yesterday", "shoe_size": 44}}]},
            "/v1/score/features",
        )
        assert bad.status_code == 422
        fields = {f["field"] for f in bad.json()["error"]["fields"]}
        assert fields == {"customers.0.features.recency_days", "customers.0.features.shoe_size"}


def server_features(server: Server, customer: str) -> dict:
    """The customer's features and every customer x offer row the online store holds."""
    from crmscore.settings import load_settings
    from features.feast_repo import (
        AFFINITY_VIEW,
        BTYD_VIEW,
        CUSTOMER_VIEW,
        OFFER_VIEW,
        SERVICE_FEATURES,
    )
    from features.online import OnlineFeatures
    from features.store import open_store
    from serving.scoring import AFFINITY_FEATURES

    settings = load_settings(server.trained.workspace, dataset=str(server.trained.dataset))
    online = OnlineFeatures(open_store(settings.feast, settings.paths))
    names = [n for service in SERVICE_FEATURES.values() for n in service[CUSTOMER_VIEW]]
    row = online.read(CUSTOMER_VIEW, [(customer,)], [*dict.fromkeys(names), "history_offers"])[0]
    btyd_names = [n for service in SERVICE_FEATURES.values() for n in service.get(BTYD_VIEW, [])]
    btyd = online.read(BTYD_VIEW, [(customer,)], list(dict.fromkeys(btyd_names)))[0]
    assert row is not None and btyd is not None
    offers = sorted(online.scan(OFFER_VIEW, []))
    pairs = online.read(AFFINITY_VIEW, [(customer, o) for o in offers], AFFINITY_FEATURES)
    rows = [
        {"offer_id": o, "features": p.values}
        for o, p in zip(offers, pairs, strict=True)
        if p is not None
    ]
    return {"features": {**row.values, **btyd.values}, "offers": rows}


def test_models_health_and_readiness(server: Server) -> None:
    with server.client() as client:
        models = client.get("/v1/models").json()["models"]
    assert set(models) == {"churn", "clv", "nbo"}
    for info in models.values():
        assert info["version"] and info["alias"] == "champion"
        assert info["test_cutoff"] and info["training_cutoffs"]
    assert httpx.get(f"{server.url}/healthz").status_code == 200
    assert httpx.get(f"{server.url}/readyz").status_code == 200


def test_prediction_log_has_hashed_ids_and_no_log_line_has_a_raw_id(server: Server) -> None:
    ids = [str(c) for c in _scores(server)["customer_id"].iloc[30:40]]
    with server.client() as client:
        assert _post(client, {"customer_ids": ids}).status_code == 200
    folder = server.trained.workspace / "predictions"
    deadline = time.monotonic() + 30
    logged = pd.DataFrame()
    # No key configured: the service hashes with the workspace's key.
    key = workspace_id_key(Workspace(server.trained.workspace))
    hashes = {hash_id(c, key) for c in ids}
    while time.monotonic() < deadline:
        files = list(folder.glob("date=*/part-*.parquet"))
        logged = pd.concat([pd.read_parquet(f) for f in files]) if files else logged
        if hashes <= set(logged.get("customer_hash", [])):
            break
        time.sleep(0.5)
    assert hashes <= set(logged["customer_hash"])
    assert "customer_id" not in logged.columns
    row = logged[logged["customer_hash"] == hash_id(ids[0], key)].iloc[-1]
    assert 0 <= row["churn_probability"] <= 1 and row["recency_days"] >= 0
    assert row["churn_model_version"]
    # What `crmscore serve` said, and what its server process wrote to the workspace's log.
    text = server.log.read_text() + Workspace(server.trained.workspace).server_log.read_text()
    assert not [c for c in ids if f'"{c}"' in text or f" {c} " in text or f"={c}" in text]


def test_reload_under_load_drops_no_request(server: Server) -> None:
    """Hammer the API from 4 threads while the champion changes and is reloaded 5 times."""
    ids = [str(c) for c in _scores(server)["customer_id"].iloc[:50]]
    ws = server.trained.workspace
    client = configure(f"sqlite:///{ws / 'mlflow' / 'mlflow.db'}")
    name = model_spec("churn").registry_name
    current = client.get_model_version_by_alias(name, "challenger")
    # A second registered version of the same run: a "newly promoted champion".
    new = client.create_model_version(name, str(current.source), current.run_id)
    statuses: list[int] = []
    versions: set[str] = set()
    stop = threading.Event()

    def load(seed: int) -> None:
        rng = np.random.default_rng(seed)
        with server.client() as http:
            while not stop.is_set():
                r = http.post("/v1/score", json={"customer_id": ids[int(rng.integers(50))]})
                statuses.append(r.status_code)
                if r.status_code == 200:
                    versions.add(r.json()["scores"][0]["model_versions"]["churn"])

    threads = [threading.Thread(target=load, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    try:
        with server.client(ADMIN_KEY) as admin:
            for i in range(5):
                time.sleep(0.3)
                target = new.version if i % 2 == 0 else current.version
                client.set_registered_model_alias(name, CHAMPION, target)
                answer = admin.post("/v1/admin/reload")
                assert answer.status_code == 200, answer.text
                assert answer.json()["models"]["churn"]["version"] == str(target)
        # The reload reached the worker that took it; the other follows within its watcher's
        # period (1 s). Keep the load on until an answer of the last champion arrives (a
        # guard against a worker that never follows, not a time limit).
        deadline = time.monotonic() + 60
        while f"{new.version}@champion" not in versions and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert len(statuses) > 50
    assert set(statuses) == {200}, f"failed requests: {[s for s in statuses if s != 200][:5]}"
    assert {f"{new.version}@champion", f"{current.version}@champion"} <= versions


def test_serve_refuses_to_start_without_models_and_says_why(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from crmscore.cli import app

    result = CliRunner().invoke(app, ["--workspace", str(tmp_path / "empty"), "serve"])
    assert result.exit_code == 2
    assert "crmscore train" in result.output and "features apply" in result.output
    assert "Traceback" not in result.output


def test_schema_fuzzing_finds_the_document_true(server: Server, tmp_path: Path) -> None:
    """schemathesis with every check against the service's own OpenAPI document: no 5xx,
    every request the document calls valid accepted and every invalid one refused, every
    answer (errors included) documented with its status, content type and schema, and the
    declared authentication enforced."""
    # A body over `serving.max_body_bytes` is refused with 413 whatever it holds: a limit in
    # bytes, which JSON Schema cannot state, so 413 is an expected answer to any request.
    config = tmp_path / "schemathesis.toml"
    config.write_text(
        "[checks.positive_data_acceptance]\n"
        'expected-statuses = ["2xx", "401", "403", "409", "413", "429"]\n'
        "[checks.negative_data_rejection]\n"
        'expected-statuses = ["400", "401", "403", "404", "405", "413", "422", "429"]\n'
    )
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "schemathesis"),
            "--config-file",
            str(config),
            "run",
            f"{server.url}/openapi.json",
            "--checks",
            "all",
            "--header",
            f"Authorization: Bearer {ADMIN_KEY}",
            "--max-examples",
            "40",
            "--seed",
            "7",
            "--request-timeout",
            "30",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    summary = result.stdout[-3000:]
    assert result.returncode == 0, summary
    assert " passed" in summary and "generated" in summary
