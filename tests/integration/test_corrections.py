"""Corrections reach serving: after re-ingesting corrected data and rebuilding the features,
`features materialize` reloads the views whose snapshots changed, so the online store (real
Feast, real SQLite) holds what training and batch scoring read."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from crmscore import steps
from crmscore.settings import load_settings
from features.feast_repo import CUSTOMER_VIEW
from features.online import OnlineFeatures
from features.store import open_store
from features.synthetic import dataset_yaml, synthetic_export, write_export

FEATURE = "monetary_lifetime"


def _latest(paths_snapshot: Path) -> pd.DataFrame:
    snapshot = pd.read_parquet(paths_snapshot)
    latest = snapshot["event_timestamp"].max()
    return snapshot[snapshot["event_timestamp"] == latest].set_index("customer_id")


def test_materialize_reloads_a_snapshot_rebuilt_from_corrected_data(tmp_path: Path) -> None:
    export = synthetic_export(lines=8000, customers=120, seed=3, days=500)
    csv = write_export(export, tmp_path / "export.csv")
    config = tmp_path / "synthetic.yaml"
    config.write_text(dataset_yaml(csv))
    settings = load_settings(tmp_path / "ws", dataset=str(config), env={})
    paths = settings.paths
    for step in (steps.ingest, steps.build_features, steps.apply, steps.materialize):
        step(settings)
    old = _latest(paths.snapshot(CUSTOMER_VIEW))
    counts = export["Customer ID"].value_counts()
    corrected_id, removed_id = (str(c) for c in counts.index[:2])
    assert {corrected_id, removed_id} <= set(old.index)

    # The corrected export: one customer's prices were wrong, another must not be there.
    fixed = export[export["Customer ID"].astype(str) != removed_id].copy()
    fixed.loc[fixed["Customer ID"].astype(str) == corrected_id, "Price"] *= 10
    write_export(fixed, csv)
    steps.ingest(settings)
    steps.build_features(settings)
    result = steps.materialize(settings)

    new = _latest(paths.snapshot(CUSTOMER_VIEW))
    assert new.loc[corrected_id, FEATURE] != old.loc[corrected_id, FEATURE]
    assert result["entities"][CUSTOMER_VIEW] == len(new)
    assert CUSTOMER_VIEW in result["reloaded"]
    reader = OnlineFeatures(open_store(settings.feast, paths))
    corrected, removed, other = reader.read(
        CUSTOMER_VIEW, [(corrected_id,), (removed_id,), (new.index[5],)], [FEATURE]
    )
    assert corrected is not None and corrected.values[FEATURE] == new.loc[corrected_id, FEATURE]
    assert removed is None  # gone from the data: gone from the online store
    assert other is not None and other.values[FEATURE] == new.loc[new.index[5], FEATURE]

    # Nothing changed since: the next run is incremental again and reloads nothing.
    again = steps.materialize(settings)
    assert again["reloaded"] == [] and sum(again["entities"].values()) == 0
