"""Reading the Feast online store for real-time scoring.

On SQLite (the embedded default) rows are read with indexed SELECTs from the tables Feast
writes, using the `value_text` column Feast stores beside each protobuf value:
no registry look-up, protobuf decoding or response building per request. Tests check that it
returns what Feast's `get_online_features` returns. Other online stores (Redis) go through
`get_online_features`.
"""

from __future__ import annotations

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

from features.names import ALL_FEATURES
from features.store import serialize_string_keys

Value = float | int | str | None
Key = TypeVar("Key", bytes, str)


@dataclass(frozen=True)
class OnlineRow:
    """One entity's feature values and the event time of the snapshot they come from."""

    values: dict[str, Value]
    event_timestamp: datetime | None


_PARSERS = {"float": float, "int": int, "string": str}


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

    Thread-safe: each thread opens its own read-only SQLite connection."""

    def __init__(self, store: FeatureStore) -> None:
        self._store = store
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

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(f"file:{self._path}?mode=ro", uri=True, timeout=5)
            self._local.conn = conn
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
            return self._read_feast(view, keys, names)
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
        SQLite file's (and its journal's) inode, size and modification time; None for other
        stores, which cannot tell."""
        if self._path is None:
            return None
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
        return self._connection().execute(sql, params).fetchall()

    def _read_feast(
        self, view: str, keys: Sequence[tuple[str, ...]], names: Sequence[str]
    ) -> list[OnlineRow | None]:
        join_keys = self._join_keys[view]
        refs = [f"{view}:{n}" for n in names] or [f"{view}:{self._views[view].features[0].name}"]
        rows = [dict(zip(join_keys, k, strict=True)) for k in keys]
        answer: dict[str, list[Any]] = self._store.get_online_features(
            features=refs, entity_rows=rows
        ).to_dict()
        out: list[OnlineRow | None] = []
        for i in range(len(keys)):
            values = {n: answer[n][i] for n in names}
            present = any(v is not None for v in values.values()) or not names
            out.append(OnlineRow(values, None) if present else None)
        return out

    def scan(self, view: str, names: Sequence[str]) -> dict[str, OnlineRow]:
        """Every entity of a single-key view (e.g. all offers), by key value."""
        if len(self._join_keys[view]) != 1:
            raise ValueError(f"{view}: scan reads single-key views only")
        if not self._sqlite:
            raise NotImplementedError("scan needs the SQLite online store")
        skip = len(serialize_string_keys(self._join_keys[view], [[""]])[0])
        rows = self._select(view, "1", ())
        found = _fold(((bytes(k)[skip:].decode("utf8"), n, t, ts) for k, n, t, ts in rows), names)
        return dict(sorted(found.items()))
