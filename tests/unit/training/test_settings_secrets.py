"""The settings logged to every MLflow run (`settings.json`) carry no secret."""

from __future__ import annotations

import json
from pathlib import Path

from crmscore.settings import load_settings
from training.tracking import MASK, mask_secrets, settings_json


def test_the_logged_settings_mask_passwords_tokens_and_keys(tmp_path: Path) -> None:
    env = {
        "MLFLOW_TRACKING_URI": "https://ml:tr4ck-pw@mlflow.example.com/?token=t0k3n&x=1",
        "CRMSCORE_REDIS_URL": "redis://default:r3dis-pw@redis.example.com:6379/0",
        "CRMSCORE_ID_SALT": "s4lt-value",
    }
    settings = load_settings(tmp_path / "ws", env=env)
    logged = settings_json(settings)
    for secret in ("tr4ck-pw", "t0k3n", "r3dis-pw"):
        assert secret in settings.model_dump_json()  # the settings in use keep them ...
        assert secret not in logged  # ... the run's copy does not
    assert "s4lt-value" not in logged
    data = json.loads(logged)
    assert data["mlflow_tracking_uri"] == f"https://ml:{MASK}@mlflow.example.com/?token={MASK}&x=1"
    assert data["feast"]["redis_url"] == f"redis://default:{MASK}@redis.example.com:6379/0"
    assert data["feast"]["project"] == settings.feast.project  # the rest is unchanged


def test_masking_leaves_plain_values_alone() -> None:
    plain = {"tracking": "sqlite:///ws/mlflow/mlflow.db", "n": 3, "keys": ["a", "b"]}
    assert mask_secrets(plain) == plain
    assert mask_secrets({"api_key": "k", "empty_token": ""}) == {"api_key": MASK, "empty_token": ""}
