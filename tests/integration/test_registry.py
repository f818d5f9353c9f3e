"""The promotion gate and rollback against a real MLflow tracking store and registry."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient

from serving.registry import configure
from tests.unit.test_training import _churn_model, _customers
from training.config import GateParams
from training.tracking import (
    CHALLENGER,
    CHAMPION,
    MODEL_NAMES,
    load_alias,
    log_run,
    promote,
    rollback,
)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> tuple[MlflowClient, Path]:
    root = tmp_path_factory.mktemp("mlflow")
    return configure(f"sqlite:///{root / 'mlflow.db'}"), root / "artifacts"


def _log(
    client: MlflowClient, root: Path, model_auc: float, baseline: float, champion: float | None
) -> str:
    metrics = {"model_roc_auc": model_auc, "best_baseline_roc_auc": baseline}
    if champion is not None:
        metrics["champion_roc_auc"] = champion
    example, _, _ = _customers(5, 9)
    return log_run(
        "churn",
        _churn_model(),
        metrics,
        {"seed": 1},
        {"test_cutoff": "2021-01-01", "git_commit": "test"},
        [],
        {},
        example.drop(columns=["customer_id"]),
        "{}",
        root,
        client,
    )


def _champion(client: MlflowClient) -> str:
    return str(client.get_model_version_by_alias(MODEL_NAMES["churn"], CHAMPION).version)


def test_gate_promotes_refuses_and_rolls_back(registry: tuple[MlflowClient, Path]) -> None:
    client, root = registry
    first = _log(client, root, 0.80, 0.77, None)
    assert str(client.get_model_version_by_alias(MODEL_NAMES["churn"], CHALLENGER).version) == first
    decision = promote("churn", GateParams(churn_auc_margin=0.01), client)
    assert decision.promoted and _champion(client) == first

    # Worse than the champion on the same test window: refused, champion kept.
    worse = _log(client, root, 0.79, 0.77, 0.80)
    decision = promote("churn", GateParams(), client)
    assert not decision.promoted and "champion" in decision.reason
    assert _champion(client) == first and worse != first

    # Better than the champion but not by the margin over the baseline: refused.
    _log(client, root, 0.81, 0.805, 0.80)
    assert not promote("churn", GateParams(churn_auc_margin=0.01), client).promoted

    better = _log(client, root, 0.83, 0.77, 0.80)
    assert promote("churn", GateParams(churn_auc_margin=0.01), client).promoted
    assert _champion(client) == better
    assert rollback("churn", client).promoted
    assert _champion(client) == first


def test_registered_model_loads_and_predicts_like_the_original(
    registry: tuple[MlflowClient, Path],
) -> None:
    client, _ = registry
    loaded = load_alias("churn", CHAMPION, client)
    assert loaded is not None
    test, _, _ = _customers(50, 10)
    pd.testing.assert_series_equal(
        pd.Series(loaded.predict(test)), pd.Series(_churn_model().predict(test))
    )
