"""Reading the Feast online store for real-time scoring.

On SQLite (the embedded default) rows are read with indexed SELECTs from the tables Feast
writes, using the `value_text` column Feast stores beside each protobuf value:
no registry look-up, protobuf decoding or response building per request. Tests check that it
returns what Feast's `get_online_features` returns. On Redis, Feast's hashes are read with
pipelined HMGETs and the offer catalog with a SCAN (features/redis_store.py); tests check
those against Feast too. Both return each row's event time.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from feast import FeatureStore
from feast.infra.online_stores.helpers import compute_table_id
from feast.infra.online_stores.sqlite import SqliteOnlineStore, SqliteOnlineStoreConfig
from redis.exceptions import RedisError

from features import redis_store
from features.names import ALL_FEATURES
from features.store import serialize_string_keys, state_key

Value = float | int | str | None
Key = TypeVar("Key", bytes, str)


@dataclass(frozen=True)
class OnlineRow:
    """One entity's feature values and the event time of the snapshot they come from."""

    values: dict[str, Value]
    event_timestamp: datetime | None


_PARSERS = {"float": float, "int": int, "string": str}


class StoreUnavailable(RuntimeError):
    """The online store did not answer: its file is missing, locked or unreadable."""


def _fold(
    rows: Iterable[tuple[Key, str, str | None, int | None]], names: Sequence[str]
) -> dict[Key, OnlineRow]:
    """One OnlineRow per entity from (entity, feature name, value text, event time) rows,
    with the `names` features parsed to their types (missing ones None)."""
    parsers = {n: _PARSERS[ALL_FEATURES[n].dtype] for n in names}
    found: dict[Key, tuple[dict[str, Value], int | None]] = {}
    for key, name, text, ts in rows:
        values, _ = found.setdefault(key, ({}, ts))
        parse = parsers.get(name)
        if parse is not None and text is not None:
            values[name] = parse(text)
    return {
        key: OnlineRow(
            {n: values.get(n) for n in names},
            datetime.fromtimestamp(ts, tz=UTC) if ts is not None else None,
        )
        for key, (values, ts) in found.items()
    }


class OnlineFeatures:
    """Feature values by entity key from the online store of `store`.

    Thread-safe: each thread opens its own read-only SQLite connection (the Redis client
    keeps a connection pool). A read waits at most `timeout` seconds for a locked SQLite
    file or a Redis server, then raises StoreUnavailable; so does a read of a file that is
    gone or of a Redis server that is down. A file replaced by another (an atomic swap) is
    reopened on the next read of every thread: all readers see the same store."""

    def __init__(self, store: FeatureStore, timeout: float = 5.0) -> None:
        self._store = store
        self._timeout = timeout
        config = store.config
        self._sqlite = isinstance(config.online_store, SqliteOnlineStoreConfig)
        self._path = Path(SqliteOnlineStore._get_db_path(config)) if self._sqlite else None
        versioning = config.registry.enable_online_feature_view_versioning
        self._views = {v.name: v for v in store.list_feature_views()}
        self._tables = {
            name: compute_table_id(config.project, view, versioning)
            for name, view in self._views.items()
        }
        self._join_keys = {
            name: [store.get_entity(e).join_key for e in view.entities]
            for name, view in self._views.items()
        }
        self._local = threading.local()
        self._redis: Any = None if self._sqlite else redis_store.redis_client(config, timeout)
        self._project = config.project.encode()
        self._redis_names = {
            name: redis_store.view_name(config, view) for name, view in self._views.items()
        }

    def _connection(self) -> sqlite3.Connection:
        """This thread's connection to the file now at the store's path (reopened when the
        path names another file than the one the connection has open)."""
        try:
            info = os.stat(str(self._path))
        except OSError as exc:
            raise StoreUnavailable(f"online store file {self._path} is missing") from exc
        inode = (info.st_dev, info.st_ino)
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None and getattr(self._local, "inode", None) != inode:
            conn.close()
            conn = None
        if conn is None:
            conn = sqlite3.connect(f"file:{self._path}?mode=ro", uri=True, timeout=self._timeout)
            self._local.conn, self._local.inode = conn, inode
        return conn

    def reachable(self) -> bool:
        """True when the online store answers a query for every view."""
        try:
            for view in self._views:
                self.read(view, [("",) * len(self._join_keys[view])], [])
        except Exception:
            return False
        return True

    def read(
        self, view: str, keys: Sequence[tuple[str, ...]], names: Sequence[str]
    ) -> list[OnlineRow | None]:
        """Rows of `view` for entity `keys` (values in the order of the view's join keys):
        None for a key the store does not hold."""
        if view not in self._views:
            raise KeyError(f"feature view '{view}' is not in the Feast registry")
        if not keys:
            return []
        if not self._sqlite:
            return self._read_redis(view, keys, names)
        join_keys = self._join_keys[view]
        encoded = serialize_string_keys(join_keys, [list(col) for col in zip(*keys, strict=True)])
        unique = list(dict.fromkeys(encoded))
        rows: list[tuple[bytes, str, str | None, int | None]] = []
        for start in range(0, len(unique), 500):  # SQLite's limit on bound parameters
            chunk = unique[start : start + 500]
            rows += self._select(view, f"entity_key IN ({','.join('?' * len(chunk))})", chunk)
        found = _fold(((bytes(k), n, t, ts) for k, n, t, ts in rows), names)
        return [found.get(key) for key in encoded]

    def version(self) -> tuple[int, ...] | None:
        """A value that changes whenever the online store is written (a materialize): the
        SQLite file's (and its journal's) inode, size and modification time; on Redis, a
        digest of the materialization record each materialize writes after each view
        (features/store.py `write_state`). None when Redis does not answer."""
        if self._path is None:
            try:
                record = self._redis.hgetall(state_key(self._project.decode()))
            except RedisError:
                return None
            digest = hashlib.sha256(repr(sorted(record.items())).encode()).digest()
            return (int.from_bytes(digest[:8], "little"),)
        stamp: list[int] = []
        for path in (self._path, self._path.with_name(self._path.name + "-wal")):
            try:
                found = os.stat(path)
            except FileNotFoundError:
                stamp += [0, 0, 0]
                continue
            stamp += [found.st_ino, found.st_size, found.st_mtime_ns]
        return tuple(stamp)

    @property
    def can_read_by_prefix(self) -> bool:
        """True when `read_by_first_key` is available (the SQLite online store)."""
        return self._sqlite

    def read_by_first_key(
        self, view: str, value: str, names: Sequence[str]
    ) -> dict[str, OnlineRow]:
        """Every row of a two-key view whose first join key (in Feast's order: by name) is
        `value`, by the second key's value: one range scan of the primary key, e.g. all of a
        customer's customer x offer rows."""
        join_keys = sorted(self._join_keys[view])
        if len(join_keys) != 2 or not self._sqlite:
            raise ValueError(f"{view}: reads by first key need a two-key view on SQLite")
        # The key of (value, "") ends with the empty second value's 8-byte header.
        prefix = serialize_string_keys(join_keys, [[value], [""]])[0][:-8]
        rows = self._select(view, "entity_key > ? AND entity_key < ?", (prefix, prefix + b"\xff"))
        skip = len(prefix) + 8
        return _fold(((bytes(k)[skip:].decode("utf8"), n, t, ts) for k, n, t, ts in rows), names)

    def _select(
        self, view: str, where: str, params: Sequence[bytes]
    ) -> list[tuple[bytes, str, str | None, int | None]]:
        """(entity key, feature name, value as text, event time) rows of a view's table."""
        table = '"' + self._tables[view].replace('"', '""') + '"'
        sql = f"SELECT entity_key, feature_name, value_text, event_ts FROM {table} WHERE {where}"
        try:
            return self._connection().execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:  # locked (after `timeout`), gone, unreadable
            conn, self._local.conn = getattr(self._local, "conn", None), None
            if conn is not None:
                conn.close()
            raise StoreUnavailable(f"online store {self._path}: {exc}") from exc

    def _read_redis(
        self, view: str, keys: Sequence[tuple[str, ...]], names: Sequence[str]
    ) -> list[OnlineRow | None]:
        encoded = serialize_string_keys(
            self._join_keys[view], [list(col) for col in zip(*keys, strict=True)]
        )
        return self._redis_rows(view, [k + self._project for k in encoded], names)

    def _redis_rows(
        self, view: str, keys: Sequence[bytes], names: Sequence[str]
    ) -> list[OnlineRow | None]:
        """Rows of `view` from Redis hashes `keys`: None where the hash has no event time of
        the view (Feast writes one with every row)."""
        fv = self._redis_names[view]
        fields = [redis_store.ts_field(fv)] + [redis_store.feature_field(fv, n) for n in names]
        parsers = [_PARSERS[ALL_FEATURES[n].dtype] for n in names]
        try:
            replies = redis_store.read_hashes(self._redis, keys, fields)
        except RedisError as exc:  # down, unreachable, timed out
            raise StoreUnavailable(f"online store (Redis): {exc}") from exc
        out: list[OnlineRow | None] = []
        for reply in replies:
            stamp, raw = reply[0], reply[1:]
            if stamp is None:
                out.append(None)
                continue
            values: dict[str, Value] = {}
            for name, parse, data in zip(names, parsers, raw, strict=True):
                value = redis_store.decode_value(data)
                values[name] = None if value is None else parse(value)
            out.append(OnlineRow(values, redis_store.decode_timestamp(stamp)))
        return out

    def scan(self, view: str, names: Sequence[str]) -> dict[str, OnlineRow]:
        """Every entity of a single-key view (e.g. all offers), by key value."""
        if len(self._join_keys[view]) != 1:
            raise ValueError(f"{view}: scan reads single-key views only")
        skip = len(serialize_string_keys(self._join_keys[view], [[""]])[0])
        if self._sqlite:
            rows = self._select(view, "1", ())
            found = _fold(
                ((bytes(k)[skip:].decode("utf8"), n, t, ts) for k, n, t, ts in rows), names
            )
            return dict(sorted(found.items()))
        prefix = serialize_string_keys(self._join_keys[view], [[""]])[0][:-8]
        ids: dict[bytes, str] = {}
        try:
            for key in redis_store.scan_keys(self._redis, prefix, self._project.decode()):
                value = key[skip : len(key) - len(self._project)]
                # The value's length header: a key of another project ending with this one's
                # name has a different length.
                if int.from_bytes(key[skip - 4 : skip], "little") == len(value):
                    ids[key] = value.decode("utf8")
        except RedisError as exc:
            raise StoreUnavailable(f"online store (Redis): {exc}") from exc
        read = self._redis_rows(view, list(ids), names)
        held = {i: row for i, row in zip(ids.values(), read, strict=True) if row is not None}
        return dict(sorted(held.items()))
