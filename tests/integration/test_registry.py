"""The promotion gate and rollback against a real MLflow tracking store and registry, and the
registered model as the bundle: loaded by MLflow and by crmscore alike, nothing pickled."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from features.model_spec import model_spec
from serving.models import BundleModel, set_population
from serving.registry import bundle_folder, configure, load_registered
from tests.unit.training.data import NBO_FEATURES, pairs_frame
from tests.unit.training.test_models import FEATURES, _churn_model, _customers
from training.clv import train_clv
from training.config import ClvParams, GateParams, NboParams
from training.nbo import train_nbo
from training.tracking import CHALLENGER, CHAMPION, log_run, promote, rollback

CHURN_NAME = model_spec("churn").registry_name


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> tuple[MlflowClient, Path]:
    root = tmp_path_factory.mktemp("mlflow")
    return configure(f"sqlite:///{root / 'mlflow.db'}"), root / "artifacts"


def _log(
    client: MlflowClient,
    root: Path,
    model_auc: float,
    baseline: float,
    champion: float | None,
    bias: float | None = None,
) -> str:
    metrics = {"model_roc_auc": model_auc, "best_baseline_roc_auc": baseline}
    if champion is not None:
        metrics["champion_roc_auc"] = champion
    if bias is not None:
        metrics["model_total_bias"] = bias
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
    return str(client.get_model_version_by_alias(CHURN_NAME, CHAMPION).version)


def test_gate_promotes_refuses_and_rolls_back(registry: tuple[MlflowClient, Path]) -> None:
    client, root = registry
    # The first version: no champion to beat, and it was the best contender on validation,
    # so it becomes the champion even below the best baseline on the test cutoff.
    first = _log(client, root, 0.76, 0.77, None)
    assert str(client.get_model_version_by_alias(CHURN_NAME, CHALLENGER).version) == first
    decision = promote("churn", GateParams(churn_auc_margin=0.01), client)
    assert decision.promoted and _champion(client) == first

    # Worse than the champion on the same test window: refused, champion kept.
    worse = _log(client, root, 0.75, 0.77, 0.76)
    decision = promote("churn", GateParams(), client)
    assert not decision.promoted and "champion" in decision.reason
    assert _champion(client) == first and worse != first

    # A tie is not a win; better, but not by the margin, is refused too.
    _log(client, root, 0.76, 0.77, 0.76)
    assert not promote("churn", GateParams(), client).promoted
    _log(client, root, 0.765, 0.77, 0.76)
    assert not promote("churn", GateParams(churn_auc_margin=0.01), client).promoted
    # A total far off the actual total is refused whatever the primary metric.
    _log(client, root, 0.90, 0.77, 0.76, bias=-0.3)
    decision = promote("churn", GateParams(), client)
    assert not decision.promoted and "off the actual total" in decision.reason

    better = _log(client, root, 0.78, 0.77, 0.76)
    assert promote("churn", GateParams(churn_auc_margin=0.01), client).promoted
    assert _champion(client) == better
    assert rollback("churn", client).promoted
    assert _champion(client) == first


def test_registered_champion_loads_and_predicts_like_the_original(
    registry: tuple[MlflowClient, Path],
) -> None:
    client, _ = registry
    loaded = load_registered("churn", client, CHAMPION)
    assert loaded.version.endswith("@champion") and loaded.info["alias"] == "champion"
    test, _, _ = _customers(50, 10)
    pd.testing.assert_series_equal(
        pd.Series(loaded.predict(test)), pd.Series(_churn_model().predict(test))
    )


def _trained(kind: str) -> tuple[BundleModel, pd.DataFrame]:
    """A small trained model of each kind and rows to score."""
    if kind == "churn":
        model, test = _churn_model(), _customers(40, 12)[0]
    elif kind == "clv":
        train, _, y_train = _customers(1500, 1)
        valid, _, y_valid = _customers(500, 2)
        features = [*FEATURES, "rfm_segment", "country"]
        model, _ = train_clv(
            train, y_train, valid, y_valid, features, ClvParams(formulations=["two_part"]), 1
        )
        test = _customers(40, 12)[0]
        test.loc[::3, "rfm_segment"] = "never-seen"
    else:
        train, valid, test = pairs_frame(200, 10, 1), pairs_frame(100, 10, 2), pairs_frame(4, 10, 3)
        model, _ = train_nbo(
            train, train["accepted"].to_numpy(), valid, valid["accepted"].to_numpy(),
            NBO_FEATURES, NboParams(), 1,
        )  # fmt: skip
    test.loc[::4, model.columns[0]] = np.nan
    set_population(model, model.predict(test))
    return model, test


@pytest.mark.parametrize("kind", ["churn", "clv", "nbo"])
def test_the_registered_model_is_the_bundle(
    kind: str, registry: tuple[MlflowClient, Path], tmp_path: Path
) -> None:
    client, root = registry
    model, test = _trained(kind)
    version = log_run(
        kind,
        model,
        {"model_x": 1.0},
        {"seed": 1},
        {"test_cutoff": "2021-01-01", "git_commit": "test"},
        [],
        {},
        test[model.columns],
        "{}",
        root,
        client,
    )
    name = model_spec(kind).registry_name
    expected = model.predict(test)

    # MLflow loads it with crmscore's loader and predicts what the bundle predicts.
    pyfunc = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
    np.testing.assert_allclose(
        np.asarray(pyfunc.predict(test[model.columns])), expected, rtol=0, atol=1e-12
    )
    # crmscore's one loader gives the same bundle back.
    loaded = load_registered(kind, client, CHALLENGER)
    assert loaded.version == f"{version}@challenger" and loaded.meta == model.meta
    np.testing.assert_allclose(loaded.predict(test), expected, rtol=0, atol=1e-12)
    # The version's artifacts: MLflow's description, the bundle's text files, no pickle.
    local = Path(
        mlflow.artifacts.download_artifacts(f"models:/{name}/{version}", dst_path=str(tmp_path))
    )
    files = sorted(p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file())
    folder = bundle_folder(local)
    assert (folder / "model.json").exists()
    assert {f"booster_{b}.txt" for b in model.boosters} <= {p.name for p in folder.iterdir()}
    assert not [f for f in files if f.endswith((".pkl", ".pickle", ".cloudpickle", ".joblib"))]
    for path in local.rglob("*"):
        if path.is_file():
            assert not path.read_bytes().startswith(b"\x80"), f"{path} looks pickled"
