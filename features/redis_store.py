"""Feast's Redis online store, read and written directly in Feast's own layout.

Feast keeps one Redis hash per entity key: the key is the serialized entity key followed by
the project name; each feature is a field named by the murmur3 hash of "view:feature" holding
the serialized protobuf value, and field "_ts:view" holds the event time (a protobuf
Timestamp). Reading and writing those hashes here, in pipelines, gives the catalog scan and
the event times the API needs, and a fast materialize; tests compare both with Feast's
`get_online_features` and `materialize`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
from feast import FeatureView, RepoConfig
from feast.infra.online_stores.helpers import _mmh3, compute_versioned_name
from feast.infra.online_stores.redis import RedisOnlineStore
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from google.protobuf.timestamp_pb2 import Timestamp
from redis.backoff import NoBackoff
from redis.retry import Retry

# Hashes written per pipeline round trip.
_BATCH = 2000


def redis_client(config: RepoConfig, timeout: float | None = None) -> Any:
    """The redis-py client Feast itself uses for this repo config (same connection string
    parsing: "host:port,db=0,password=..."); with `timeout`, a command or connection that
    takes longer raises redis' TimeoutError at once instead of waiting for ever on a stopped
    server (and without redis-py's default three retries with back-off)."""
    client = RedisOnlineStore()._get_client(config.online_store)
    pool = getattr(client, "connection_pool", None)  # a single server, not a cluster
    if timeout is not None and pool is not None:
        pool.connection_kwargs.update(
            socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0)
        )
    return client


def view_name(config: RepoConfig, view: FeatureView) -> str:
    """The view's name in field names (with its version suffix when versioning is on)."""
    return compute_versioned_name(view, config.registry.enable_online_feature_view_versioning)


def feature_field(view: str, feature: str) -> bytes:
    """The hash field holding one feature of a view."""
    return bytes(_mmh3(f"{view}:{feature}"))


def ts_field(view: str) -> bytes:
    """The hash field holding a view's event time."""
    return f"_ts:{view}".encode()


def decode_value(raw: bytes | None) -> Any:
    """A serialized protobuf Value as a Python value (None when empty or missing)."""
    if not raw:
        return None
    value = ValueProto()
    value.ParseFromString(raw)
    kind = value.WhichOneof("val")
    return None if kind is None or kind == "null_val" else getattr(value, kind)


def decode_timestamp(raw: bytes) -> datetime:
    """A serialized protobuf Timestamp as an aware UTC datetime."""
    stamp = Timestamp()
    stamp.ParseFromString(raw)
    return datetime.fromtimestamp(stamp.seconds + stamp.nanos / 1e9, tz=UTC)


def encode_timestamps(stamps: pd.Series) -> list[bytes]:
    """What Feast stores in "_ts:view" for each event time (each distinct one encoded once)."""
    codes, uniques = pd.factorize(stamps)
    encoded = []
    for stamp in uniques:
        proto = Timestamp()
        proto.FromDatetime(pd.Timestamp(stamp).tz_convert("UTC").to_pydatetime())
        encoded.append(proto.SerializeToString())
    return np.array(encoded, dtype=object)[codes].tolist()


def read_hashes(
    client: Any, keys: Sequence[bytes], fields: Sequence[bytes]
) -> list[list[bytes | None]]:
    """HMGET of `fields` for every key, pipelined."""
    replies: list[list[bytes | None]] = []
    for start in range(0, len(keys), _BATCH):
        with client.pipeline(transaction=False) as pipe:
            for key in keys[start : start + _BATCH]:
                pipe.hmget(key, list(fields))
            replies += pipe.execute()
    return replies


def scan_keys(client: Any, prefix: bytes, project: str) -> Iterator[bytes]:
    """Every hash key that starts with the serialized join-key names `prefix` and ends with
    `project` (a SCAN: the keyspace is walked in steps, without blocking the server)."""
    pattern = _glob_escape(prefix) + b"*" + _glob_escape(project.encode())
    for key in client.scan_iter(match=pattern, count=1000):
        yield bytes(key)


def _glob_escape(raw: bytes) -> bytes:
    special = set(b"*?[]\\")
    return b"".join(b"\\" + bytes([c]) if c in special else bytes([c]) for c in raw)


def delete_view(config: RepoConfig, view: FeatureView) -> None:
    """Remove a view's fields from every hash (Feast's own `delete_table`)."""
    RedisOnlineStore().delete_table(config, view)


def write_hashes(
    client: Any, keys: Sequence[bytes], mappings: Sequence[dict[bytes, bytes]]
) -> None:
    """HSET each mapping into its key, pipelined."""
    for start in range(0, len(keys), _BATCH):
        with client.pipeline(transaction=False) as pipe:
            for key, mapping in zip(
                keys[start : start + _BATCH], mappings[start : start + _BATCH], strict=True
            ):
                pipe.hset(key, mapping=mapping)
            pipe.execute()
