"""Data without products (issue 15, item 8: the models are independent).

An export with one row per customer and day (customer, date, amount: no order id, no product,
no category) goes through the whole pipeline: it ingests (orders derived per customer-day),
its features build and materialize (the offer views empty), churn and CLV train, register
and are promoted while the offer model is skipped with a one-line reason, batch scoring
writes churn and CLV without offer columns, the real API over HTTP answers churn and CLV
with no offers and a warning, and monitoring runs on those scores."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pandas as pd
import pytest
from typer.testing import CliRunner

from crmscore import steps
from crmscore.cli import app
from crmscore.settings import Settings, load_settings
from features.catalog import Workspace
from features.config import DatasetConfig
from features.contract import NO_PRODUCTS
from features.ingest import ingest
from features.model_spec import CHAMPION, model_spec
from features.synthetic import synthetic_export, write_export
from tests.integration.conftest import USER_KEY, serving

pytestmark = pytest.mark.slow

SKIPPED = f"nbo: skipped: {NO_PRODUCTS}"


def customer_day_export(customers: int, seed: int, days: int) -> pd.DataFrame:
    """One row per customer and day with the day's net amount: no order id, no product."""
    lines = synthetic_export(lines=customers * 75, customers=customers, seed=seed, days=days)
    lines = lines.assign(
        Amount=lines["Quantity"] * lines["Price"], Date=lines["InvoiceDate"].str[:10]
    )
    daily = lines.groupby(["Customer ID", "Date"], as_index=False)["Amount"].sum()
    return daily.rename(columns={"Customer ID": "Customer"}).round({"Amount": 2})


def dataset_yaml(csv: Path) -> str:
    """A dataset that maps neither product_id nor category (nor order_id)."""
    return f"""name: daily_totals
timezone: UTC
tables:
  transactions:
    sources:
      - path: {csv}
        columns:
          customer_id: Customer
          timestamp: Date
          amount: Amount
    timestamp_format: "%Y-%m-%d"
settings:
  training:
    bootstrap: 20
    split:
      max_train_cutoffs: 6
"""


def run_cli(*args: str) -> tuple[dict, str]:
    """A crmscore command in-process: its JSON answer and what it said on stderr."""
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout), result.stderr


@dataclass(frozen=True)
class Run:
    """A trained product-less workspace and what each step answered."""

    settings: Settings
    dataset: Path
    answers: dict[str, dict]
    latest: str
    scores: pd.DataFrame
    score_answer: dict

    @property
    def base(self) -> list[str]:
        """Global CLI options for this workspace."""
        return ["--workspace", str(self.settings.workspace), "--dataset", str(self.dataset)]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    root = tmp_path_factory.mktemp("products_free")
    csv = write_export(customer_day_export(400, seed=11, days=730), root / "daily.csv")
    dataset = root / "daily_totals.yaml"
    dataset.write_text(dataset_yaml(csv))
    settings = load_settings(root / "ws", dataset=str(dataset))
    answers = {name: step(settings) for name, step in steps.PIPELINE}
    latest = steps.latest_cutoff(settings)
    base = ["--workspace", str(settings.workspace), "--dataset", str(dataset)]
    score_answer, _ = run_cli(*base, "score", "batch", "--as-of", latest)
    scores = pd.read_parquet(score_answer["parquet"])
    return Run(settings, dataset, answers, latest, scores, score_answer)


def test_an_export_without_order_ids_gets_one_order_per_customer_day(tmp_path: Path) -> None:
    rows = pd.DataFrame(
        {
            "c": ["1", "1", "2", None, "3"],
            "d": [
                "2023-01-01 10:00",
                "2023-01-01 23:30",
                "2023-01-02 01:00",
                "2023-01-02 09:00",
                None,
            ],
            "a": ["10", "5", "7", "1", "2"],
        }
    )
    rows.to_csv(tmp_path / "x.csv", index=False)
    config = DatasetConfig.model_validate(
        {
            "name": "x",
            "timezone": "Europe/Berlin",
            "tables": {
                "transactions": {
                    "sources": [
                        {
                            "path": str(tmp_path / "x.csv"),
                            "columns": {"customer_id": "c", "timestamp": "d", "amount": "a"},
                        }
                    ]
                }
            },
        }
    )
    paths = Workspace(tmp_path / "ws")
    report = ingest(config, tmp_path, paths)
    assert report["products"] is False
    # Nothing is dropped silently: each row is accepted or rejected for what it misses.
    assert report["rejected_by_reason"] == {"missing_customer_id": 1, "missing_timestamp": 1}
    tx = pd.read_parquet(paths.table("transactions"))
    # Local days (Berlin): 23:30 on Jan 1 is the same day as 10:00, whatever the UTC date.
    assert tx["order_id"].tolist() == ["1@2023-01-01", "1@2023-01-01", "2@2023-01-02"]


def test_features_build_and_materialize_with_empty_offer_views(run: Run) -> None:
    assert run.answers["ingest"]["products"] is False
    build = run.answers["features build"]
    assert build["offer_catalog"] is None
    assert build["offers"] == f"none: {NO_PRODUCTS}"
    assert build["rows"]["offer_features"] == 0
    assert build["rows"]["customer_offer_features"] == 0
    assert build["rows"]["labels_offer"] == 0
    assert build["rows"]["labels_churn"] > 0 and build["rows"]["labels_clv"] > 0
    paths = run.settings.paths
    # The offer views exist with their typed columns, so Feast reads them like any other.
    offers = pd.read_parquet(paths.snapshot("offer_features"))
    assert offers.empty and "offer_buyers_30d" in offers
    assert offers["offer_buyers_30d"].dtype == "int64"
    materialized = run.answers["features materialize"]["entities"]
    assert materialized["customer_features"] > 300
    assert materialized["offer_features"] == 0
    assert materialized["customer_offer_features"] == 0


def test_churn_and_clv_are_trained_and_promoted_while_nbo_is_skipped(run: Run) -> None:
    trained = {m["model"]: m for m in run.answers["train"]["models"]}
    assert trained["churn"]["version"] == "1" and trained["clv"]["version"] == "1"
    assert trained["nbo"] == {"model": "nbo", "skipped": NO_PRODUCTS}
    decisions = {d["model"]: d for d in run.answers["promote"]["decisions"]}
    assert decisions["nbo"]["reason"] == f"skipped: {NO_PRODUCTS}"
    client = steps.mlflow_client(run.settings)
    for kind in ("churn", "clv"):
        name = model_spec(kind).registry_name
        assert str(client.get_model_version_by_alias(name, CHAMPION).version) == "1"
    assert not client.search_registered_models(f"name = '{model_spec('nbo').registry_name}'")


def test_the_command_line_says_why_nbo_is_skipped_in_one_line(run: Run) -> None:
    answer, said = run_cli(*run.base, "train", "--model", "nbo")
    assert answer["models"] == [{"model": "nbo", "skipped": NO_PRODUCTS}]
    assert SKIPPED in said.splitlines()
    assert "Traceback" not in said


def test_batch_scores_every_active_customer_without_offer_columns(run: Run) -> None:
    scores, answer = run.scores, run.score_answer
    assert answer["model_versions"] == {"churn": "1@champion", "clv": "1@champion"}
    assert answer["offers"] == f"none: {NO_PRODUCTS}"
    as_of = pd.Timestamp(run.latest, tz="UTC")
    tx = pd.read_parquet(run.settings.paths.table("transactions"))
    bought = tx[(tx["amount"] > 0) & (tx["timestamp"] < as_of)]
    active = set(bought.loc[bought["timestamp"] >= as_of - pd.Timedelta(days=365), "customer_id"])
    assert len(active) > 100
    assert active <= set(scores["customer_id"])
    assert scores["customer_id"].is_unique
    assert (
        scores[["churn_probability", "clv", "clv_tier", "retention_priority"]].notna().all().all()
    )
    assert scores["churn_probability"].between(0, 1).all()
    assert not [c for c in scores if c.startswith("offer_") or c.startswith("nbo_")]
    # Target lists that need no offers work; the offer objective says what is missing.
    targets, _ = run_cli(*run.base, "target", "--objective", "retention", "--budget", "50")
    assert targets["customers"] == 50


def test_monitoring_runs_on_scores_without_offers(run: Run) -> None:
    backtest = steps.backtest(run.settings)
    statuses = {r["model"]: r["status"] for r in backtest.snapshots}
    assert statuses["nbo"] == "not scored"
    drift = steps.drift(run.settings, ["churn", "clv"], dashboard=False)
    assert [m["model"] for m in drift.models] == ["churn", "clv"]


@pytest.fixture(scope="module")
def server(run: Run, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("products_free_server") / "server.log"
    with serving(run.base, log) as url:
        yield url


def test_the_api_answers_churn_and_clv_with_no_offers_and_a_warning(run: Run, server: str) -> None:
    batch = run.scores.set_index("customer_id")
    known = list(batch.index[:20])
    headers = {"Authorization": f"Bearer {USER_KEY}"}
    with httpx.Client(base_url=server, headers=headers, timeout=30) as client:
        response = client.post("/v1/score", json={"customer_ids": [*known, "nobody"]})
        assert response.status_code == 200, response.text
        answers = response.json()["scores"]
        models = client.get("/v1/models")
    assert len(answers) == len(known) + 1
    warning = f"no offers: {NO_PRODUCTS}"
    for a in answers[:-1]:
        expected = batch.loc[a["customer_id"]]
        assert a["churn"]["probability"] == pytest.approx(expected["churn_probability"], abs=1e-6)
        assert a["clv"]["value"] == pytest.approx(expected["clv"], abs=0.01)
        assert a["clv"]["tier"] == expected["clv_tier"]
        assert a["offers"] == []
        # Then that the synthetic history ended long ago (stale features).
        assert a["warnings"][0] == warning and a["warnings"][1].startswith("stale features")
        assert a["model_versions"] == {"churn": "1@champion", "clv": "1@champion"}
    cold = answers[-1]
    assert cold["cold_start"] is True and cold["offers"] == []
    assert warning in cold["warnings"]
    assert models.status_code == 200
    assert set(models.json()["models"]) == {"churn", "clv"}
