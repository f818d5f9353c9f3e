"""Feature snapshots and labels at a series of cutoffs, built partition by partition.

Customers are split into hash partitions; each partition is processed by the same pure
function (in a process pool here, per partition on a cluster at scale) and the results are
concatenated. Population-relative steps (segments, offer popularity) run on the combined
result, which is small: one row per customer (or offer) and cutoff.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features.btyd import BTYD_INPUTS, btyd_features
from features.catalog import Workspace
from features.config import FeatureParams, LabelParams, SegmentParams
from features.contract import CUSTOMER_ATTRIBUTES, NO_PRODUCTS, has_products
from features.engineering import customer_features_at, prepare_partition
from features.labels import (
    ACCEPTED,
    churn_labels,
    clv_labels,
    observed_end,
    offer_labels,
    trainable_horizon,
)
from features.names import (
    CATEGORY_SLOTS,
    CREATED_TIMESTAMP,
    CUSTOMER_FEATURES,
    CUSTOMER_ID,
    CUSTOMER_OFFER_AFFINITY,
    EVENT_TIMESTAMP,
    HISTORY_OFFERS,
    OFFER_ID,
    OFFER_STATS,
    FeatureDef,
)
from features.offers import (
    affinity_at,
    history_offers,
    offer_lines,
    offer_partials_at,
    offer_stats,
    resolve_catalog,
)
from features.progress import elapsed, stage
from features.publish import publishing
from features.segments import add_segments

log = logging.getLogger(__name__)

OUTPUTS = (
    "customer_features",
    "customer_btyd",
    "offer_features",
    "customer_offer_features",
    "labels_churn",
    "labels_clv",
    "labels_offer",
)


@dataclass(frozen=True)
class SnapshotPlan:
    """What every partition needs to know besides its own rows."""

    cutoffs: tuple[pd.Timestamp, ...]
    category_slots: tuple[str, ...]
    catalog: str
    observed_from: pd.Timestamp
    observed_until: pd.Timestamp
    labels: LabelParams
    affinity_top_offers: int


def monthly_cutoffs(
    first: pd.Timestamp, last: pd.Timestamp, min_history_days: int
) -> list[pd.Timestamp]:
    """First day of each month from `first + min_history_days` up to `last` (UTC midnight)."""
    start = (first + pd.Timedelta(days=min_history_days)).tz_convert("UTC")
    start = start.normalize() + pd.offsets.MonthBegin(0)
    end = last.tz_convert("UTC")
    return list(pd.date_range(start, end, freq="MS", tz="UTC"))


def resolve_cutoffs(
    spec: str | list[date], transactions: pd.DataFrame, min_history_days: int
) -> list[pd.Timestamp]:
    """Cutoffs from settings: 'monthly' over the data, or an explicit list of dates."""
    if spec == "monthly":
        return monthly_cutoffs(
            transactions["timestamp"].min(), transactions["timestamp"].max(), min_history_days
        )
    return sorted(pd.Timestamp(d).tz_localize("UTC") for d in spec)


def build_cutoffs(
    features: FeatureParams, tx: pd.DataFrame, paths: Workspace, add: Sequence[date]
) -> list[pd.Timestamp]:
    """The cutoffs of a build: the configured ones, or with `add` those of the last build
    (the configured ones when there is none) and the added ones."""
    if add and paths.snapshots_meta.exists():
        base = [pd.Timestamp(c) for c in snapshots_meta(paths)["cutoffs"]]
    else:
        base = resolve_cutoffs(features.cutoffs, tx, features.min_history_days)
    extra = [pd.Timestamp(d).tz_localize("UTC") for d in add]
    return sorted({c.tz_convert("UTC") for c in [*base, *extra]})


def check_slots(slots: Sequence[str], tx: pd.DataFrame) -> list[str]:
    """The category slots registered models depend on, when the data still has each of
    their categories (ValueError naming the missing ones otherwise)."""
    present = set(tx["category"].dropna().astype(str)) if "category" in tx else set()
    missing = [s for s in slots if s not in present]
    if missing:
        raise ValueError(
            f"the category_share_N features of the registered models mean {list(slots)}, and "
            f"the data has no {missing}: those features would change meaning. Build this data "
            "in a new workspace (`crmscore --workspace NEW_DIR ingest`, then `features build`)"
        )
    return list(slots)


def top_categories(transactions: pd.DataFrame, before: pd.Timestamp) -> list[str]:
    """Categories with the most spend before the first cutoff: the category-share slots."""
    if "category" not in transactions:
        return []
    early = transactions[(transactions["timestamp"] < before) & (transactions["amount"] > 0)]
    spend = early.groupby("category", observed=True)["amount"].sum()
    return list(spend.sort_values(ascending=False, kind="stable").index[:CATEGORY_SLOTS])


def partition_of(customer_ids: pd.Series, partitions: int) -> np.ndarray:
    """Stable hash partition of each customer id."""
    hashed = pd.util.hash_pandas_object(customer_ids.astype("string"), index=False)
    return (hashed.to_numpy() % np.uint64(partitions)).astype(np.int64)


def build_partition(
    plan: SnapshotPlan,
    transactions: pd.DataFrame,
    offer_events: pd.DataFrame | None,
    interactions: pd.DataFrame | None,
) -> dict[str, pd.DataFrame]:
    """All snapshots and labels of one partition of customers, at every cutoff."""
    part = prepare_partition(
        transactions, list(plan.category_slots), plan.observed_from, offer_events, interactions
    )
    codes, ids = offer_lines(part, plan.catalog)
    out: dict[str, list[pd.DataFrame]] = {name: [] for name in (*OUTPUTS, "offer_partials")}
    for cutoff in plan.cutoffs:
        feats = customer_features_at(part, cutoff)
        feats.insert(1, EVENT_TIMESTAMP, cutoff)
        affinity = affinity_at(part, cutoff, plan.catalog, plan.affinity_top_offers)
        feats[HISTORY_OFFERS] = history_offers(feats[CUSTOMER_ID], affinity)
        out["customer_features"].append(feats)
        out["customer_offer_features"].append(affinity)
        out["offer_partials"].append(offer_partials_at(part, cutoff, plan.catalog))
        out["labels_churn"].append(churn_labels(part, cutoff, plan.labels, plan.observed_until))
        out["labels_clv"].append(clv_labels(part, cutoff, plan.labels, plan.observed_until))
        out["labels_offer"].append(
            offer_labels(part, cutoff, plan.labels, plan.observed_until, codes, ids)
        )
    return {name: _concat(frames) for name, frames in out.items() if frames}


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    non_empty = [f for f in frames if len(f)]
    return pd.concat(non_empty, ignore_index=True) if non_empty else frames[0]


def _split(frame: pd.DataFrame | None, parts: np.ndarray | None, index: int) -> pd.DataFrame | None:
    if frame is None or parts is None:
        return None
    return frame[parts == index]


_DTYPES = {"float": "float64", "int": "int64", "string": "string"}


def empty_output(name: str) -> pd.DataFrame:
    """No rows of an offer output, with every column typed as when it has rows: what the
    offer outputs hold for data without products (Feast reads their schema all the same)."""
    stamp = "datetime64[ns, UTC]"
    keys: dict[str, str] = {OFFER_ID: "string"}
    defs: tuple[FeatureDef, ...] = OFFER_STATS
    if name == "customer_offer_features":
        keys, defs = {CUSTOMER_ID: "string", OFFER_ID: "string"}, CUSTOMER_OFFER_AFFINITY
    elif name == "labels_offer":
        return pd.DataFrame(
            {
                CUSTOMER_ID: pd.Series(dtype="string"),
                OFFER_ID: pd.Series(dtype="string"),
                EVENT_TIMESTAMP: pd.Series(dtype=stamp),
                ACCEPTED: pd.Series(dtype="int64"),
            }
        )
    elif name != "offer_features":
        raise ValueError(f"{name}: not an offer output")
    columns = {k: pd.Series(dtype=t) for k, t in keys.items()}
    columns[EVENT_TIMESTAMP] = pd.Series(dtype=stamp)
    columns.update({f.name: pd.Series(dtype=_DTYPES[f.dtype]) for f in defs})
    columns[CREATED_TIMESTAMP] = pd.Series(dtype=stamp)
    return pd.DataFrame(columns)


# Pair-level outputs grow with customers x offers: each partition's rows are streamed to disk.
PAIR_OUTPUTS = ("customer_offer_features", "labels_offer")
LINES_PER_PARTITION = 2_000_000


class _PairWriter:
    """Appends partitions' frames to one parquet file (of a version being written)."""

    def __init__(self, path: Path, created: pd.Timestamp | None) -> None:
        self.path, self.created = path, created
        self.writer: pq.ParquetWriter | None = None
        self.rows = 0

    def write(self, frame: pd.DataFrame) -> None:
        if len(frame) == 0:
            return
        frame = frame.assign(**{EVENT_TIMESTAMP: pd.to_datetime(frame[EVENT_TIMESTAMP], utc=True)})
        if self.created is not None:
            frame[CREATED_TIMESTAMP] = self.created
        table = pa.Table.from_pandas(frame, preserve_index=False)
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.path, table.schema)
        self.writer.write_table(table.cast(self.writer.schema))
        self.rows += len(frame)

    def close(self, empty: pd.DataFrame) -> None:
        if self.writer is None:  # no rows at all: still write the typed columns
            empty.to_parquet(self.path, index=False)
        else:
            self.writer.close()


def _run(jobs: Iterator[tuple[Any, ...]], workers: int) -> Iterator[dict[str, pd.DataFrame]]:
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            yield from pool.map(build_partition, *zip(*jobs, strict=True))
    else:
        for job in jobs:
            yield build_partition(*job)


def build_snapshots(
    tables: dict[str, pd.DataFrame],
    features: FeatureParams,
    labels: LabelParams,
    segments: SegmentParams,
    paths: Workspace,
    workers: int = 1,
    add_cutoffs: Sequence[date] = (),
    fixed_slots: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Features and labels at every cutoff from canonical tables, written to the workspace's
    snapshots (one file per output in OUTPUTS) with their metadata, which is returned.

    `add_cutoffs` are added to the cutoffs of the last build (to the configured ones when
    there is none). `fixed_slots` are the categories of the `category_share_N` features
    when models depend on them (ValueError when the data has none of one of them); else
    the slots are the top categories before the first cutoff.

    Customer-level outputs are sorted by (cutoff, keys); pair-level outputs are in partition
    order (deterministic for a given number of partitions)."""
    tx = tables["transactions"]
    cutoffs = build_cutoffs(features, tx, paths, add_cutoffs)
    if not cutoffs:
        raise ValueError("no cutoffs: the data is shorter than features.min_history_days")
    observed_until = observed_end(tx["timestamp"])
    # CLV labels at the longest horizon the history can train and test (the asked one when
    # it fits); the served CLV is extrapolated to the asked horizon (`btyd_clv_horizon_ratio`).
    clv_days = (
        trainable_horizon(labels.clv_horizon_days, cutoffs, observed_until)
        or labels.clv_horizon_days
    )
    plan = SnapshotPlan(
        cutoffs=tuple(cutoffs),
        category_slots=tuple(
            top_categories(tx, cutoffs[0]) if fixed_slots is None else check_slots(fixed_slots, tx)
        ),
        catalog=resolve_catalog(labels.offer_catalog, tx),
        observed_from=tx["timestamp"].min(),
        observed_until=observed_until,
        labels=labels.model_copy(update={"clv_horizon_days": clv_days}),
        affinity_top_offers=features.affinity_top_offers,
    )
    n = max(1, features.partitions, -(-len(tx) // LINES_PER_PARTITION))
    tx_parts = partition_of(tx[CUSTOMER_ID], n)
    events, inter = tables.get("offer_events"), tables.get("interactions")
    ev_parts = partition_of(events[CUSTOMER_ID], n) if events is not None else None
    in_parts = partition_of(inter[CUSTOMER_ID], n) if inter is not None else None
    # A generator: in-process, only one partition's copy of the rows exists at a time.
    jobs = (
        (plan, tx[tx_parts == i], _split(events, ev_parts, i), _split(inter, in_parts, i))
        for i in range(n)
        if (tx_parts == i).any()
    )
    created = pd.Timestamp.now(tz="UTC").floor("s")
    # Every output and the metadata of this build are published together, or none is.
    with publishing(paths.snapshot_versions) as version:
        staged = paths.staged(paths.snapshot_versions, version)
        return _write_outputs(tables, plan, jobs, n, created, labels, segments, workers, staged)


def _write_outputs(
    tables: dict[str, pd.DataFrame],
    plan: SnapshotPlan,
    jobs: Iterator[tuple[Any, ...]],
    n: int,
    created: pd.Timestamp,
    labels: LabelParams,
    segments: SegmentParams,
    workers: int,
    paths: Workspace,
) -> dict[str, Any]:
    """Run the partition jobs and write every output and the metadata to `paths` (a staged
    version of the snapshots); returns the metadata. `labels` are the asked label settings
    (the plan's carry the CLV horizon the history can train)."""
    tx, cutoffs, clv_days = tables["transactions"], plan.cutoffs, plan.labels.clv_horizon_days
    writers = {
        "customer_offer_features": _PairWriter(paths.snapshot("customer_offer_features"), created),
        "labels_offer": _PairWriter(paths.snapshot("labels_offer"), None),
    }
    kept: dict[str, list[pd.DataFrame]] = {}
    started = time.perf_counter()
    for done, result in enumerate(_run(jobs, workers), start=1):
        log.info(
            "features build: partition %d/%d, %d cutoffs (%s)",
            done,
            n,
            len(cutoffs),
            elapsed(started),
        )
        started = time.perf_counter()
        for name, frame in result.items():
            if name in writers:
                writers[name].write(frame)
            else:
                kept.setdefault(name, []).append(frame)
    for name, writer in writers.items():
        writer.close(empty_output(name))
    merged = {name: _concat(frames) for name, frames in kept.items()}
    with stage(log, "features build: profiles, segments and BTYD"):
        outputs = _customer_outputs(tables, merged, created, labels, segments, clv_days)
    with stage(log, "features build: write the snapshots"):
        for name, frame in outputs.items():
            frame.to_parquet(paths.snapshot(name), index=False)
    products = has_products(tx)
    metadata = {
        "cutoffs": [c.isoformat() for c in cutoffs],
        "category_slots": list(plan.category_slots),
        # None without products: the offer outputs are empty, the offer model is skipped.
        "offer_catalog": plan.catalog if products else None,
        "products": products,
        "observed_from": plan.observed_from.isoformat(),
        "observed_until": plan.observed_until.isoformat(),
        "partitions": n,
        # Label horizons the models are trained at, where the history is shorter than asked.
        "trained_horizons": {"clv_horizon_days": clv_days},
        "rows": {
            **{name: len(frame) for name, frame in outputs.items()},
            **{name: w.rows for name, w in writers.items()},
        },
    }
    paths.snapshots_meta.write_text(json.dumps(metadata, indent=2))
    return metadata


def _customer_outputs(
    tables: dict[str, pd.DataFrame],
    merged: dict[str, pd.DataFrame],
    created: pd.Timestamp,
    labels: LabelParams,
    segments: SegmentParams,
    clv_days: int,
) -> dict[str, pd.DataFrame]:
    """The customer-level outputs from the partitions' merged results: profiles, segments,
    BTYD features, offer statistics and the customer labels."""
    snapshot = add_profile(
        merged["customer_features"], tables.get("customers"), tables["transactions"]
    )
    snapshot = add_segments(snapshot, segments, labels.active_window_days)
    outputs = {
        "customer_features": _finish(
            snapshot[[CUSTOMER_ID, EVENT_TIMESTAMP, *CUSTOMER_FEATURES]], [CUSTOMER_ID], created
        ),
        "customer_btyd": _finish(
            btyd_features(
                snapshot[[CUSTOMER_ID, EVENT_TIMESTAMP, *BTYD_INPUTS]],
                labels.churn_horizon_days,
                clv_days,
                labels.clv_horizon_days,
            ),
            [CUSTOMER_ID],
            created,
        ),
        "offer_features": _offer_features(merged["offer_partials"], created),
        "labels_churn": _sorted(merged["labels_churn"], [CUSTOMER_ID]),
        "labels_clv": _sorted(merged["labels_clv"], [CUSTOMER_ID]),
    }
    return outputs


def read_snapshots(paths: Workspace) -> dict[str, pd.DataFrame]:
    """Every output written by `build_snapshots`, all of the same build."""
    pinned = paths.pinned(paths.snapshot_versions)
    return {name: pd.read_parquet(pinned.snapshot(name)) for name in OUTPUTS}


def trained_horizon(paths: Workspace, setting: str, asked: int) -> int:
    """The horizon (days) a model's labels were built at: the asked one (the `labels`
    `setting`), or shorter when the history was (`trainable_horizon`)."""
    found = snapshots_meta(paths).get("trained_horizons", {}).get(setting, asked)
    return int(found)


def snapshots_meta(paths: Workspace) -> dict[str, Any]:
    """The metadata of the last feature build (cutoffs, catalog, rows)."""
    if not paths.snapshots_meta.exists():
        raise FileNotFoundError(f"{paths.snapshots_meta}: not found; run `crmscore features build`")
    return dict(json.loads(paths.snapshots_meta.read_text()))


def history_days(paths: Workspace, at: pd.Timestamp) -> int | None:
    """Whole days of data before `at` (from the first event the last feature build saw);
    None when no build has recorded it."""
    if not paths.snapshots_meta.exists():
        return None
    start = snapshots_meta(paths).get("observed_from")
    if not start:
        return None
    first = pd.Timestamp(start)
    first = first.tz_localize("UTC") if first.tzinfo is None else first
    at = at.tz_localize("UTC") if at.tzinfo is None else at
    return int((at - first) / pd.Timedelta(days=1))


def offers_skipped(paths: Workspace) -> str | None:
    """Why the last feature build has no offers (data without products), in words; None when
    it has them (or no build has recorded it)."""
    if not paths.snapshots_meta.exists():
        return None
    return None if snapshots_meta(paths).get("products", True) else NO_PRODUCTS


def add_profile(
    snapshot: pd.DataFrame,
    customers: pd.DataFrame | None,
    transactions: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Customer attributes as of each row's cutoff, joined onto the snapshot.

    An attribute the transaction lines carry (e.g. the country of each invoice line) takes,
    at each cutoff, the last value seen on a line before it: a later change (or a correction
    of later lines) does not reach earlier snapshots. Before a customer's first line with a
    value it is missing. Other attributes, and customers whose lines never carry one, take
    the customers table's value (a customers file has no dates: static)."""
    attrs = pd.DataFrame({CUSTOMER_ID: pd.Series(dtype="string")})
    if customers is not None:
        attrs = customers[[CUSTOMER_ID, *[a for a in CUSTOMER_ATTRIBUTES if a in customers]]]
    out = snapshot.merge(attrs, on=CUSTOMER_ID, how="left")
    for attr in CUSTOMER_ATTRIBUTES:
        out[attr] = (
            out[attr].astype("string")
            if attr in out
            else pd.Series(pd.NA, index=out.index, dtype="string")
        )
        if transactions is not None and attr in transactions:
            seen = transactions.loc[transactions[attr].notna(), [CUSTOMER_ID, "timestamp", attr]]
            carried = out[CUSTOMER_ID].isin(seen[CUSTOMER_ID]).to_numpy()
            as_of = attribute_as_of(out[[CUSTOMER_ID, EVENT_TIMESTAMP]], seen, attr)
            out[attr] = as_of.where(carried, out[attr])
    return out


def attribute_as_of(keys: pd.DataFrame, lines: pd.DataFrame, attr: str) -> pd.Series:
    """For each (customer_id, event_timestamp) row of `keys`, the value of `attr` on the
    customer's last line of `lines` (customer_id, timestamp, attr) strictly before the
    event time; missing when there is none. Aligned with `keys`' index."""
    ns: Literal["datetime64[ns, UTC]"] = "datetime64[ns, UTC]"
    right = pd.DataFrame(
        {
            CUSTOMER_ID: lines[CUSTOMER_ID].astype(str).to_numpy(),
            EVENT_TIMESTAMP: pd.DatetimeIndex(pd.to_datetime(lines["timestamp"], utc=True)).astype(
                ns
            ),
            attr: lines[attr].astype("string").to_numpy(),
        }
    ).sort_values([CUSTOMER_ID, EVENT_TIMESTAMP], kind="stable")
    # Only the lines where the value changes matter: far fewer rows to search.
    changed = right[attr].ne(right[attr].shift()) | right[CUSTOMER_ID].ne(
        right[CUSTOMER_ID].shift()
    )
    right = right.loc[changed, [CUSTOMER_ID, EVENT_TIMESTAMP, attr]].sort_values(
        EVENT_TIMESTAMP, kind="stable"
    )
    left = pd.DataFrame(
        {
            CUSTOMER_ID: keys[CUSTOMER_ID].astype(str).to_numpy(),
            EVENT_TIMESTAMP: pd.DatetimeIndex(
                pd.to_datetime(keys[EVENT_TIMESTAMP], utc=True)
            ).astype(ns),
            "_row": np.arange(len(keys)),
        }
    ).sort_values(EVENT_TIMESTAMP, kind="stable")
    found = pd.merge_asof(
        left,
        right,
        on=EVENT_TIMESTAMP,
        by=CUSTOMER_ID,
        allow_exact_matches=False,  # features use events strictly before the cutoff
        direction="backward",
    ).sort_values("_row")
    return pd.Series(found[attr].to_numpy(), index=keys.index, dtype="string")


def _offer_features(partials: pd.DataFrame, created: pd.Timestamp) -> pd.DataFrame:
    stats = offer_stats(partials)
    if stats.empty:
        return empty_output("offer_features")
    return _finish(stats, [OFFER_ID], created)


def _sorted(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    return frame.sort_values([EVENT_TIMESTAMP, *keys], kind="stable").reset_index(drop=True)


def _finish(frame: pd.DataFrame, keys: list[str], created: pd.Timestamp) -> pd.DataFrame:
    out = _sorted(frame, keys)
    out[EVENT_TIMESTAMP] = pd.to_datetime(out[EVENT_TIMESTAMP], utc=True)
    out[CREATED_TIMESTAMP] = created
    return out


def read_tables(paths: Workspace) -> dict[str, pd.DataFrame]:
    """Canonical tables written by ingest."""
    pinned = paths.pinned(paths.data_versions)  # every table of the same ingest
    tables = {p.stem: pd.read_parquet(p) for p in pinned.tables()}
    if "transactions" not in tables:
        raise FileNotFoundError(f"{paths.table('transactions')}: not found; run `crmscore ingest`")
    return tables
