"""Configuration profiles: configs/settings.yaml is the base, configs/<profile>/settings.yaml
an overlay chosen by CRMSCORE_PROFILE; hosts and secrets come from the environment only."""

from __future__ import annotations

from pathlib import Path

import pytest

from crmscore.settings import PROFILE_VAR, SettingsError, load_settings

PRODUCTION = {
    PROFILE_VAR: "production",
    "MLFLOW_TRACKING_URI": "http://mlflow.internal:5000",
    "CRMSCORE_REDIS_URL": "redis.internal:6379,password=s3cret",
    "CRMSCORE_FEAST_REGISTRY_URL": "postgresql://feast:s3cret@pg.internal:5432/feast",
}


def test_the_embedded_default_is_unchanged(tmp_path: Path) -> None:
    settings = load_settings(tmp_path, env={})
    assert settings.profile is None
    assert settings.feast.online_store == "sqlite" and settings.feast.redis_url is None
    assert settings.feast.registry == "file" and settings.feast.registry_url is None
    assert settings.mlflow_tracking == "embedded" and settings.mlflow_tracking_uri is None
    assert settings.serving.host == "127.0.0.1"


def test_the_production_profile_selects_redis_and_the_tracking_server(tmp_path: Path) -> None:
    settings = load_settings(tmp_path, env=PRODUCTION)
    assert settings.profile == "production"
    assert settings.feast.online_store == "redis"
    assert settings.feast.redis_url == PRODUCTION["CRMSCORE_REDIS_URL"]
    assert settings.feast.registry == "sql"
    assert settings.feast.registry_url == PRODUCTION["CRMSCORE_FEAST_REGISTRY_URL"]
    assert settings.mlflow_tracking_uri == PRODUCTION["MLFLOW_TRACKING_URI"]
    assert settings.serving.host == "0.0.0.0"
    # Everything the overlay does not set comes from the base.
    assert settings.training.seed == load_settings(tmp_path, env={}).training.seed


@pytest.mark.parametrize(
    "unset", ["MLFLOW_TRACKING_URI", "CRMSCORE_REDIS_URL", "CRMSCORE_FEAST_REGISTRY_URL"]
)
def test_production_without_a_host_says_which_variable(tmp_path: Path, unset: str) -> None:
    env = {k: v for k, v in PRODUCTION.items() if k != unset}
    with pytest.raises(SettingsError, match=unset):
        load_settings(tmp_path, env=env)


def test_a_local_tracking_store_is_not_a_server(tmp_path: Path) -> None:
    env = {**PRODUCTION, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db"}
    with pytest.raises(SettingsError, match="tracking server"):
        load_settings(tmp_path, env=env)


def test_an_unknown_profile_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="no such profile"):
        load_settings(tmp_path, env={PROFILE_VAR: "staging"})
