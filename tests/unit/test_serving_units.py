"""Serving parts on generated data: the model bundle reproduces the training objects, API keys,
the prediction log, and hashed ids."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.privacy import hash_id
from serving.auth import ApiKeys, create_key_files, key_hash
from serving.models import BundleModel, churn_probability, clv_percentile, clv_value
from serving.predlog import PredictionLog, log_rows
from tests.unit.test_training import FEATURES, _customers
from training.churn import train_churn
from training.clv import fit_formulation
from training.config import ChurnParams, ClvParams, TrainingParams
from training.export import write_bundle
from training.frames import FeatureSpec


def _rows(frame: pd.DataFrame) -> list[dict]:
    return [
        {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()}
        for r in frame.to_dict("records")
    ]


@pytest.mark.parametrize("method", ["isotonic", "platt"])
def test_churn_bundle_predicts_what_the_training_model_predicts(
    method: str, tmp_path: Path
) -> None:
    train, y_train, _ = _customers(2000, 1)
    valid, y_valid, _ = _customers(800, 2)
    model, _ = train_churn(
        train, y_train, valid, y_valid, FEATURES, ChurnParams(calibration=[method]), 3
    )
    test, _, _ = _customers(300, 4)
    test.loc[::7, "recency_days"] = np.nan  # missing values
    test.loc[::5, "rfm_segment"] = "never-seen"  # unknown category
    expected = model.predict(test)
    folder = write_bundle("churn", model, expected, TrainingParams(), tmp_path / "b")
    bundle = BundleModel.from_folder(folder)
    served = churn_probability(bundle, bundle.matrix(_rows(test)))
    np.testing.assert_allclose(served, expected, rtol=0, atol=1e-12)
    assert bundle.meta["prior"] == pytest.approx(expected.mean())


@pytest.mark.parametrize("formulation", ["two_part", "tweedie"])
def test_clv_bundle_predicts_what_the_training_model_predicts(
    formulation: str, tmp_path: Path
) -> None:
    train, _, y_train = _customers(2000, 1)
    valid, _, y_valid = _customers(800, 2)
    spec = FeatureSpec.fit(train, FEATURES)
    model = fit_formulation(formulation, spec, train, y_train, valid, y_valid, ClvParams(), 5)
    test, _, _ = _customers(300, 4)
    expected = model.predict(test)
    bundle = BundleModel.from_folder(
        write_bundle("clv", model, expected, TrainingParams(), tmp_path / "b")
    )
    np.testing.assert_allclose(clv_value(bundle, bundle.matrix(_rows(test))), expected, atol=1e-9)
    # Percentiles place values among the test predictions: the median is near 50.
    assert clv_percentile(bundle, float(np.median(expected))) == pytest.approx(50, abs=2)
    assert clv_percentile(bundle, float(expected.max()) + 1) == 100
    assert clv_percentile(bundle, -1.0) == 0


def test_api_keys_from_environment_and_hash_files(tmp_path: Path) -> None:
    user, admin = create_key_files(tmp_path)
    keys = ApiKeys.from_env(
        {
            "CRMSCORE_API_KEYS": "plain-1, plain-2",
            "CRMSCORE_API_KEYS_FILE": str(tmp_path / "api_keys.sha256"),
            "CRMSCORE_ADMIN_KEYS_FILE": str(tmp_path / "admin_keys.sha256"),
        }
    )
    assert keys.role("plain-2") == "user" and keys.role(user) == "user"
    assert keys.role(admin) == "admin"
    assert keys.role("plain-3") is None and keys.role(None) is None and keys.role("") is None
    assert user not in (tmp_path / "api_keys.sha256").read_text()
    assert key_hash(user) in (tmp_path / "api_keys.sha256").read_text()
    assert not ApiKeys.from_env({}).configured

    bad = tmp_path / "bad.sha256"
    bad.write_text(f"{key_hash('x')}\nnot-a-hash\n")
    with pytest.raises(ValueError, match=r"bad.sha256, line 2: expected a SHA-256"):
        ApiKeys.from_env({"CRMSCORE_API_KEYS_FILE": str(bad)})


def _answer(customer: str, p: float) -> dict:
    return {
        "customer_id": customer,
        "as_of": "2024-01-01T00:00:00+00:00",
        "cold_start": False,
        "_features": {"recency_days": 3.0, "rfm_segment": "Loyal"},
        "churn": {"probability": p},
        "clv": {"value": 10.0},
        "offers": [{"offer_id": "o1"}],
        "model_versions": {"churn": "1@champion", "clv": "2@champion", "nbo": "1@challenger"},
    }


def test_prediction_log_writes_hashed_rows_off_the_request_path(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path, max_rows=3, max_seconds=60)
    now = datetime(2024, 1, 2, tzinfo=UTC)
    for i in range(5):
        log.put(log_rows([_answer(f"cust-{i}", i / 10)], f"r{i}", "salt", now))
    deadline = time.monotonic() + 10
    while not list(tmp_path.glob("date=*/part-*.parquet")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list(tmp_path.glob("date=*/part-*.parquet")), "3 rows reached max_rows: one file"
    log.close()  # the last 2 rows are flushed on close
    frame = pd.concat(pd.read_parquet(f) for f in tmp_path.glob("date=*/part-*.parquet"))
    assert sorted(frame["customer_hash"]) == sorted(hash_id(f"cust-{i}", "salt") for i in range(5))
    assert hash_id("cust-1", "salt") != hash_id("cust-1")  # the salt matters
    assert not frame.astype(str).apply(lambda c: c.str.contains("cust-")).any().any()
    assert set(frame["nbo_model_version"]) == {"1@challenger"}
    assert frame["churn_probability"].sort_values().tolist() == [0.0, 0.1, 0.2, 0.3, 0.4]
