"""Batch scoring: every customer as of a date, with all the answers the API gives.

`score_frame` is a pure function over a partition of customers (features in, scores out);
`score_partition` gathers one customer partition's features and applies it; `score_batch`
splits the feature snapshots' rows by customer partition once (`split_snapshots`), runs
`score_partition` over every partition (in-process or on Ray; each reads only its own
customers' rows, with Feast's point-in-time rule: `features.retrieval.features_as_of`) and
publishes parquet (one file per partition) + CSV as one set (features/publish.py: readers
see both of one run).
Both go through the model runtime (`serving.models`) the API uses, so a customer gets the
same scores, CLV percentile and tier, and offers from either.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from feast import FeatureStore

from features.catalog import Workspace
from features.config import EngineParams, FeastParams
from features.engine import map_partitions, session
from features.feast_repo import AFFINITY_VIEW, BTYD_VIEW, CUSTOMER_VIEW, OFFER_VIEW, VIEWS
from features.model_spec import model_spec
from features.names import CUSTOMER_ID, EVENT_TIMESTAMP, OFFER_ID
from features.partitions import part_name, partition_of
from features.publish import publishing, write_json_atomic
from features.retrieval import features_as_of, split_by_partition, ttl_start
from features.store import file_source, open_store
from serving.contract import data_dictionary, horizon, rounded
from serving.models import (
    BundleModel,
    ModelNotFound,
    churn_band,
    churn_flag,
    churn_probability,
    clv_percentile,
    clv_tier,
    clv_value,
    model_candidates,
    recommend,
)

SEGMENT_COLUMNS = ["rfm_segment", "value_tier", "lifecycle_stage"]
# The views keyed by customer: split by customer partition before scoring.
SPLIT_VIEWS = (CUSTOMER_VIEW, BTYD_VIEW, AFFINITY_VIEW)


@dataclass(frozen=True)
class Champions:
    """The served models and their registry versions ("3@champion"). The offer model is
    optional (data without products has none): without it the scores have no offer columns,
    and `no_offers` says why."""

    churn: BundleModel
    clv: BundleModel
    nbo: BundleModel | None
    versions: dict[str, str]
    no_offers: str | None = None


def score_frame(
    customers: pd.DataFrame,
    churn_features: pd.DataFrame,
    clv_features: pd.DataFrame,
    offers: pd.DataFrame | None,
    models: Champions,
) -> pd.DataFrame:
    """Scores of one partition: churn, CLV, top offers, segments and retention priority.

    `customers` holds customer_id, rfm_segment, value_tier, lifecycle_stage; the feature frames are
    aligned with it row by row; `offers` is the ranked top-k (customer_id, rank, offer_id,
    probability, expected_value: `serving.models.recommend`; None: no offer columns). The
    CLV percentile and tier place each CLV among the model's test population
    (`serving.models.clv_percentile`), as the API does: they do not depend on who else is
    scored."""
    p_churn = churn_probability(models.churn, models.churn.frame_matrix(churn_features))
    clv = clv_value(models.clv, models.clv.frame_matrix(clv_features))
    percentile = clv_percentile(models.clv, clv)
    out = pd.DataFrame(
        {
            CUSTOMER_ID: customers[CUSTOMER_ID].to_numpy(),
            "churn_probability": np.round(p_churn, 6),
            "churn_band": churn_band(models.churn, p_churn),
            "churn_flag": churn_flag(models.churn, p_churn),
            "clv": np.round(clv, 2),
            "clv_percentile": np.round(percentile, 1),
            "rfm_segment": customers["rfm_segment"].to_numpy(),
            "value_tier": customers["value_tier"].to_numpy(),
            "lifecycle_stage": customers["lifecycle_stage"].to_numpy(),
            "retention_priority": np.round(p_churn * clv, 2),
            "clv_tier": clv_tier(models.clv, percentile),
        }
    )
    if offers is not None:
        wide = offers.pivot(
            index=CUSTOMER_ID, columns="rank", values=[OFFER_ID, "probability", "expected_value"]
        )
        wide.columns = [_offer_column(str(pair[0]), int(pair[1])) for pair in wide.columns]
        out = out.merge(wide.reset_index(), on=CUSTOMER_ID, how="left")
    for kind, version in models.versions.items():
        out[f"{kind}_model_version"] = version
    return out


def _offer_column(name: str, rank: int) -> str:
    return f"offer_{rank}" if name == OFFER_ID else f"offer_{rank}_{name}"


@dataclass(frozen=True)
class ScoreJob:
    """What every partition of a batch needs: the customers to score (all partitions'; each
    takes its own), where the Feast store is, the models, and the folder of the snapshots'
    rows split by partition (`split_snapshots`)."""

    as_of: pd.Timestamp
    customers: pd.DataFrame  # customer_id, event_timestamp and SEGMENT_COLUMNS
    partitions: int
    feast: FeastParams
    paths: Workspace
    models: Champions
    split: Path

    def files(self, index: int) -> dict[str, Path]:
        """The file each view's rows of partition `index` are read from."""
        files = {view: self.paths.snapshot(view) for view in VIEWS}
        files.update({view: self.split / view / part_name(index) for view in SPLIT_VIEWS})
        return files


@contextlib.contextmanager
def split_snapshots(
    feast: FeastParams, paths: Workspace, as_of: pd.Timestamp, partitions: int
) -> Iterator[Path]:
    """A temporary folder (in the workspace, which every Ray node sees) holding, per view
    keyed by customer, its rows that a point-in-time read at `as_of` can use, split by
    customer partition (`features.retrieval.split_by_partition`); removed after the block."""
    store = open_store(feast, paths)
    paths.scores_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".split-", dir=paths.scores_dir) as tmp:
        for name in SPLIT_VIEWS:
            view = store.get_feature_view(name)
            source = file_source(view)
            split_by_partition(
                Path(source.path),
                source.timestamp_field,
                ttl_start(view, as_of),
                as_of,
                partitions,
                Path(tmp) / name,
            )
        yield Path(tmp)


def score_partition(job: ScoreJob, index: int) -> pd.DataFrame | None:
    """Scores of the customers of partition `index` (None: it has none), their features
    retrieved from Feast: a pure function of the partition, run in-process or as a Ray
    task (which opens the store itself)."""
    mine = partition_of(job.customers[CUSTOMER_ID], job.partitions) == index
    customers = job.customers[mine].reset_index(drop=True)
    if customers.empty:
        return None
    store = open_store(job.feast, job.paths)
    files = job.files(index)
    entities = customers[[CUSTOMER_ID, EVENT_TIMESTAMP]]
    churn, clv = (
        features_as_of(store, model_spec(kind).feature_service, entities, job.as_of, files)
        for kind in ("churn", "clv")
    )
    models = job.models
    offers = None if models.nbo is None else _offers(models.nbo, store, files, entities, job.as_of)
    return score_frame(customers, churn, clv, offers, models)


def score_batch(
    as_of: pd.Timestamp,
    feast: FeastParams,
    paths: Workspace,
    models: Champions,
    partitions: int = 1,
    engine: EngineParams | None = None,
    currency: str | None = None,
) -> tuple[Path, Path, int]:
    """Score every customer in the workspace's snapshot at `as_of`, partition by partition
    (customer hash, in-process or on Ray: `engine`); writes the workspace's scores files of
    that date (`publish_scores`: parquet, one file per partition; CSV, all customers by id;
    their data dictionary) and returns (parquet, csv, rows)."""
    as_of = (
        pd.Timestamp(as_of).tz_localize("UTC")
        if pd.Timestamp(as_of).tzinfo is None
        else pd.Timestamp(as_of).tz_convert("UTC")
    )
    filters = [(EVENT_TIMESTAMP, "==", as_of)]
    customers = pd.read_parquet(
        paths.snapshot(CUSTOMER_VIEW),
        columns=[CUSTOMER_ID, EVENT_TIMESTAMP, *SEGMENT_COLUMNS],
        filters=filters,
    )
    if customers.empty:
        raise ValueError(
            f"no feature snapshot at {as_of.date()}: run `crmscore features build "
            f"--cutoffs {as_of.date()}` first"
        )
    customers = customers.sort_values(CUSTOMER_ID, kind="stable").reset_index(drop=True)
    customers[EVENT_TIMESTAMP] = pd.to_datetime(customers[EVENT_TIMESTAMP], utc=True)
    engine = engine or EngineParams()
    partitions = max(1, partitions)
    with split_snapshots(feast, paths, as_of, partitions) as split:
        job = ScoreJob(as_of, customers, partitions, feast, paths, models, split)
        with session(engine):
            parts = map_partitions(score_partition, job, range(partitions), engine)
    scores = pd.concat([part for part in parts if part is not None], ignore_index=True)
    scores = scores.sort_values(CUSTOMER_ID, kind="stable").reset_index(drop=True)
    scores.insert(1, "as_of", as_of)
    date = as_of.date().isoformat()
    publish_scores(scores, date, paths, models, currency, job.partitions)
    return paths.scores_file(date), paths.scores_file(date, ".csv"), len(scores)


def publish_scores(
    scores: pd.DataFrame,
    date: str,
    paths: Workspace,
    models: Champions,
    currency: str | None,
    partitions: int = 1,
) -> None:
    """Write the scores of a date as parquet and CSV, numbers rounded to their kind's
    decimals (`serving.contract.DECIMALS`), with their data dictionary beside them: the
    three files are published together, or none is."""
    scores = rounded(scores)
    horizons = {"churn": horizon(models.churn), "clv": horizon(models.clv)}
    if models.nbo is not None:
        horizons["nbo"] = horizon(models.nbo)
    with publishing(paths.scores_versions(date)) as version:
        staged = paths.staged(paths.scores_versions(date), version)
        parquet = staged.scores_file(date)
        _write_partitioned(scores, partitions, parquet)
        scores.to_csv(staged.scores_file(date, ".csv"), index=False)
        dictionary = data_dictionary(
            list(scores.columns),
            horizons,
            models.versions,
            currency,
            files=[parquet.name, staged.scores_file(date, ".csv").name],
            as_of=date,
            rows=len(scores),
            **({"offers": f"none: {models.no_offers}"} if models.no_offers else {}),
        )
        write_json_atomic(dictionary, Workspace.dictionary_file(parquet))


def _write_partitioned(scores: pd.DataFrame, partitions: int, folder: Path) -> None:
    """The scores as a parquet folder of one file per customer partition (each by id), all
    with the same columns and types."""
    folder.mkdir()
    schema = pa.Schema.from_pandas(scores, preserve_index=False)
    of = partition_of(scores[CUSTOMER_ID], partitions)
    for index in range(partitions):
        rows = pa.Table.from_pandas(scores[of == index], schema=schema, preserve_index=False)
        pq.write_table(rows, folder / part_name(index))


def _offers(
    nbo: BundleModel,
    store: FeatureStore,
    files: dict[str, Path],
    entities: pd.DataFrame,
    as_of: pd.Timestamp,
) -> pd.DataFrame:
    """The ranked top-k offers of the customers in `entities` at `as_of`, their affinity
    and offer rows read from `files` (`ScoreJob.files`)."""
    filters = [(EVENT_TIMESTAMP, "==", as_of)]
    affinity = pd.read_parquet(files[AFFINITY_VIEW], filters=filters)
    offer_stats = pd.read_parquet(files[OFFER_VIEW], filters=filters)
    for frame in (affinity, offer_stats):
        frame[EVENT_TIMESTAMP] = pd.to_datetime(frame[EVENT_TIMESTAMP], utc=True)
    pairs = model_candidates(nbo, affinity, offer_stats, entities)
    pairs = features_as_of(store, model_spec("nbo").feature_service, pairs, as_of, files)
    return recommend(nbo, pairs)


def load_champions(client: Any, no_offers: str | None = None) -> Champions:
    """The served version of each model (`serving.registry.load_registered`), with its
    version ("3@champion"). Churn and CLV are required (ValueError naming the missing one);
    the offer model is left out when `no_offers` gives a reason (data without products) or
    when the registry has no champion of it (then `no_offers` says so); one that cannot be
    loaded, or a registry that cannot be read, is an error."""
    from serving.registry import NoVersion, load_registered

    loaded: dict[str, BundleModel] = {}
    for kind in ("churn", "clv", "nbo"):
        if kind == "nbo" and no_offers:
            continue
        try:
            model = load_registered(kind, client)
        except ModelNotFound as exc:
            if kind == "nbo" and isinstance(exc, NoVersion):
                no_offers = str(exc)
                continue
            raise ValueError(str(exc)) from exc
        model.threads = 0  # a whole base at once: every core
        loaded[kind] = model
    return Champions(
        loaded["churn"],
        loaded["clv"],
        loaded.get("nbo"),
        {kind: model.version for kind, model in loaded.items()},
        no_offers,
    )
