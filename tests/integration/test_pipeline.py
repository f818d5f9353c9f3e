"""ingest -> features -> Feast apply -> materialize in a temp workspace, through the real CLI
and a real Feast repo, on a generated export."""

from __future__ import annotations

import ast
import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from crmscore.cli import app
from crmscore.settings import load_settings
from features.catalog import Workspace
from features.feast_repo import (
    AFFINITY_VIEW,
    BTYD_VIEW,
    CUSTOMER_VIEW,
    SERVICE_FEATURES,
    VIEWS,
)
from features.model_spec import CHALLENGER, CHAMPION, REFERENCE_ARTIFACT, model_spec
from features.names import CUSTOMER_ID, EVENT_TIMESTAMP, OFFER_ID
from features.partitions import part_name, partition_of
from features.retrieval import (
    features_as_of,
    historical_features,
    split_by_partition,
    ttl_start,
)
from features.store import STATE_TABLE, materialize, open_store
from features.synthetic import dataset_yaml, synthetic_export, write_export
from serving.batch import SPLIT_VIEWS
from serving.registry import configure, load_registered

runner = CliRunner()


def _cli(*args: str) -> dict:
    result = runner.invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("pipeline")
    csv = write_export(
        synthetic_export(lines=60_000, customers=400, seed=7, days=730), root / "export.csv"
    )
    config = root / "synthetic.yaml"
    config.write_text(dataset_yaml(csv))
    ws = root / "ws"
    base = ["--workspace", str(ws), "--dataset", str(config)]
    _cli(*base, "ingest")
    _cli(*base, "features", "build")
    _cli(*base, "features", "apply")
    return ws, config


def _online_rows(db: Path) -> list[tuple]:
    conn = sqlite3.connect(db)
    try:
        tables = [
            r[0]
            for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")
        ]
        rows = []
        for table in (t for t in tables if t != STATE_TABLE):  # Feast's tables
            rows += [
                (table, *r)
                for r in conn.execute(
                    f"SELECT entity_key, feature_name, value, value_text, event_ts, created_ts "
                    f'FROM "{table}" ORDER BY entity_key, feature_name'
                )
            ]
        return rows
    finally:
        conn.close()


def test_fast_materialize_writes_what_stock_feast_writes(
    workspace: tuple[Path, Path], tmp_path: Path
) -> None:
    ws, config = workspace
    copies = {}
    for path in ("fast", "stock"):
        copy = tmp_path / path
        shutil.copytree(ws, copy)
        args = ["--workspace", str(copy), "--dataset", str(config), "features", "materialize"]
        result = _cli(*args, *(["--stock"] if path == "stock" else []))
        assert result["path"] == path
        copies[path] = _online_rows(copy / "feast" / "online_store.db")
    assert len(copies["fast"]) > 10_000
    assert copies["fast"] == copies["stock"]
    # Read in many small batches and written in small chunks: the same rows.
    copy = tmp_path / "small_batches"
    shutil.copytree(ws, copy)
    settings = load_settings(workspace=copy, dataset=str(config))
    answer = materialize(settings.feast, settings.paths, batch_rows=300, chunk_rows=7)
    assert answer["path"] == "fast"
    assert _online_rows(copy / "feast" / "online_store.db") == copies["stock"]


def test_materialize_is_idempotent_and_incremental(
    workspace: tuple[Path, Path], tmp_path: Path
) -> None:
    ws, config = workspace
    copy = tmp_path / "ws"
    shutil.copytree(ws, copy)
    args = ["--workspace", str(copy), "--dataset", str(config), "features", "materialize"]
    first = _cli(*args)
    rows = _online_rows(copy / "feast" / "online_store.db")
    again = _cli(*args)
    assert _online_rows(copy / "feast" / "online_store.db") == rows
    assert sum(first["entities"].values()) > 0
    # Nothing new since the last end: the second run reads an empty window.
    assert sum(again["entities"].values()) == 0


def test_online_values_equal_offline_values(workspace: tuple[Path, Path], tmp_path: Path) -> None:
    ws, config = workspace
    copy = tmp_path / "ws"
    shutil.copytree(ws, copy)
    _cli("--workspace", str(copy), "--dataset", str(config), "features", "materialize")
    settings = load_settings(workspace=copy, dataset=str(config))
    store = open_store(settings.feast, settings.paths)
    snapshot = pd.read_parquet(settings.paths.snapshot("customer_features"))
    latest = snapshot["event_timestamp"].max()
    ids = sorted(snapshot.loc[snapshot["event_timestamp"] == latest, "customer_id"])[:50]
    service = store.get_feature_service("churn_v1")
    online = pd.DataFrame(
        store.get_online_features(
            features=service, entity_rows=[{"customer_id": i} for i in ids]
        ).to_dict()
    )
    offline = store.get_historical_features(
        entity_df=pd.DataFrame({"customer_id": ids, "event_timestamp": latest}), features=service
    ).to_df()
    offline = offline.set_index("customer_id").loc[ids].reset_index()
    names = SERVICE_FEATURES["churn_v1"]["customer_features"]
    assert len(names) > 40
    for name in names:
        a, b = online[name], offline[name]
        if a.dtype == object or b.dtype == object:
            assert (
                a.astype("string").fillna("<NA>").tolist()
                == b.astype("string").fillna("<NA>").tolist()
            ), name
        else:
            np.testing.assert_allclose(a.astype(float), b.astype(float), err_msg=name)


def _values(frame: pd.DataFrame) -> list[list[object]]:
    """Rows as Python values, every kind of null as None (Feast's dtypes differ)."""
    return frame.astype(object).where(frame.notna(), None).to_numpy().tolist()


def test_partition_reads_give_the_features_feast_gives(
    workspace: tuple[Path, Path], tmp_path: Path
) -> None:
    """Batch scoring's read (the snapshots split by customer partition, then the latest row
    per entity within the ttl) gives, partition by partition, what Feast's point-in-time
    join gives, including offer pairs with no row at the date (an older row is used)."""
    ws, config = workspace
    settings = load_settings(workspace=ws, dataset=str(config))
    paths = settings.paths
    store = open_store(settings.feast, paths)
    affinity = pd.read_parquet(
        paths.snapshot(AFFINITY_VIEW), columns=[CUSTOMER_ID, OFFER_ID, EVENT_TIMESTAMP]
    )
    stamps = sorted(affinity[EVENT_TIMESTAMP].unique())
    as_of = pd.Timestamp(stamps[-1]).tz_convert("UTC")
    recent = affinity[affinity[EVENT_TIMESTAMP].isin(stamps[-3:])]
    pairs = recent[[CUSTOMER_ID, OFFER_ID]].drop_duplicates().assign(**{EVENT_TIMESTAMP: as_of})
    at_date = affinity[affinity[EVENT_TIMESTAMP] == stamps[-1]]
    older = pairs.merge(at_date, on=[CUSTOMER_ID, OFFER_ID], how="left", indicator=True)
    assert (older["_merge"] == "left_only").sum() > 50
    customers = pairs[[CUSTOMER_ID, EVENT_TIMESTAMP]].drop_duplicates()
    partitions = 3
    for name in SPLIT_VIEWS:
        view = store.get_feature_view(name)
        split_by_partition(
            paths.snapshot(name),
            EVENT_TIMESTAMP,
            ttl_start(view, as_of),
            as_of,
            partitions,
            tmp_path / name,
        )
    for index in range(partitions):
        files = {view: paths.snapshot(view) for view in VIEWS}
        files.update(
            {v: tmp_path / v / part_name(index) for v in (CUSTOMER_VIEW, BTYD_VIEW, AFFINITY_VIEW)}
        )
        for service, rows in (("churn_v1", customers), ("clv_v1", customers), ("nbo_v1", pairs)):
            mine = rows[partition_of(rows[CUSTOMER_ID], partitions) == index].reset_index(drop=True)
            got = features_as_of(store, service, mine, as_of, files)
            want = historical_features(store, service, mine)
            assert len(got) == len(mine) > 10
            assert list(got.columns) == list(want.columns)
            assert _values(got) == _values(want), (service, index)


def test_ingest_report_and_feature_metadata(workspace: tuple[Path, Path]) -> None:
    ws, _ = workspace
    report = json.loads(Workspace(ws).ingest_report.read_text())
    assert report["input_rows"] == (
        report["accepted_rows"] + report["rejected_rows"] + report["duplicate_rows"]
    )
    meta = json.loads(Workspace(ws).snapshots_meta.read_text())
    assert meta["offer_catalog"] == "category"
    assert len(meta["cutoffs"]) >= 8


def test_cli_reports_bad_dataset_config_without_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ntables: {}\n")
    result = runner.invoke(app, ["--workspace", str(tmp_path), "--dataset", str(bad), "ingest"])
    assert result.exit_code == 2
    assert "bad.yaml" in result.output and "transactions" in result.output
    assert "Traceback" not in result.output


def test_training_sets_see_only_the_snapshot_at_their_cutoff(workspace: tuple[Path, Path]) -> None:
    ws, config = workspace
    settings = load_settings(workspace=ws, dataset=str(config))
    store = open_store(settings.feast, settings.paths)
    labels = pd.read_parquet(settings.paths.snapshot("labels_churn"))
    rows = labels.groupby("event_timestamp").head(30)
    fetched = historical_features(store, "churn_v1", rows)
    snapshot = pd.read_parquet(settings.paths.snapshot("customer_features"))
    expected = rows.merge(snapshot, on=["customer_id", "event_timestamp"], how="left")
    for name in ("recency_days", "monetary_90d", "frequency_365d"):
        np.testing.assert_allclose(
            fetched[name].to_numpy(float), expected[name].to_numpy(float), err_msg=name
        )


def test_train_registers_challengers_with_reports(
    workspace: tuple[Path, Path], tmp_path: Path
) -> None:
    ws, config = workspace
    copy = tmp_path / "ws"
    shutil.copytree(ws, copy)
    base = ["--workspace", str(copy), "--dataset", str(config)]
    out = _cli(*base, "train")
    kinds = {m["model"]: m for m in out["models"]}
    assert set(kinds) == {"churn", "clv", "nbo"}
    client = configure(f"sqlite:///{copy / 'mlflow' / 'mlflow.db'}")
    for kind, summary in kinds.items():
        card = Path(summary["report"])
        assert card == copy / "reports" / kind / f"{kind}_report.html"
        assert f"the model ({summary['contender']})" in card.read_text()
        # The first version of a model is its champion at once: there is always one.
        champion = client.get_model_version_by_alias(model_spec(kind).registry_name, CHAMPION)
        assert str(champion.version) == summary["version"]
    version = client.get_model_version_by_alias(model_spec("churn").registry_name, CHALLENGER)
    run = client.get_run(version.run_id)
    for tag in ("git_commit", "data_fingerprint", "feature_service", "test_cutoff"):
        assert run.data.tags[tag], tag
    assert "model_roc_auc" in run.data.metrics
    assert any(p.startswith("split_") for p in run.data.params)
    decisions = _cli(*base, "promote")["decisions"]
    assert {d["model"] for d in decisions} == {"churn", "clv", "nbo"}
    for d in decisions:  # the gate either promoted or said why not
        assert d["reason"]

    # Batch scoring of the latest snapshot, twice: deterministic, every customer scored.
    latest = json.loads(Workspace(copy).snapshots_meta.read_text())["cutoffs"][-1][:10]
    first = _cli(*base, "score", "batch", "--as-of", latest)
    scores = pd.read_parquet(first["parquet"])
    snapshot = pd.read_parquet(
        Workspace(copy).snapshot("customer_features"), columns=["customer_id", "event_timestamp"]
    )
    expected = snapshot[snapshot["event_timestamp"] == pd.Timestamp(latest, tz="UTC")]
    assert sorted(scores["customer_id"]) == sorted(expected["customer_id"])
    assert scores["churn_probability"].between(0, 1).all() and (scores["clv"] >= 0).all()
    assert scores["offer_1"].notna().mean() > 0.9
    _cli(*base, "score", "batch", "--as-of", latest)
    pd.testing.assert_frame_equal(scores, pd.read_parquet(first["parquet"]))
    targets = _cli(*base, "target", "--objective", "retention", "--budget", "100", "--seed", "3")
    listed = pd.read_csv(targets["csv"])
    assert len(listed) == 100 and (listed["group"] == "control").sum() == 10


def test_training_above_the_row_limit_uses_a_stated_sample_of_customers(
    workspace: tuple[Path, Path], tmp_path: Path
) -> None:
    ws, config = workspace
    copy = tmp_path / "ws"
    shutil.copytree(ws, copy)
    limited = tmp_path / "limited.yaml"
    limited.write_text(config.read_text() + "settings:\n  training:\n    max_training_rows: 3000\n")
    summary = _cli("--workspace", str(copy), "--dataset", str(limited), "train", "--model", "churn")
    (churn,) = summary["models"]
    client = configure(f"sqlite:///{copy / 'mlflow' / 'mlflow.db'}")
    version = client.get_model_version_by_alias(model_spec("churn").registry_name, CHALLENGER)
    params = client.get_run(version.run_id).data.params
    sample = ast.literal_eval(params["training_sample"])
    # Whole customers, about the asked share of the rows, with the settings' seed.
    assert sample["rows_before"] > 3000 >= sample["rows"] * 0.95
    share = sample["customer_share"]
    assert share == round(3000 / sample["rows_before"], 6)
    assert abs(sample["customers"] - share * sample["customers_before"]) <= 2
    assert sample["seed"] == 42 and sample["stratified_on"] == "churned > 0 at some cutoff"
    card = Path(churn["report"]).read_text()
    assert (
        f"Trained on a sample of customers: {sample['customers']:,} of "
        f"{sample['customers_before']:,} ({sample['rows']:,} of {sample['rows_before']:,} rows), "
        "drawn with seed 42 and stratified on churned &gt; 0 at some cutoff"
    ) in card


def test_nbo_trains_and_promotes_with_another_top_k(
    workspace: tuple[Path, Path], tmp_path: Path
) -> None:
    """`training.nbo.top_k: 3`: graded, logged and gated on hit@3; the registered bundle is
    the model, with its reference sample beside it."""
    from training.tracking import PRIMARY_METRIC_TAG, promote, settings_json
    from training.train import train_models

    ws, config = workspace
    copy = tmp_path / "ws"
    shutil.copytree(ws, copy)
    settings = load_settings(workspace=copy, dataset=str(config))
    nbo = settings.training.nbo.model_copy(update={"top_k": 3})
    params = settings.training.model_copy(update={"nbo": nbo, "bootstrap": 10})
    client = configure(f"sqlite:///{copy / 'mlflow' / 'mlflow.db'}")
    store = open_store(settings.feast, settings.paths)
    (summary,) = train_models(
        ["nbo"], store, settings.paths, settings.labels, params, client, settings_json(settings),
        "test",
    )  # fmt: skip
    assert summary["hit@3"] >= 0 and "champion_hit@3" in summary
    # The first version is the champion at once; the gate reads the run's hit@3.
    decision = promote("nbo", params.gate, client)
    assert not decision.promoted and decision.reason == "the challenger is the champion"
    model = load_registered("nbo", client)
    assert model.meta["top_k"] == 3 and model.version.startswith(summary["version"])
    run = client.get_run(client.get_model_version(model.info["name"], summary["version"]).run_id)
    assert "model_hit_at_3" in run.data.metrics and "model_hit_at_5" not in run.data.metrics
    assert run.data.tags[PRIMARY_METRIC_TAG] == "hit@3"
    # Every test buyer is in one segment, light or heavy, each with its recall ceiling.
    logged = run.data.params
    assert int(logged["light_buyers"]) + int(logged["heavy_buyers"]) == int(logged["test_buyers"])
    for segment in ("light_buyers", "heavy_buyers"):
        assert 0 <= float(logged[f"{segment}_candidate_recall"]) <= 1
        assert 0 <= float(logged[f"{segment}_hit_at_3_lightgbm"]) <= 1
    reference = client.list_artifacts(run.info.run_id, REFERENCE_ARTIFACT.split("/")[0])
    assert [a.path for a in reference] == [REFERENCE_ARTIFACT]
    assert not client.list_artifacts(run.info.run_id, "serving")
