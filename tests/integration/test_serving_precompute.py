"""Precomputed answers (`Scorer.precompute`): the same as answers computed per request, and
refreshed when the online store is written (a materialize) or the models are reloaded; over
HTTP against the real BentoML service, and in process on a copy of the trained workspace."""

from __future__ import annotations

import gc
import shutil
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from feast import FeatureStore

from crmscore.settings import load_settings
from crmscore.steps import service_settings
from features.catalog import Workspace
from features.feast_repo import BTYD_VIEW, CUSTOMER_VIEW
from features.model_spec import CHAMPION, model_spec
from features.names import ALL_FEATURES, CREATED_TIMESTAMP
from features.online import OnlineFeatures, OnlineRow
from features.store import open_store
from serving.auth import ApiKeys
from serving.registry import configure
from serving.schemas import ScoreResponse
from serving.state import ServingState
from tests.integration.conftest import Server, Trained

pytestmark = pytest.mark.slow
CUSTOMER_VIEWS = (CUSTOMER_VIEW, BTYD_VIEW)


def _store(workspace: Path, dataset: Path) -> FeatureStore:
    settings = load_settings(workspace, dataset=str(dataset))
    return open_store(settings.feast, settings.paths)


def _row(store: FeatureStore, view: str, customer: str) -> OnlineRow:
    names = [f.name for f in store.get_feature_view(view).features]
    row = OnlineFeatures(store).read(view, [(customer,)], names)[0]
    assert row is not None
    return row


def _write(store: FeatureStore, view: str, customer: str, row: OnlineRow) -> None:
    """Write `row` as `customer`'s row of `view` into the online store, with Feast (as a
    materialize does)."""
    frame = pd.DataFrame(
        [
            {
                "customer_id": customer,
                "event_timestamp": row.event_timestamp,
                CREATED_TIMESTAMP: row.event_timestamp,
                **row.values,
            }
        ]
    )
    for name in row.values:
        if ALL_FEATURES[name].dtype == "float":
            frame[name] = frame[name].astype(float)
    store.write_to_online_store(view, frame)


def _score(client: httpx.Client, customer: str) -> dict[str, Any]:
    response = client.post("/v1/score", json={"customer_id": customer})
    assert response.status_code == 200, response.text
    return response.json()["scores"][0]


def _ids(trained: Trained) -> list[str]:
    return [str(c) for c in _batch(trained)["customer_id"]]


def _batch(trained: Trained) -> pd.DataFrame:
    return pd.read_parquet(Workspace(trained.workspace).scores_file(trained.latest))


def _two_customers(trained: Trained) -> tuple[str, str]:
    """Two customers whose batch churn probabilities and CLVs differ."""
    batch = _batch(trained)
    a = batch.iloc[0]
    other = batch[
        (batch["churn_probability"] != a["churn_probability"]) & (batch["clv"] != a["clv"])
    ]
    return str(a["customer_id"]), str(other["customer_id"].iloc[0])


def test_answers_skip_no_field_of_the_response_model(server: Server) -> None:
    """The API writes precomputed answers without FastAPI's re-validation: the JSON must be
    exactly what the response model makes of it, reasons included."""
    ids = _ids(server.trained)[:20]
    with server.client() as client:
        for body in ({"customer_ids": ids}, {"customer_ids": ids[:3], "explain": True}):
            answer = client.post("/v1/score", json=body).json()
            assert ScoreResponse.model_validate(answer).model_dump(mode="json") == answer


def test_a_write_to_the_online_store_changes_the_answers_of_both_workers(server: Server) -> None:
    """Customer A gets B's customer rows (a materialize of changed data): every answer for A,
    whichever worker gives it, then has B's churn and CLV; A's own rows back, A's own again."""
    trained = server.trained
    store = _store(trained.workspace, trained.dataset)
    a, b = _two_customers(trained)
    own = {view: _row(store, view, a) for view in CUSTOMER_VIEWS}
    with server.client() as client:
        before, of_b = _score(client, a), _score(client, b)
        assert before["churn"] != of_b["churn"]
        try:
            for view in CUSTOMER_VIEWS:
                _write(store, view, a, _row(store, view, b))
            for _ in range(20):  # two workers: each must see the new rows
                after = _score(client, a)
                assert (after["churn"], after["clv"]) == (of_b["churn"], of_b["clv"])
        finally:
            for view, row in own.items():
                _write(store, view, a, row)
        for _ in range(20):
            again = _score(client, a)
            assert (again["churn"], again["clv"]) == (before["churn"], before["clv"])


@pytest.fixture()
def copied(trained: Trained, tmp_path: Path) -> Iterator[ServingState]:
    """A serving state (models loaded, answers precomputed) on a copy of the trained
    workspace, so writes and registry changes leave the shared one alone."""
    workspace = tmp_path / "ws"
    shutil.copytree(trained.workspace, workspace)
    settings = service_settings(load_settings(workspace, dataset=str(trained.dataset)))
    state = ServingState(
        params=settings.serving,
        keys=ApiKeys.from_env({}),
        client=configure(settings.tracking_uri),
        store=open_store(settings.feast, settings.paths),
        paths=settings.paths,
    )
    state.load()
    state.precompute()  # what the watcher thread does after a load
    yield state
    state.close()


def _computed(state: ServingState, ids: list[str]) -> list[dict[str, Any]]:
    """Answers computed from the store now, without the precomputed table."""
    scorer = state.scorer
    assert scorer is not None
    return _comparable(scorer.score(scorer.lookup(ids)))


def _comparable(answers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in a.items() if k != "feature_age_seconds"} for a in answers]


def test_precomputed_answers_equal_computed_ones_and_follow_materialize(
    copied: ServingState, trained: Trained
) -> None:
    scorer = copied.scorer
    assert scorer is not None and scorer.precomputed is not None
    ids = _ids(trained)
    assert len(scorer.precomputed.answers) >= len(ids)
    assert _comparable(scorer.answers(ids)) == _computed(copied, ids)

    a, b = _two_customers(trained)
    old_a, of_b = scorer.answers([a])[0], scorer.answers([b])[0]
    for view in CUSTOMER_VIEWS:
        _write(copied.store, view, a, _row(copied.store, view, b))
    # Before the table is computed again, answers are computed from the store as it is.
    assert scorer.store_changed()
    fresh = scorer.answers([a])[0]
    assert (fresh["churn"], fresh["clv"]) == (of_b["churn"], of_b["clv"])
    assert fresh["churn"] != old_a["churn"]
    table = scorer.precomputed
    copied.precompute()  # what the watcher thread does
    assert not scorer.store_changed() and scorer.precomputed is not table
    assert scorer.precomputed.answers[a][0]["churn"] == of_b["churn"]
    assert _comparable(scorer.answers(ids)) == _computed(copied, ids)


def test_a_reload_to_another_model_version_precomputes_with_it(copied: ServingState) -> None:
    scorer = copied.scorer
    assert scorer is not None and scorer.precomputed is not None
    ids = sorted(scorer.precomputed.answers)[:50]
    name = model_spec("churn").registry_name
    champion = copied.client.get_model_version_by_alias(name, CHAMPION)
    new = copied.client.create_model_version(name, str(champion.source), champion.run_id)
    copied.client.set_registered_model_alias(name, CHAMPION, new.version)
    copied.load()
    reloaded = copied.scorer
    assert reloaded is not None and reloaded is not scorer
    assert reloaded.precomputed is None  # the reload does not wait for the table
    assert _comparable(reloaded.answers(ids)) == _computed(copied, ids)
    copied.precompute()
    assert reloaded.precomputed is not None
    answers = reloaded.answers(ids)
    assert {a["model_versions"]["churn"] for a in answers} == {f"{new.version}@champion"}
    assert _comparable(answers) == _computed(copied, ids)


def test_a_reload_frees_the_models_and_answers_it_replaces(copied: ServingState) -> None:
    """Loaded models and their answers are frozen out of the garbage collector's scans;
    a reload must unfreeze them, or every reload keeps the previous ones for good."""
    replaced = weakref.ref(copied.scorer)
    copied.load()
    copied.precompute()
    gc.collect()
    assert replaced() is None
