"""A model registry that cannot be read fails closed everywhere a champion is looked up
(serving, batch scoring, monitoring, promotion): only a registry that answers "no champion"
means there is none, and nothing falls back to @challenger. Promotion records the champion it
replaces, so rollback restores it. All against a real MLflow store in a SQLite file."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from mlflow import MlflowClient

from features.model_spec import model_spec
from monitoring.reference import ReferenceError, resolve_version
from serving.batch import load_champions
from serving.registry import (
    NoVersion,
    RegistryError,
    configure,
    load_registered,
    served_version,
)
from tests.integration.test_registry import _log
from training.config import GateParams
from training.tracking import (
    CHALLENGER,
    CHAMPION,
    PREVIOUS_CHAMPION_TAG,
    promote,
    rollback,
)

NAME = model_spec("churn").registry_name
pytestmark = pytest.mark.slow


def _store(root: Path) -> tuple[MlflowClient, Path, Path]:
    database = root / "mlflow.db"
    return configure(f"sqlite:///{database}"), root / "artifacts", database


def _champion(client: MlflowClient) -> str:
    return str(client.get_model_version_by_alias(NAME, CHAMPION).version)


def test_promote_records_the_previous_champion_and_rollback_restores_it(tmp_path: Path) -> None:
    client, root, _ = _store(tmp_path)
    first = _log(client, root, 0.76, 0.75, None)
    assert promote("churn", GateParams(), client).promoted and _champion(client) == first
    second = _log(client, root, 0.80, 0.75, 0.76)
    assert promote("churn", GateParams(churn_auc_margin=0.01), client).promoted
    assert _champion(client) == second
    assert client.get_registered_model(NAME).tags[PREVIOUS_CHAMPION_TAG] == first

    back = rollback("churn", client)
    assert back.promoted and back.version == first and _champion(client) == first
    # The rolled-back champion is now the previous one: a second rollback undoes the first.
    assert rollback("churn", client).version == second and _champion(client) == second


def _lose_champion_version(database: Path) -> None:
    """The registry's @champion names a version it does not have (a lost row, a partial
    restore): the registry answers, but it cannot say which model serves."""
    with sqlite3.connect(database) as db:
        db.execute(
            "UPDATE registered_model_aliases SET version = 999 WHERE name = ? AND alias = ?",
            (NAME, CHAMPION),
        )


def test_a_registry_that_cannot_say_which_version_serves_fails_closed(tmp_path: Path) -> None:
    client, root, database = _store(tmp_path)
    first = _log(client, root, 0.76, 0.75, None)
    assert promote("churn", GateParams(), client).promoted
    challenger = _log(client, root, 0.90, 0.75, 0.76)
    _lose_champion_version(database)

    with pytest.raises(RegistryError, match="999"):
        served_version("churn", client)
    with pytest.raises(RegistryError):
        load_registered("churn", client)
    with pytest.raises(RegistryError):
        load_champions(client)
    # Monitoring does not take the challenger's reference instead of the champion's.
    with pytest.raises(RegistryError):
        resolve_version(client, "churn")
    # Promotion does not read the error as "no champion" and let the challenger in ungated.
    with pytest.raises(RegistryError):
        promote("churn", GateParams(), client)
    aliases = client.get_registered_model(NAME).aliases
    assert str(aliases[CHAMPION]) == "999" and str(aliases[CHALLENGER]) == challenger
    assert first != challenger


def test_an_unreachable_registry_is_an_error_not_no_champion(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    client = MlflowClient(tracking_uri="http://127.0.0.1:9", registry_uri="http://127.0.0.1:9")
    with pytest.raises(RegistryError, match="could not be read"):
        served_version("churn", client)


def test_only_a_registry_without_champion_is_no_champion(tmp_path: Path) -> None:
    client, root, _ = _store(tmp_path)
    with pytest.raises(NoVersion, match="crmscore train"):
        served_version("churn", client)  # no registered model at all
    _log(client, root, 0.76, 0.75, None)  # a challenger, never promoted
    with pytest.raises(NoVersion, match="crmscore train"):
        served_version("churn", client)
    with pytest.raises(ValueError, match="no @champion"):
        load_champions(client)
    # Monitoring compares with the champion's reference, never the challenger's.
    with pytest.raises(ReferenceError, match="no @champion"):
        resolve_version(client, "churn")
