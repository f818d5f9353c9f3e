"""A history too short for the asked CLV horizon (issue 15, item 7: any horizon).

18 months of one-row-per-customer-day data and a 273-day CLV: training, validation and test
windows of 273 days do not fit one after the other, so the CLV is trained and tested at the
longest horizon that fits and served at 273 days by each customer's BG/NBD ratio of expected
purchases; the report says what was extrapolated."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from crmscore import steps
from crmscore.settings import load_settings
from features.labels import trainable_horizon
from features.names import BTYD_HORIZON_RATIO
from features.snapshots import snapshots_meta
from features.synthetic import write_export
from serving.models import at_trained_horizon
from serving.registry import load_registered
from tests.integration.test_products_free import customer_day_export, dataset_yaml

pytestmark = pytest.mark.slow

ASKED = 273


def test_a_short_history_trains_at_the_longest_horizon_and_serves_the_asked_one(
    tmp_path: Path,
) -> None:
    csv = write_export(customer_day_export(400, seed=5, days=548), tmp_path / "daily.csv")
    dataset = tmp_path / "daily_totals.yaml"
    dataset.write_text(dataset_yaml(csv) + f"  labels:\n    clv_horizon_days: {ASKED}\n")
    settings = load_settings(tmp_path / "ws", dataset=str(dataset))
    answers = {name: step(settings) for name, step in steps.PIPELINE}

    meta = snapshots_meta(settings.paths)
    trained = meta["trained_horizons"]["clv_horizon_days"]
    cutoffs = [pd.Timestamp(c) for c in meta["cutoffs"]]
    until = pd.Timestamp(meta["observed_until"])
    assert trained == trainable_horizon(ASKED, cutoffs, until) and 30 < trained < ASKED
    labels = pd.read_parquet(settings.paths.snapshot("labels_clv"))
    stamps = pd.to_datetime(labels["event_timestamp"], utc=True)
    # Every labelled cutoff has its whole (trained) horizon inside the data, the last one
    # could not have had the asked one.
    assert (stamps + pd.Timedelta(days=trained) <= until).all()
    assert stamps.max() + pd.Timedelta(days=ASKED) > until

    trained_models = {m["model"]: m for m in answers["train"]["models"]}
    assert trained_models["clv"]["version"] == "1"
    clv = load_registered("clv", steps.mlflow_client(settings))
    assert clv.meta["trained_horizon_days"] == trained and clv.meta["horizon_days"] == ASKED
    snapshot = pd.read_parquet(settings.paths.snapshot("customer_features")).merge(
        pd.read_parquet(settings.paths.snapshot("customer_btyd")),
        on=["customer_id", "event_timestamp"],
    )
    rows = snapshot[snapshot["event_timestamp"] == snapshot["event_timestamp"].max()].head(50)
    served, at_trained = clv.predict(rows), at_trained_horizon(clv).predict(rows)
    ratio = rows[BTYD_HORIZON_RATIO].fillna(clv.meta["horizon_ratio_fill"]).to_numpy(float)
    np.testing.assert_allclose(served, at_trained * ratio, rtol=1e-9)
    assert (ratio[at_trained > 0] > 1).all()  # a longer horizon: more expected purchases
    report = Path(trained_models["clv"]["report"]).read_text()
    assert f"served at the asked {ASKED} days by extrapolation" in report
