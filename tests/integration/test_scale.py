"""Scale-out (#11): results do not depend on the number of customer partitions, on reading
the exports in pieces, or on the engine (in-process, a local Ray, a two-node Ray cluster);
de-duplication across overlapping exports keeps its exact multiset semantics."""

from __future__ import annotations

import json
import multiprocessing
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from crmscore import steps
from crmscore.cli import app
from crmscore.settings import Settings, load_settings
from features.catalog import Workspace
from features.config import EngineParams
from features.feast_repo import CUSTOMER_VIEW
from features.ingest import ingest
from features.names import CUSTOMER_ID, EVENT_TIMESTAMP
from features.snapshots import (
    OUTPUTS,
    build_snapshots,
    offers_skipped,
    partitioned_tables,
    read_tables,
)
from features.synthetic import dataset_yaml, synthetic_export, write_export
from serving.batch import (
    SEGMENT_COLUMNS,
    ScoreJob,
    load_champions,
    score_partition,
    split_snapshots,
)
from serving.contract import rounded
from tests.integration.conftest import Trained
from tests.servers import ray_cluster

# Small pieces: a 2 MB export is read in dozens of blocks, records cut nowhere.
PIECE = 64 * 1024


def _export(lines: int = 30_000, customers: int = 300) -> pd.DataFrame:
    """A generated export with a few bad rows (a price, a customer, a date)."""
    frame = synthetic_export(lines, customers, seed=3, days=730)
    n = len(frame)
    frame["Price"] = frame["Price"].astype(str)
    frame.loc[[10, n // 3, n - 10], "Price"] = "n/a"
    frame.loc[[11, n // 2], "Customer ID"] = ""
    frame.loc[[13, n - 20], "InvoiceDate"] = "2023-02-30 10:00:00"
    return frame


def _settings(folder: Path, sources: list[Path], name: str) -> Settings:
    """Settings of a workspace `name` over these export files (one transactions table)."""
    text = dataset_yaml(sources[0])
    if len(sources) > 1:
        source = text[text.index("      - path:") : text.index("    timestamp_format")]
        extra = "".join(source.replace(str(sources[0]), str(p)) for p in sources[1:])
        text = text.replace("    timestamp_format", extra + "    timestamp_format")
        text += "    dedupe_across_sources: true\n"
    config = folder / f"{name}.yaml"
    config.write_text(text)
    return load_settings(folder / name, dataset=str(config))


def _sorted(frame: pd.DataFrame, keys: list[str] | None = None) -> pd.DataFrame:
    frame = frame.drop(columns=["created_timestamp"], errors="ignore")
    keys = keys or [c for c in ("event_timestamp", "customer_id", "offer_id") if c in frame]
    return frame.sort_values(keys, kind="stable").reset_index(drop=True)


def _outputs(paths: Workspace) -> dict[str, pd.DataFrame]:
    """Every snapshot output by its keys (one row per key)."""
    return {name: _sorted(pd.read_parquet(paths.snapshot(name))) for name in OUTPUTS}


def _tables(paths: Workspace) -> dict[str, pd.DataFrame]:
    """Every canonical table, sorted by all its columns (a multiset of rows)."""
    return {name: _sorted(f, list(f.columns)) for name, f in read_tables(paths).items()}


def _report(paths: Workspace) -> dict[str, object]:
    report = dict(json.loads(paths.ingest_report.read_text()))
    report.pop("rejects_file")
    return report


def _build(settings: Settings, engine: EngineParams | None = None) -> Workspace:
    build_snapshots(
        partitioned_tables(settings.paths),
        settings.features,
        settings.labels,
        settings.segments,
        settings.paths,
        engine=engine,
    )
    return settings.paths


def test_tables_features_and_labels_do_not_depend_on_partitions(tmp_path: Path) -> None:
    csv = write_export(_export(), tmp_path / "export.csv")
    results = {}
    for partitions, piece in ((1, 1 << 30), (2, PIECE), (4, PIECE)):
        settings = _settings(tmp_path, [csv], f"p{partitions}")
        ingest(settings.dataset, settings.data_root, settings.paths, partitions, piece)
        assert len(list(settings.paths.table("transactions").glob("*.parquet"))) == partitions
        results[partitions] = _build(settings)
    one = results[1]
    assert _report(one)["rejected_rows"] == 7
    for partitions in (2, 4):
        many = results[partitions]
        assert _report(many) == _report(one)
        assert many.rejects.read_text() == one.rejects.read_text()  # same rows, same lines
        for name, table in _tables(one).items():
            pd.testing.assert_frame_equal(_tables(many)[name], table, check_exact=True)
        for name, frame in _outputs(one).items():
            pd.testing.assert_frame_equal(
                _outputs(many)[name], frame, check_exact=False, rtol=1e-12, atol=1e-12
            )


def test_dedupe_of_overlapping_exports_keeps_max_multiplicity(tmp_path: Path) -> None:
    frame = _export(lines=20_000, customers=200)
    n = len(frame)
    # a: the first 70% and 50 of its lines again; b: the last 70% and 80 lines three times.
    a = pd.concat([frame.iloc[: int(0.7 * n)], frame.iloc[100:150]])
    again = frame.iloc[int(0.3 * n) : int(0.3 * n) + 80]
    b = pd.concat([frame.iloc[int(0.3 * n) :], again, again])
    count_a = Counter(map(tuple, a.astype(str).to_numpy()))
    count_b = Counter(map(tuple, b.astype(str).to_numpy()))
    union = count_a | count_b  # max of the two multiplicities: the multiset union
    expected = pd.DataFrame(
        [list(line) for line, k in union.items() for _ in range(k)], columns=frame.columns
    )
    paths = [write_export(f, tmp_path / f"{name}.csv") for name, f in (("a", a), ("b", b))]
    truth = _settings(tmp_path, [write_export(expected, tmp_path / "union.csv")], "truth")
    ingest(truth.dataset, truth.data_root, truth.paths, 1)
    both = _settings(tmp_path, paths, "both")
    report = ingest(both.dataset, both.data_root, both.paths, 4, PIECE)

    assert report["duplicate_rows"] == len(a) + len(b) - union.total()
    assert report["accepted_rows"] + report["rejected_rows"] == union.total()
    for name, table in _tables(truth.paths).items():
        pd.testing.assert_frame_equal(_tables(both.paths)[name], table, check_exact=True)


def test_a_local_ray_builds_the_same_snapshots_as_in_process(tmp_path: Path) -> None:
    csv = write_export(_export(lines=15_000, customers=150), tmp_path / "export.csv")
    local = _settings(tmp_path, [csv], "local")
    ingest(local.dataset, local.data_root, local.paths, 3)
    on_ray = _settings(tmp_path, [csv], "ray")
    ingest(on_ray.dataset, on_ray.data_root, on_ray.paths, 3)
    expected = _outputs(_build(local))
    # In a process of its own: a Ray session ended in this process left state behind that
    # made the next one (the two-node test's) lose its objects (OwnerDiedError).
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        engine = EngineParams(kind="ray", num_cpus=2, object_store_mb=80)
        got = _outputs(pool.submit(_build, on_ray, engine).result())
    for name, frame in expected.items():
        pd.testing.assert_frame_equal(got[name], frame, check_exact=True)


@pytest.mark.slow
def test_a_two_node_cluster_gives_the_features_and_scores_of_the_local_path(
    trained: Trained, tmp_path: Path
) -> None:
    local = load_settings(trained.workspace, dataset=str(trained.dataset))
    scores_local = pd.read_parquet(local.paths.scores_file(trained.latest))
    with ray_cluster() as address:
        cluster = load_settings(
            trained.workspace,
            dataset=str(trained.dataset),
            overrides={"engine": {"kind": "ray", "address": address}},
        )
        built = Workspace(tmp_path / "built")
        build_snapshots(
            partitioned_tables(cluster.paths),
            cluster.features,
            cluster.labels,
            cluster.segments,
            built,
            fixed_slots=steps.fixed_slots(cluster),
            engine=cluster.engine,
        )
        answer = steps.score_batch(cluster, pd.Timestamp(trained.latest).date())
    assert answer["engine"] == "ray" and answer["partitions"] == local.features.partitions
    for name, frame in _outputs(local.paths).items():
        pd.testing.assert_frame_equal(_outputs(built)[name], frame, check_exact=True)
    scores = pd.read_parquet(cluster.paths.scores_file(trained.latest))
    pd.testing.assert_frame_equal(scores, scores_local, check_exact=True)


def test_batch_scores_by_partition_are_those_of_the_whole_base_in_one_frame(
    trained: Trained,
) -> None:
    """The published batch (parquet in one file per customer partition, and the CRM CSV)
    holds, for every customer, what scoring the whole base as one in-memory frame gives."""
    settings = load_settings(trained.workspace, dataset=str(trained.dataset))
    paths = settings.paths
    as_of = pd.Timestamp(trained.latest, tz="UTC")
    customers = pd.read_parquet(
        paths.snapshot(CUSTOMER_VIEW),
        columns=[CUSTOMER_ID, EVENT_TIMESTAMP, *SEGMENT_COLUMNS],
        filters=[(EVENT_TIMESTAMP, "==", as_of)],
    )
    customers = customers.sort_values(CUSTOMER_ID).reset_index(drop=True)
    customers[EVENT_TIMESTAMP] = pd.to_datetime(customers[EVENT_TIMESTAMP], utc=True)
    models = load_champions(steps.mlflow_client(settings), offers_skipped(paths))
    with split_snapshots(settings.feast, paths, as_of, 1) as split:
        job = ScoreJob(as_of, customers, 1, settings.feast, paths, models, split)
        whole = score_partition(job, 0)
    assert whole is not None and len(whole) == len(customers) > 100
    whole.insert(1, "as_of", as_of)
    expected = rounded(whole)

    folder = paths.scores_file(trained.latest)
    assert len(list(folder.glob("*.parquet"))) == settings.features.partitions > 1
    published = pd.read_parquet(folder).sort_values(CUSTOMER_ID).reset_index(drop=True)
    published["as_of"] = published["as_of"].astype(expected["as_of"].dtype)
    pd.testing.assert_frame_equal(published, expected, check_exact=True)
    csv = pd.read_csv(paths.scores_file(trained.latest, ".csv"), dtype={CUSTOMER_ID: str})
    assert list(csv[CUSTOMER_ID]) == list(expected[CUSTOMER_ID])
    for column in ("churn_probability", "clv", "retention_priority", "offer_1"):
        assert list(csv[column]) == list(expected[column]), column


def test_an_unknown_engine_is_refused_in_one_line(tmp_path: Path) -> None:
    args = ["--workspace", str(tmp_path), "features", "build", "--engine", "spark"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert result.output.strip() == "error: --engine spark: expected local or ray"
