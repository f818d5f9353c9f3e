"""Reading a model's features from Feast's offline store, for training sets and batch scoring."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from feast import FeatureStore, FeatureView

from features.feast_repo import SERVICE_FEATURES
from features.names import CUSTOMER_ID, EVENT_TIMESTAMP
from features.partitions import part_name, partition_of
from features.store import latest_rows, scan_window


def service_features(service: str) -> list[str]:
    """Feature names of a feature service, in the service's order."""
    return [name for names in SERVICE_FEATURES[service].values() for name in names]


def historical_features(store: FeatureStore, service: str, entities: pd.DataFrame) -> pd.DataFrame:
    """`entities` (join keys + event_timestamp + anything else) with the service's features.

    Each feature view of the service is fetched with its own de-duplicated entity rows and
    merged back onto `entities` by its keys: Feast's file offline store, asked for views with
    different join keys in one call, returns only a fraction of the rows, and it keeps
    neither the row order nor rows without a value inside the ttl."""
    out = entities.copy()
    out[EVENT_TIMESTAMP] = pd.to_datetime(out[EVENT_TIMESTAMP], utc=True)
    for view_name, names in SERVICE_FEATURES[service].items():
        view = store.get_feature_view(view_name)
        keys = [store.get_entity(e).join_key for e in view.entities] + [EVENT_TIMESTAMP]
        request = out[keys].drop_duplicates().reset_index(drop=True)
        fetched = store.get_historical_features(
            entity_df=request, features=[f"{view_name}:{n}" for n in names]
        ).to_df()
        fetched[EVENT_TIMESTAMP] = pd.to_datetime(fetched[EVENT_TIMESTAMP], utc=True)
        out = out.merge(fetched[keys + names], on=keys, how="left")
    return out


def ttl_start(view: FeatureView, as_of: pd.Timestamp) -> pd.Timestamp:
    """The oldest event time a point-in-time read of `view` at `as_of` may use (Feast:
    as_of - ttl; no ttl, no limit)."""
    return as_of - view.ttl if view.ttl else pd.Timestamp.min.tz_localize("UTC")


def split_by_partition(
    source: Path,
    ts_col: str,
    start: datetime,
    end: datetime,
    partitions: int,
    folder: Path,
    batch_rows: int = 1_000_000,
) -> None:
    """The rows of the parquet file `source` with start <= ts <= end, split by customer
    partition (`partition_of` of the customer id) into `folder`/part-NNNNN.parquet, one file
    per partition (empty when it has none): one pass over the file, a batch at a time."""
    scanner = scan_window(source, ts_col, start, end, None, batch_rows, 2)
    folder.mkdir(parents=True)
    writers = [
        pq.ParquetWriter(folder / part_name(i), scanner.projected_schema) for i in range(partitions)
    ]
    try:
        for batch in scanner.to_batches():
            part = partition_of(batch.column(CUSTOMER_ID).to_pandas(), partitions)
            order = np.argsort(part, kind="stable")
            rows = pa.Table.from_batches([batch]).take(pa.array(order))
            bounds = np.searchsorted(part[order], np.arange(partitions + 1))
            for i in range(partitions):
                if bounds[i + 1] > bounds[i]:
                    writers[i].write_table(rows.slice(bounds[i], bounds[i + 1] - bounds[i]))
    finally:
        for writer in writers:
            writer.close()


def features_as_of(
    store: FeatureStore,
    service: str,
    entities: pd.DataFrame,
    as_of: pd.Timestamp,
    files: dict[str, Path],
) -> pd.DataFrame:
    """What `historical_features` gives for `entities` that are all at `as_of`, read from
    `files` (each view's snapshot, or the part of it that holds these entities'
    rows: `split_by_partition`): per view, the entity's latest row with
    as_of - ttl <= ts <= as_of (Feast's point-in-time rule), merged onto `entities`."""
    stamps = pd.to_datetime(entities[EVENT_TIMESTAMP], utc=True)
    if not (stamps == as_of).all():
        raise ValueError(f"features_as_of: every entity row must be at {as_of}")
    out = entities.copy()
    out[EVENT_TIMESTAMP] = stamps
    for view_name, names in SERVICE_FEATURES[service].items():
        view = store.get_feature_view(view_name)
        keys = [store.get_entity(e).join_key for e in view.entities]
        start = ttl_start(view, as_of)
        rows = latest_rows(store, view, start, as_of, path=files[view_name], names=names)
        out = out.merge(rows.select([*keys, *names]).to_pandas(), on=keys, how="left")
    return out
