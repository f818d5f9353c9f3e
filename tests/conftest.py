"""Shared fixtures: small generated data with known ground truth, and the real datasets."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from features.config import FeatureParams, LabelParams, SegmentParams
from tests.servers import mlflow_server, postgres_server, redis_server

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATASETS = PROJECT_ROOT.parent / "shared" / "datasets"


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    """../shared/datasets: skipped when absent, except under CI=true where it must exist."""
    if not (SHARED_DATASETS / "online_retail").exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{SHARED_DATASETS} is missing; CI must have ../shared beside the repo")
        pytest.skip(f"{SHARED_DATASETS} not found (real-data tests need ../shared)")
    return SHARED_DATASETS


def tx(rows: list[tuple[str, str, str, float]], **extra: list[object]) -> pd.DataFrame:
    """Canonical transactions from (customer_id, order_id, 'YYYY-MM-DD[ HH:MM]', amount)."""
    frame = pd.DataFrame(rows, columns=["customer_id", "order_id", "timestamp", "amount"])
    frame["timestamp"] = pd.to_datetime(frame["timestamp"]).dt.tz_localize("UTC")
    for name, values in extra.items():
        frame[name] = values
    frame["customer_id"] = frame["customer_id"].astype("string")
    frame["order_id"] = frame["order_id"].astype("string")
    return frame


@pytest.fixture
def params() -> tuple[FeatureParams, LabelParams, SegmentParams]:
    """Feature, label and segment settings with short windows for small data."""
    return (
        FeatureParams(cutoffs=[pd.Timestamp("2021-03-01").date()], partitions=2),
        LabelParams(churn_horizon_days=30, clv_horizon_days=30, offer_horizon_days=30),
        SegmentParams(),
    )


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server on a free loopback port (Feast's connection string)."""
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture(scope="session")
def tracking_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A real MLflow tracking server on PostgreSQL with proxied artifacts: its URL and the
    folder where it keeps the artifacts."""
    folder = tmp_path_factory.mktemp("mlflow_server")
    with postgres_server() as database, mlflow_server(database, folder) as url:
        yield url, folder / "artifacts"
