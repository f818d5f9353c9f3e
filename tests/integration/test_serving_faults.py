"""The real BentoML service under faults: a damaged or edited champion is refused on reload
while the models in use keep answering; what-if input that is not a finite number is a 422
naming the field, and what-if answers stay out of the prediction log; no error body, page or
document shows exception text, temporary paths, the server's version or a third-party script."""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import bentoml
import httpx
import mlflow
import pandas as pd
import pytest

from features.model_spec import CHAMPION, model_spec
from serving.models import BUNDLE_FILE, CHECKSUMS_FILE
from serving.registry import bundle_folder, configure
from tests.integration.conftest import ADMIN_KEY, Server

pytestmark = pytest.mark.slow
NAME = model_spec("churn").registry_name
BOOSTER = "booster_churn.txt"


def _truncate_booster(bundle: Path) -> None:
    data = (bundle / BOOSTER).read_bytes()
    (bundle / BOOSTER).write_bytes(data[: len(data) // 2])


def _zero_threshold(bundle: Path) -> None:
    meta = json.loads((bundle / BUNDLE_FILE).read_text())
    (bundle / BUNDLE_FILE).write_text(json.dumps({**meta, "threshold": 0}))


def _swap_columns_and_reseal(bundle: Path) -> None:
    """Two columns swapped, with checksums over the edited files (a bundle exported so)."""
    meta = json.loads((bundle / BUNDLE_FILE).read_text())
    columns = meta["columns"]
    columns[0], columns[1] = columns[1], columns[0]
    (bundle / BUNDLE_FILE).write_text(json.dumps(meta))
    files = [BUNDLE_FILE, *(f"booster_{b}.txt" for b in meta["boosters"])]
    sums = {f: hashlib.sha256((bundle / f).read_bytes()).hexdigest() for f in files}
    (bundle / CHECKSUMS_FILE).write_text(json.dumps(sums))


@pytest.mark.parametrize(
    "damage",
    [_truncate_booster, _zero_threshold, _swap_columns_and_reseal],
    ids=["truncated-booster", "threshold-0", "swapped-columns"],
)
def test_a_damaged_champion_is_refused_and_the_models_in_use_keep_serving(
    server: Server, tmp_path: Path, damage: Callable[[Path], None]
) -> None:
    client = configure(f"sqlite:///{server.trained.workspace / 'mlflow' / 'mlflow.db'}")
    current = client.get_model_version_by_alias(NAME, CHAMPION)
    # A copy of the champion's MLflow model, damaged, registered as a new version.
    local = Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{NAME}/{current.version}", dst_path=str(tmp_path)
        )
    )
    damage(bundle_folder(local))
    damaged = client.create_model_version(NAME, local.as_uri(), current.run_id)
    client.set_registered_model_alias(NAME, CHAMPION, damaged.version)
    try:
        with server.client(ADMIN_KEY) as admin:
            answer = admin.post("/v1/admin/reload")
            assert answer.status_code == 409, answer.text
            error = answer.json()["error"]
            assert error["code"] == "reload_failed"
            for leak in (str(tmp_path), "/tmp", "Error", "Traceback", "checksum", BOOSTER):
                assert leak not in answer.text
            # Both workers keep answering with the champion in use.
            for _ in range(6):
                models = admin.get("/v1/models")
                assert models.status_code == 200
                assert models.json()["models"]["churn"]["version"] == str(current.version)
            for _ in range(6):
                score = admin.post("/v1/score", json={"customer_id": "any"})
                assert score.status_code == 200, score.text
                versions = score.json()["scores"][0]["model_versions"]
                assert versions["churn"] == f"{current.version}@{CHAMPION}"
    finally:
        client.set_registered_model_alias(NAME, CHAMPION, current.version)


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ('{"recency_days": NaN}', "customers.0.features.recency_days"),
        ('{"recency_days": Infinity}', "customers.0.features.recency_days"),
        ('{"frequency_365d": -Infinity}', "customers.0.features.frequency_365d"),
        ('{"monetary_365d": 1e309}', "customers.0.features.monetary_365d"),
        ('{"monetary_365d": 1' + "0" * 400 + "}", "customers.0.features.monetary_365d"),
    ],
)
def test_what_if_numbers_must_be_finite(server: Server, raw: str, field: str) -> None:
    body = '{"customers": [{"customer_id": "what-if", "features": ' + raw + "}]}"
    with server.client() as client:
        answer = client.post(
            "/v1/score/features", content=body, headers={"content-type": "application/json"}
        )
    assert answer.status_code == 422, answer.text
    fields = answer.json()["error"]["fields"]
    assert [(f["field"], f["expected"]) for f in fields] == [(field, "a finite number")]


def test_what_if_offer_numbers_must_be_finite(server: Server) -> None:
    offer = '{"offer_id": "o1", "features": {"affinity_orders_365d": Infinity}}'
    body = '{"customers": [{"features": {"recency_days": 3}, "offers": [' + offer + "]}]}"
    with server.client() as client:
        answer = client.post(
            "/v1/score/features", content=body, headers={"content-type": "application/json"}
        )
    assert answer.status_code == 422, answer.text
    fields = [(f["field"], f["expected"]) for f in answer.json()["error"]["fields"]]
    assert fields == [("customers.0.offers.0.features.affinity_orders_365d", "a finite number")]


def _logged_requests(folder: Path) -> set[str]:
    files = list(folder.glob("date=*/part-*.parquet"))
    frames = [pd.read_parquet(f, columns=["request_id"]) for f in files]
    return set(pd.concat(frames)["request_id"]) if frames else set()


def test_what_if_answers_are_not_logged_as_live_traffic(server: Server) -> None:
    folder = server.trained.workspace / "predictions"
    with server.client() as client:  # one connection: one worker, one log queue, in order
        what_if = client.post(
            "/v1/score/features",
            json={"customers": [{"customer_id": f"probe-{uuid.uuid4().hex}", "features": {}}]},
        )
        assert what_if.status_code == 200, what_if.text
        live = client.post("/v1/score", json={"customer_id": "any"})
        assert live.status_code == 200
    deadline = time.monotonic() + 30
    while live.json()["request_id"] not in _logged_requests(folder):
        assert time.monotonic() < deadline, "the live answer never reached the log"
        time.sleep(0.5)
    assert what_if.json()["request_id"] not in _logged_requests(folder)


def test_pages_and_documents_show_no_server_version_or_third_party_script(
    server: Server,
) -> None:
    index = httpx.get(f"{server.url}/", timeout=30)
    assert index.status_code == 200 and "text/html" in index.headers["content-type"]
    scripts = re.findall(r"<script[^>]*>", index.text, flags=re.IGNORECASE)
    assert not [s for s in scripts if re.search(r"src\s*=\s*[\"']?(https?:)?//", s)]
    assert "googletagmanager" not in index.text
    docs = httpx.get(f"{server.url}/docs.json", timeout=30)
    assert docs.status_code == 200 and docs.json()["paths"]
    assert bentoml.__version__ not in docs.text and "bentoml" not in docs.text.lower()
