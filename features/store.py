"""The Feast store in the workspace: configuration, `apply` and `materialize`.

Materialization has two paths with the same result in the online store:
- stock: Feast's `materialize` (row-by-row protobuf conversion);
- fast (default): the same rows, chosen the same way (latest row per entity in the window,
  newest `created_timestamp` on ties), read in record batches into a running latest row per
  entity (memory follows the entities, not the snapshot's rows), encoded with numpy into the
  exact bytes Feast writes; on SQLite upserted in chunks in one transaction, on Redis
  written as Feast's hashes in pipelines (features/redis_store.py).
Tests compare the two byte for byte. Each online store records what it holds (the end of
the last window and the snapshot fingerprint of each view, `read_state`) in itself: a new or
emptied store, or a workspace switched to another store, is loaded whole.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import struct
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from feast import FeatureStore, FeatureView, FileSource, RepoConfig, ValueType
from feast.infra.key_encoding_utils import serialize_entity_key_prefix
from feast.infra.online_stores.helpers import compute_table_id
from feast.infra.online_stores.sqlite import SqliteOnlineStore, SqliteOnlineStoreConfig
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.protos.feast.types.Value_pb2 import ValueType as ValueTypeProto

from features import redis_store
from features.catalog import Workspace
from features.config import FeastParams
from features.feast_repo import CUSTOMER_VIEW, VIEWS, definitions

ENTITY_KEY_VERSION = 3
_TAG_STRING = 0x12  # ValueProto field 2 (string_val), length-delimited
_TAG_INT64 = 0x20  # field 4 (int64_val), varint
_TAG_DOUBLE = 0x29  # field 5 (double_val), fixed64

# Rows or bytes read before each merge into the running latest rows, and entities written
# per statement batch: memory follows the entities, not the snapshot's rows.
READ_BATCH_ROWS = 8_000_000
READ_BATCH_BYTES = 512 * 1024 * 1024
WRITE_CHUNK_ROWS = 20_000


def registry_config(params: FeastParams, paths: Workspace) -> dict[str, Any]:
    """Feast's registry: the workspace's file, or (`registry: sql`) the SQL registry at
    `registry_url` that several hosts share (a `postgresql://` URL uses psycopg 3)."""
    if params.registry == "file":
        return {
            "registry_type": "file",
            "path": str(paths.feast_registry),
            "cache_ttl_seconds": params.registry_cache_seconds,
        }
    if not params.registry_url:
        raise ValueError("feast.registry is sql but CRMSCORE_FEAST_REGISTRY_URL is not set")
    return {
        "registry_type": "sql",
        "path": params.registry_url,
        "cache_ttl_seconds": params.registry_cache_seconds,
        # Connections checked before use: a restarted database does not fail the next read.
        "sqlalchemy_config_kwargs": {"echo": False, "pool_pre_ping": True},
    }


def repo_config(params: FeastParams, paths: Workspace) -> RepoConfig:
    """Feast configuration for the workspace: file offline store, SQLite or Redis online,
    file or SQL registry."""
    online: dict[str, Any] = {"type": "sqlite", "path": str(paths.online_store)}
    if params.online_store == "redis":
        if not params.redis_url:
            raise ValueError("feast.online_store is redis but CRMSCORE_REDIS_URL is not set")
        online = {"type": "redis", "connection_string": params.redis_url}
    return RepoConfig(
        project=params.project,
        provider="local",
        registry=registry_config(params, paths),
        offline_store={"type": "file"},
        online_store=online,
        entity_key_serialization_version=ENTITY_KEY_VERSION,
        repo_path=paths.feast_dir,
    )


def open_store(params: FeastParams, paths: Workspace) -> FeatureStore:
    """The workspace's Feast store (created on first use)."""
    paths.feast_dir.mkdir(parents=True, exist_ok=True)
    return FeatureStore(config=repo_config(params, paths))


def registry_problem(params: FeastParams, paths: Workspace) -> str | None:
    """Why the Feast registry cannot serve (no registry file, an unreachable SQL registry or
    one without this project's views), in words; None when it can."""
    if params.registry == "file":
        if paths.feast_registry.exists():
            return None
        return f"{paths.feast_dir}: no Feast registry"
    try:
        views = open_store(params, paths).list_feature_views()
    except Exception as exc:  # the URL may hold a password: the type says enough
        return f"the Feast SQL registry could not be read: {type(exc).__name__}"
    if not views:
        return f"the Feast SQL registry has no feature views of project {params.project}"
    return None


def apply_repo(params: FeastParams, paths: Workspace) -> dict[str, list[str]]:
    """Register the repo's entities, views and services; the snapshots must exist."""
    missing = [paths.snapshot(v).name for v in VIEWS if not paths.snapshot(v).exists()]
    if missing:
        raise FileNotFoundError(
            f"{paths.snapshot_dir}: snapshot(s) {missing} not found; run `crmscore features build`"
        )
    store = open_store(params, paths)
    objects = definitions(paths, params.ttl_days)
    store.apply(objects)  # type: ignore[arg-type]
    return {
        "feature_views": [v.name for v in store.list_feature_views()],
        "feature_services": [s.name for s in store.list_feature_services()],
    }


def materialize(
    params: FeastParams,
    paths: Workspace,
    stock: bool = False,
    end: datetime | None = None,
    batch_rows: int = READ_BATCH_ROWS,
    chunk_rows: int = WRITE_CHUNK_ROWS,
) -> dict[str, Any]:
    """Bring the online store up to `end` (default: the latest snapshot), incrementally.

    Each view continues from where its last materialization into this online store ended
    (`read_state`); running it again with nothing new writes nothing. A view the store has
    no record of, or whose snapshot file changed since (a rebuild from corrected data:
    `snapshot_fingerprint`), is reloaded whole: its online rows are replaced by the
    snapshot's. The run's record is also written to `paths.materialized`. The fast path
    reads `batch_rows` snapshot rows and writes `chunk_rows` entities at a time
    (`fast_materialize`)."""
    store = open_store(params, paths)
    end = end or _latest_snapshot(paths)
    written: dict[str, int | None] = {}
    reloaded: list[str] = []
    state = read_state(store)
    for view in store.list_feature_views():
        fingerprint = snapshot_fingerprint(file_source(view))
        held = state.get(view.name)
        changed = held is None or held["fingerprint"] != fingerprint
        last_end = None if held is None or changed else datetime.fromisoformat(held["end"])
        start = incremental_start(view, end, last_end)
        if changed:
            reloaded.append(view.name)
        if stock:
            if changed:
                clear_view(store, view)
            store.materialize(start, end, [view.name])
            written[view.name] = None  # Feast does not report a count
        else:
            written[view.name] = fast_materialize(
                store, view.name, start, end, changed, batch_rows, chunk_rows
            )
        state[view.name] = {"fingerprint": fingerprint, "end": end.isoformat()}
        write_state(store, view.name, state[view.name])
    answer = {
        "path": "stock" if stock else "fast",
        "online_store": params.online_store,
        "end": end.isoformat(),
        "entities": written,
        "reloaded": reloaded,
    }
    _write_json(paths.materialized, {**answer, "views": state})
    return answer


def snapshot_fingerprint(source: FileSource) -> str:
    """SHA-256 of the content of the snapshot file a view reads (through the snapshots'
    `current` pointer: the published version)."""
    digest = hashlib.sha256()
    with Path(source.path).open("rb") as data:
        for block in iter(lambda: data.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# What each online store holds: SQLite keeps it in a table beside Feast's, Redis in a hash.
STATE_TABLE = "crmscore_materialized"

_CREATE_STATE = (
    f"CREATE TABLE IF NOT EXISTS {STATE_TABLE} "
    "(view TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, end_ts TEXT NOT NULL)"
)


def state_key(project: str) -> str:
    """The Redis hash where `write_state` records what the store holds."""
    return f"crmscore:materialized:{project}"


def _is_sqlite(store: FeatureStore) -> bool:
    return isinstance(store.config.online_store, SqliteOnlineStoreConfig)


def read_state(store: FeatureStore) -> dict[str, dict[str, str]]:
    """What the online store of `store` holds, by view: the snapshot `fingerprint` it was
    loaded from and the `end` of the last window (empty for a new or emptied store)."""
    if _is_sqlite(store):
        conn = sqlite3.connect(SqliteOnlineStore._get_db_path(store.config))
        try:
            conn.execute(_CREATE_STATE)
            rows = conn.execute(f"SELECT view, fingerprint, end_ts FROM {STATE_TABLE}").fetchall()
        finally:
            conn.close()
        return {v: {"fingerprint": f, "end": e} for v, f, e in rows}
    found = redis_store.redis_client(store.config).hgetall(state_key(store.project))
    return {k.decode(): json.loads(v) for k, v in found.items()}


def write_state(store: FeatureStore, view: str, record: dict[str, str]) -> None:
    """Record in the online store what it now holds of `view` (see `read_state`)."""
    if _is_sqlite(store):
        conn = sqlite3.connect(SqliteOnlineStore._get_db_path(store.config))
        try:
            with conn:
                conn.execute(_CREATE_STATE)
                conn.execute(
                    f"INSERT OR REPLACE INTO {STATE_TABLE} VALUES (?, ?, ?)",
                    (view, record["fingerprint"], record["end"]),
                )
        finally:
            conn.close()
        return
    redis_store.redis_client(store.config).hset(state_key(store.project), view, json.dumps(record))


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Write JSON atomically: a crash keeps the previous file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def clear_view(store: FeatureStore, view: FeatureView) -> None:
    """Delete every online row of a view, before it is reloaded whole."""
    if not _is_sqlite(store):
        redis_store.delete_view(store.config, view)
        return
    conn = sqlite3.connect(SqliteOnlineStore._get_db_path(store.config))
    try:
        with conn:
            conn.execute(f"DELETE FROM {_quoted_table(store, view)}")
    finally:
        conn.close()


def _quoted_table(store: FeatureStore, view: FeatureView) -> str:
    config = store.config
    table = compute_table_id(
        config.project, view, config.registry.enable_online_feature_view_versioning
    )
    return '"' + table.replace('"', '""') + '"'


def incremental_start(view: FeatureView, end: datetime, last_end: datetime | None) -> datetime:
    """Where an incremental run starts: `last_end`, the end of the last run into this online
    store, else (a first load or a reload) `end - ttl`.

    Feast's own `materialize_incremental` starts a first run at now - ttl, which loads nothing
    for data whose cutoffs are older than the ttl (a historical dataset); `end - ttl` loads
    exactly the values that are still fresh at `end`."""
    if last_end is not None:
        return last_end
    ttl = view.ttl if view.ttl and view.ttl.total_seconds() > 0 else timedelta(weeks=52)
    return end - ttl


def _latest_snapshot(paths: Workspace) -> datetime:
    path = paths.snapshot(CUSTOMER_VIEW)
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found; run `crmscore features build`")
    stamps = pq.read_table(path, columns=["event_timestamp"]).column(0)
    latest = pd.Timestamp(stamps.to_pandas().max())
    return (latest.tz_convert("UTC") + pd.Timedelta(seconds=1)).to_pydatetime()


# --- the fast path -----------------------------------------------------------------------


def _rows_as_bytes(buf: np.ndarray, lengths: np.ndarray | None = None) -> list[bytes]:
    """An (N, W) uint8 matrix as N bytes objects (the first lengths[i] bytes of row i)."""
    n, w = buf.shape
    flat = buf.tobytes()
    if lengths is None:
        return [flat[i : i + w] for i in range(0, n * w, w)]
    return [flat[s : s + ln] for s, ln in zip(range(0, n * w, w), lengths.tolist(), strict=True)]


def encode_double(values: np.ndarray) -> tuple[list[bytes], list[str | None]]:
    """`ValueProto(double_val=x).SerializeToString()` and `str(x)` per value; NaN is null."""
    v = np.ascontiguousarray(values, dtype="<f8")
    buf = np.empty((len(v), 9), dtype=np.uint8)
    buf[:, 0] = _TAG_DOUBLE
    buf[:, 1:] = v.view(np.uint8).reshape(-1, 8)
    out = _rows_as_bytes(buf)
    text: list[str | None] = list(map(repr, v.tolist()))
    for i in np.flatnonzero(np.isnan(v)).tolist():
        out[i], text[i] = b"", None
    return out, text


_SHIFTS = np.arange(0, 70, 7, dtype=np.uint64)


def encode_int64(values: np.ndarray, null: np.ndarray) -> tuple[list[bytes], list[str | None]]:
    """`ValueProto(int64_val=x).SerializeToString()` per value: a protobuf varint."""
    v = np.ascontiguousarray(values, dtype=np.int64)
    rem = v.view(np.uint64)[:, None] >> _SHIFTS[None, :]
    nbytes = np.maximum(1, (rem != 0).sum(axis=1))
    groups = (rem & np.uint64(0x7F)).astype(np.uint8)
    groups[np.arange(10)[None, :] < (nbytes - 1)[:, None]] |= 0x80
    buf = np.empty((len(v), 11), dtype=np.uint8)
    buf[:, 0] = _TAG_INT64
    buf[:, 1:] = groups
    out = _rows_as_bytes(buf, nbytes + 1)
    text: list[str | None] = list(map(str, v.tolist()))
    for i in np.flatnonzero(null).tolist():
        out[i], text[i] = b"", None
    return out, text


def encode_string(values: pd.Series) -> tuple[list[bytes], list[str | None]]:
    """Each distinct string serialized once with the real protobuf, then mapped back."""
    codes, uniques = pd.factorize(values.astype(object))
    encoded = np.array(
        [ValueProto(string_val=str(s)).SerializeToString() for s in uniques] + [b""], dtype=object
    )
    text = np.array([str(s) for s in uniques] + [None], dtype=object)
    codes = np.where(codes < 0, len(uniques), codes)
    return encoded[codes].tolist(), text[codes].tolist()


def serialize_string_keys(
    join_keys: Sequence[str], columns: Sequence[Sequence[str]]
) -> list[bytes]:
    """Feast's `serialize_entity_key` (version 3) for string join keys, row by row.

    Keys are sorted by name as Feast does; `columns[i]` holds the values of `join_keys[i]`."""
    order = sorted(range(len(join_keys)), key=lambda i: join_keys[i])
    prefix = serialize_entity_key_prefix([join_keys[i] for i in order], ENTITY_KEY_VERSION)
    head = struct.pack("<I", ValueTypeProto.STRING)
    pack = struct.Struct("<I").pack
    sorted_columns = [columns[i] for i in order]
    out = []
    for values in zip(*sorted_columns, strict=True):
        parts = [prefix]
        for value in values:
            raw = value.encode("utf8")
            parts += [head, pack(len(raw)), raw]
        out.append(b"".join(parts))
    return out


def _sqlite_epoch(ts: pd.Timestamp) -> int:
    # Feast's SQLite adapter stores int(datetime.timestamp()) of a naive UTC datetime.
    return int(ts.tz_convert("UTC").tz_localize(None).to_pydatetime().timestamp())


def _epochs(stamps: pd.Series) -> list[int | None]:
    codes, uniques = pd.factorize(stamps)
    values = np.array([_sqlite_epoch(t) for t in uniques] + [None], dtype=object)
    return values[np.where(codes < 0, len(uniques), codes)].tolist()


def _utc(values: pd.Series) -> pd.Series:
    stamps = pd.to_datetime(values)
    return stamps.dt.tz_localize("UTC") if stamps.dt.tz is None else stamps.dt.tz_convert("UTC")


def file_source(view: FeatureView) -> FileSource:
    """The parquet file source of a view (TypeError for other sources)."""
    if not isinstance(view.batch_source, FileSource):
        raise TypeError(f"{view.name}: only parquet file sources are read")
    return view.batch_source


def scan_window(
    path: Path,
    ts_col: str,
    start: datetime,
    end: datetime,
    columns: list[str] | None,
    batch_size: int,
    batch_readahead: int,
) -> ds.Scanner:
    """A scanner of the rows of the parquet file at `path` with start <= ts <= end (only
    `columns`; None: all), the window pushed down to the row groups, a batch at a time."""
    window = pq.filters_to_expression(
        [(ts_col, ">=", pd.Timestamp(start)), (ts_col, "<=", pd.Timestamp(end))]
    )
    return ds.dataset(path, format="parquet").scanner(
        columns=columns,
        filter=window,
        batch_size=batch_size,
        batch_readahead=batch_readahead,
        fragment_readahead=1,
        # Without this, a file's column chunks are all read into memory before the first batch.
        fragment_scan_options=ds.ParquetFragmentScanOptions(pre_buffer=False),
    )


def latest_per_entity(
    path: Path,
    keys: list[str],
    columns: list[str],
    ts_col: str,
    created_col: str | None,
    start: datetime,
    end: datetime,
    batch_rows: int = READ_BATCH_ROWS,
    batch_bytes: int = READ_BATCH_BYTES,
) -> pa.Table:
    """The latest row per `keys` among the rows of the parquet file at `path` with
    start <= ts <= end: the newest `ts_col`, then the newest `created_col` (nulls last), then
    the first in file order; as stock materialize picks them.

    The file is read in record batches (only `columns`, the window pushed down to the row
    groups); every `batch_rows` rows or `batch_bytes` bytes read are merged into a running
    table of the latest rows, so memory grows with the entities, not with the rows read.
    The result is in file order."""
    scanner = scan_window(path, ts_col, start, end, columns, min(batch_rows, 65_536), 4)
    order = [(ts_col, "descending")] + ([(created_col, "descending")] if created_col else [])
    schema = scanner.projected_schema
    latest: list[pa.Table] = []  # the running latest rows, in pieces: never copied whole
    pending: list[pa.RecordBatch] = []
    rows = size = 0
    for batch in scanner.to_batches():  # in file order
        pending.append(batch)
        rows, size = rows + batch.num_rows, size + batch.nbytes
        if rows >= batch_rows or size >= batch_bytes:
            latest.append(pa.Table.from_batches(pending, schema=schema))
            _keep_latest(latest, keys, order)
            pending, rows, size = [], 0, 0
    latest.append(pa.Table.from_batches(pending, schema=schema))
    _keep_latest(latest, keys, order)
    return pa.concat_tables(latest) if latest else schema.empty_table()


def _keep_latest(pieces: list[pa.Table], keys: list[str], order: list[tuple[str, str]]) -> None:
    """Keep, in `pieces` (in file order), only the latest row per key (earlier rows win
    ties). Each piece is replaced by its kept rows one after the other, so the rows are
    never all copied at once."""
    table = pa.concat_tables(pieces)  # a view, no copy
    # Stable: rows equal in time keep file order.
    by_time = pc.sort_indices(table.select([name for name, _ in order]), sort_keys=order)
    rank = np.empty(table.num_rows, dtype=np.int64)
    rank[by_time.to_numpy()] = np.arange(table.num_rows, dtype=np.int64)
    first = table.select(keys).append_column("_rank", pa.array(rank))
    del table, rank
    first = first.group_by(keys, use_threads=False).aggregate([("_rank", "min")])
    kept = np.sort(by_time.to_numpy()[first["_rank_min"].to_numpy()])
    del first, by_time
    start = 0
    for i, piece in enumerate(pieces):
        lo, hi = np.searchsorted(kept, [start, start + piece.num_rows])
        start += piece.num_rows
        if hi - lo < piece.num_rows:
            pieces[i] = piece.take(pa.array(kept[lo:hi] - (start - piece.num_rows)))
    pieces[:] = [piece for piece in pieces if piece.num_rows]
    pa.default_memory_pool().release_unused()


def latest_rows(
    store: FeatureStore,
    view: FeatureView,
    start: datetime,
    end: datetime,
    batch_rows: int = READ_BATCH_ROWS,
    path: Path | None = None,
    names: Sequence[str] | None = None,
) -> pa.Table:
    """The rows stock materialize picks for `view`: start <= ts <= end, latest per entity
    (`latest_per_entity`), with the view's join keys, timestamps and features (`names`
    only, when given); read from `path` (default: the view's snapshot)."""
    source = file_source(view)
    join_keys = [store.get_entity(e).join_key for e in view.entities]
    ts_col, created_col = source.timestamp_field, source.created_timestamp_column or None
    features = list(names) if names is not None else [f.name for f in view.features]
    columns = [*join_keys, *features, ts_col]
    columns += [created_col] if created_col else []
    return latest_per_entity(
        path or Path(source.path), join_keys, columns, ts_col, created_col, start, end, batch_rows
    )


def _frame(view: FeatureView, rows: pa.Table) -> pd.DataFrame:
    """Rows of a view as pandas, their timestamps in UTC."""
    frame = rows.to_pandas()
    source = file_source(view)
    for column in (source.timestamp_field, source.created_timestamp_column):
        if column:
            frame[column] = _utc(frame[column])
    return frame


def _encoded_columns(
    view: FeatureView, frame: pd.DataFrame
) -> list[tuple[str, list[bytes], list[str | None]]]:
    out = []
    for field in sorted(view.features, key=lambda f: f.name):
        column = frame[field.name]
        value_type = field.dtype.to_value_type()
        if value_type == ValueType.DOUBLE:
            values, text = encode_double(pd.to_numeric(column).to_numpy("float64", na_value=np.nan))
        elif value_type == ValueType.INT64:
            null = column.isna().to_numpy()
            values, text = encode_int64(column.fillna(0).to_numpy("int64"), null)
        elif value_type == ValueType.STRING:
            values, text = encode_string(column)
        else:
            raise TypeError(f"{view.name}.{field.name}: type {field.dtype} has no fast encoder")
        out.append((field.name, values, text))
    return out


def _upsert_per_entity(table: str, feature_names: list[str]) -> str:
    """One statement writing all of an entity's feature rows: Feast's upsert, many VALUES.

    Parameters: ?1 entity key, ?2 event_ts, ?3 created_ts, then (value, text) per feature.
    Binding once per entity instead of once per (entity, feature) halves the SQLite time."""
    quoted = '"' + table.replace('"', '""') + '"'
    values = ", ".join(
        f"(?1, '{name.replace(chr(39), chr(39) * 2)}', ?{4 + 2 * i}, ?{5 + 2 * i}, ?2, ?3)"
        for i, name in enumerate(feature_names)
    )
    # The same conflict clause as SqliteOnlineStore.online_write_batch.
    return (
        f"INSERT INTO {quoted} (entity_key, feature_name, value, value_text, event_ts, "
        f"created_ts) VALUES {values} ON CONFLICT(entity_key, feature_name) DO UPDATE SET "
        "value = excluded.value, value_text = excluded.value_text, "
        "event_ts = excluded.event_ts, created_ts = excluded.created_ts;"
    )


def fast_materialize(
    store: FeatureStore,
    view_name: str,
    start: datetime,
    end: datetime,
    replace: bool = False,
    batch_rows: int = READ_BATCH_ROWS,
    chunk_rows: int = WRITE_CHUNK_ROWS,
) -> int:
    """What `store.materialize(start, end, [view_name])` writes to the online store, written
    fast; with `replace`, the view's rows are deleted first (on SQLite in the same
    transaction). The snapshot is read `batch_rows` at a time (`latest_per_entity`) and
    written `chunk_rows` entities at a time.

    Returns the number of entities written."""
    view = store.get_feature_view(view_name)
    entities = [store.get_entity(e) for e in view.entities]
    if any(e.value_type != ValueType.STRING for e in entities):
        raise TypeError(f"{view_name}: the fast path supports string join keys only")
    rows = latest_rows(store, view, start, end, batch_rows)
    if view.online and (replace or rows.num_rows):
        chunks = (
            _frame(view, rows.slice(i, chunk_rows)) for i in range(0, rows.num_rows, chunk_rows)
        )
        if _is_sqlite(store):
            _sqlite_write(store, view, chunks, replace)
        else:
            _redis_write(store, view, chunks, replace)
    store.registry.apply_materialization(view, store.project, start, end)
    return rows.num_rows


def _sqlite_write(
    store: FeatureStore, view: FeatureView, chunks: Iterable[pd.DataFrame], replace: bool
) -> None:
    conn = sqlite3.connect(SqliteOnlineStore._get_db_path(store.config))
    try:
        conn.execute("PRAGMA cache_size = -262144")
        with conn:  # one transaction: readers see the old rows or the new ones
            if replace:
                conn.execute(f"DELETE FROM {_quoted_table(store, view)}")
            for frame in chunks:
                conn.executemany(*_upsert_rows(store, view, frame))
    finally:
        conn.close()


def _redis_write(
    store: FeatureStore, view: FeatureView, chunks: Iterable[pd.DataFrame], replace: bool
) -> None:
    """Feast's hashes for the rows of each frame of `chunks`. Feast skips a row whose stored
    event time is as new or newer; materialize's windows start where the store's last one
    ended (or the view was deleted first), so no stored time is newer and every row is
    written."""
    config = store.config
    if replace:
        redis_store.delete_view(config, view)
    join_keys = [store.get_entity(e).join_key for e in view.entities]
    project = config.project.encode()
    name = redis_store.view_name(config, view)
    client = redis_store.redis_client(config)
    for frame in chunks:
        keys = [
            k + project
            for k in serialize_string_keys(
                join_keys, [frame[k].astype(str).tolist() for k in join_keys]
            )
        ]
        columns = _encoded_columns(view, frame)
        fields = [redis_store.ts_field(name)] + [
            redis_store.feature_field(name, n) for n, _, _ in columns
        ]
        stamps = redis_store.encode_timestamps(frame[file_source(view).timestamp_field])
        values = zip(stamps, *(encoded for _, encoded, _ in columns), strict=True)
        redis_store.write_hashes(
            client, keys, [dict(zip(fields, row, strict=True)) for row in values]
        )


def _upsert_rows(
    store: FeatureStore, view: FeatureView, frame: pd.DataFrame
) -> tuple[str, list[tuple[Any, ...]]]:
    """The upsert statement of a view and its parameters for the rows of `frame`, in key
    order."""
    config = store.config
    join_keys = [store.get_entity(e).join_key for e in view.entities]
    keys = serialize_string_keys(join_keys, [frame[k].astype(str).tolist() for k in join_keys])
    order = np.argsort(np.array(keys, dtype=object), kind="stable").tolist()
    source = file_source(view)
    event_ts = _epochs(frame[source.timestamp_field])
    created_col = source.created_timestamp_column
    created_ts = _epochs(frame[created_col]) if created_col else [None] * len(frame)
    columns = _encoded_columns(view, frame)
    table = compute_table_id(
        config.project, view, config.registry.enable_online_feature_view_versioning
    )
    sql = _upsert_per_entity(table, [name for name, _, _ in columns])
    interleaved = [seq for _, values, text in columns for seq in (values, text)]
    params = list(zip(keys, event_ts, created_ts, *interleaved, strict=True))
    return sql, [params[i] for i in order]
