"""Starting the API (serving/bootstrap.py): what stops it on an empty workspace, API key files
created owner-only and reused, the service's settings file and process environment."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from features.catalog import Workspace
from features.config import FeastParams
from features.model_spec import MODEL_SPECS
from serving import bootstrap
from serving.auth import ApiKeys
from serving.bootstrap import ServeError, ensure_keys, prepare, serving_problems
from serving.config import (
    SETTINGS_VAR,
    ServiceSettings,
    ServingParams,
    load_service_settings,
    settings_file,
)


def _settings(root: Path) -> ServiceSettings:
    return ServiceSettings(
        workspace=root,
        tracking_uri=f"sqlite:///{Workspace(root).mlflow_db}",
        feast=FeastParams(
            project="bootstrap_test",
            redis_url="redis://:secret@host:6379",
            registry_url="postgresql://feast:secret@pg:5432/feast",
        ),
        serving=ServingParams(port=3123, max_page=7),
    )


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_an_empty_workspace_says_everything_that_is_missing(tmp_path: Path) -> None:
    settings = _settings(tmp_path / "ws")
    settings.paths.mlflow_dir.mkdir(parents=True)
    problems = serving_problems(settings, {})
    assert any("crmscore features apply" in p for p in problems)
    for spec in MODEL_SPECS.values():  # every required kind, named by its registered model
        named = any(spec.registry_name in p and "crmscore train" in p for p in problems)
        # The offer model is optional (data without products has none).
        assert named == (spec.kind not in bootstrap.OPTIONAL_KINDS), spec.kind
    bad_keys = tmp_path / "keys.sha256"
    bad_keys.write_text("not a hash\n")
    problems = serving_problems(settings, {"CRMSCORE_API_KEYS_FILE": str(bad_keys)})
    assert any(p.startswith("API keys:") and "keys.sha256, line 1" in p for p in problems)
    with pytest.raises(ServeError) as caught:
        prepare(settings, {})
    assert str(caught.value).startswith("cannot serve:")
    assert caught.value.problems == serving_problems(settings, {})
    # Nothing was written for a service that cannot start.
    assert not settings.paths.service_settings.exists()
    assert not any(p.exists() for p in settings.paths.key_files().values())


def test_key_files_are_created_owner_only_and_reused(tmp_path: Path) -> None:
    paths = Workspace(tmp_path / "ws")
    added, created = ensure_keys(paths, {})
    assert created is not None
    user, admin = created
    files = paths.key_files()
    assert added == {var: str(path) for var, path in files.items()}
    for path in files.values():
        assert _mode(path) == 0o600
        assert user not in path.read_text() and admin not in path.read_text()
    keys = ApiKeys.from_env(added)
    assert keys.role(user) == "user" and keys.role(admin) == "admin"

    before = {var: path.read_text() for var, path in files.items()}
    again, created_again = ensure_keys(paths, {})
    assert created_again is None and again == added  # reused, not replaced
    assert {var: path.read_text() for var, path in files.items()} == before

    _, fresh = ensure_keys(paths, {}, new=True)
    assert fresh is not None and fresh != created
    assert ApiKeys.from_env(added).role(user) is None  # the old key no longer works

    # Keys configured in the environment: nothing created, nothing added.
    assert ensure_keys(Workspace(tmp_path / "other"), {"CRMSCORE_API_KEYS": "k"}) == ({}, None)
    assert not (tmp_path / "other").exists()


def test_prepare_writes_the_settings_and_builds_the_service_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _settings(tmp_path / "ws")
    monkeypatch.setattr(bootstrap, "serving_problems", lambda settings, env: [])
    env = {
        "PATH": "/usr/bin",
        "CRMSCORE_REDIS_URL": "redis://:secret@host:6379",
        "CRMSCORE_FEAST_REGISTRY_URL": "postgresql://feast:secret@pg:5432/feast",
    }
    launch = prepare(settings, env, id_salt="pepper", port=4000, new_keys=True)

    assert launch.url == "http://127.0.0.1:4000" and launch.new_keys is not None
    assert launch.command[1:5] == ["-m", "bentoml", "serve", bootstrap.SERVICE]
    assert launch.command[-4:] == ["--port", "4000", "--working-dir", str(bootstrap.PROJECT_ROOT)]
    assert launch.env["PATH"] == "/usr/bin" and launch.env.keys() >= env.keys()
    assert launch.env["CRMSCORE_ID_SALT"] == "pepper"  # the salt goes by the environment ...
    assert launch.env[SETTINGS_VAR] == str(settings.paths.service_settings)
    assert launch.env["BENTOML_CONFIG_OVERRIDES"] == bootstrap.bentoml_overrides(
        settings.serving.request_timeout_seconds
    )
    for var, path in settings.paths.key_files().items():
        assert launch.env[var] == str(path)

    written = launch.settings_file.read_text()
    assert _mode(launch.settings_file) == 0o600
    assert "pepper" not in written and "secret" not in written  # ... never by the file
    assert json.loads(written)["serving"]["max_page"] == 7

    # The service reads the file back, with the Redis and registry URLs from its environment.
    assert settings_file(launch.env) == launch.settings_file
    assert load_service_settings(launch.env) == settings
    without_redis = load_service_settings({SETTINGS_VAR: str(launch.settings_file)})
    assert without_redis.feast.redis_url is None and without_redis.feast.registry_url is None
    assert without_redis.serving == settings.serving


def test_the_service_settings_file_is_found_through_the_workspace_or_refused(
    tmp_path: Path,
) -> None:
    root = tmp_path / "ws"
    assert settings_file({"CRMSCORE_HOME": str(root)}) == Workspace(root).service_settings
    with pytest.raises(FileNotFoundError, match="crmscore serve"):
        load_service_settings({"CRMSCORE_HOME": str(root)})
    broken = Workspace(root).service_settings
    broken.parent.mkdir(parents=True)
    broken.write_text('{"workspace": 3}')
    with pytest.raises(ValueError, match=r"service\.json: not valid service settings"):
        load_service_settings({"CRMSCORE_HOME": str(root)})


def test_bentoml_times_out_after_the_api_from_the_one_setting(tmp_path: Path) -> None:
    """The service process's environment sets BentoML's own traffic time-out from
    `serving.request_timeout_seconds`, as the installed BentoML reads it."""
    overrides = bootstrap.bentoml_overrides(3.5)
    script = (
        "from serving.service import CrmscoreService\n"
        "from bentoml._internal.configuration.containers import BentoMLContainer\n"
        "CrmscoreService.inject_config()\n"
        "print(BentoMLContainer.config.services['crmscore'].traffic.timeout.get())\n"
        "print(BentoMLContainer.api_server_config.traffic.timeout.get())\n"
    )
    env = {**os.environ, "BENTOML_CONFIG_OVERRIDES": overrides, "BENTOML_HOME": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=bootstrap.PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    expected = 3.5 + bootstrap.BENTOML_TIMEOUT_GRACE_SECONDS
    assert [float(v) for v in result.stdout.split()[-2:]] == [expected, expected]
