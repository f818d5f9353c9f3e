"""Feature snapshots and labels at a series of cutoffs, built partition by partition.

Customers are split into hash partitions (`features.partitions`); each partition is read and
processed on its own by the same pure functions, in this process one partition at a time or
as Ray tasks (`features.engine`), and the results are the same either way and for any number
of partitions. Population-relative steps (RFM scores, value tiers, BTYD fits, offer
popularity) run on small per-partition summaries combined between two passes.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features.btyd import BTYD_INPUTS, BtydFit, btyd_features, btyd_fits
from features.catalog import Workspace
from features.config import EngineParams, FeatureParams, LabelParams, SegmentParams
from features.contract import CUSTOMER_ATTRIBUTES, NO_PRODUCTS, PRODUCT_COLUMNS, has_products
from features.engine import map_partitions, session
from features.engineering import customer_features_at, prepare_partition
from features.labels import (
    ACCEPTED,
    churn_labels,
    clv_labels,
    is_date_only_at,
    observed_end_at,
    offer_labels,
    times_of_day,
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
    pair_lines,
    resolve_catalog,
)
from features.partitions import PartitionedTables, in_memory, on_disk, part_name
from features.partitions import partition_of as partition_of
from features.progress import stage
from features.publish import publishing
from features.segments import Population, add_segments, population_of

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
    pairs = pair_lines(part, plan.catalog)
    out: dict[str, list[pd.DataFrame]] = {name: [] for name in (*OUTPUTS, "offer_partials")}
    for cutoff in plan.cutoffs:
        feats = customer_features_at(part, cutoff)
        feats.insert(1, EVENT_TIMESTAMP, cutoff)
        affinity = affinity_at(part, cutoff, plan.catalog, plan.affinity_top_offers, pairs)
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


# Pair-level outputs grow with customers x offers; only accepted pairs are labelled.
PAIR_OUTPUTS = ("customer_offer_features", "labels_offer")
# In-memory tables are split so that a partition holds at most about this many lines.
LINES_PER_PARTITION = 2_000_000
# What the population-relative steps need of every customer and cutoff (segments, BTYD).
SUMMARY_COLUMNS = (EVENT_TIMESTAMP, "frequency_365d", "monetary_365d", *BTYD_INPUTS)
# Spilled partition files of a build: the profiled features before the population steps.
PROFILES = "profiles"
SCAN_COLUMNS = ["timestamp", "amount", *PRODUCT_COLUMNS]


@dataclass(frozen=True)
class TxScan:
    """What the plan of a build needs of all transactions, summed over partitions."""

    rows: int
    first: pd.Timestamp | None
    last: pd.Timestamp | None
    times: np.ndarray  # a few distinct times of day (labels.times_of_day)
    spend: pd.DataFrame  # category, timestamp (UTC day), amount: positive line amounts
    categories: tuple[str, ...]
    products: bool  # some line names a product or a category

    def categories_frame(self) -> pd.DataFrame:
        """The categories present as a one-column frame (none: no column)."""
        if not self.categories:
            return pd.DataFrame()
        return pd.DataFrame({"category": list(self.categories)})


def scan_partition(tables: PartitionedTables, index: int) -> TxScan:
    """The `TxScan` of one partition's transactions (only the columns it needs are read)."""
    tx = tables.partition(index, {"transactions": SCAN_COLUMNS})["transactions"]
    spend = pd.DataFrame()  # no categories: no slots
    categories: tuple[str, ...] = ()
    if "category" in tx:
        positive = tx[tx["amount"] > 0]
        spend = (
            pd.DataFrame(
                {
                    "category": positive["category"].astype("string"),
                    "timestamp": positive["timestamp"].dt.floor("D"),
                    "amount": positive["amount"],
                }
            )
            .groupby(["category", "timestamp"], sort=True)["amount"]
            .sum()
            .reset_index()
        )
        categories = tuple(sorted(set(tx["category"].dropna().astype(str))))
    return TxScan(
        rows=len(tx),
        first=tx["timestamp"].min() if len(tx) else None,
        last=tx["timestamp"].max() if len(tx) else None,
        times=times_of_day(tx["timestamp"]),
        spend=spend,
        categories=categories,
        products=has_products(tx),
    )


def combine_scans(scans: Sequence[TxScan]) -> TxScan:
    """The scan of all partitions from the scans of each."""
    full = [s for s in scans if s.rows]
    if not full:
        raise ValueError("no transactions: run `crmscore ingest` on data with transactions")
    spend = pd.concat([s.spend for s in full], ignore_index=True)
    if len(spend):
        spend = spend.groupby(["category", "timestamp"], sort=True)["amount"].sum().reset_index()
    return TxScan(
        rows=sum(s.rows for s in full),
        first=min(s.first for s in full if s.first is not None),
        last=max(s.last for s in full if s.last is not None),
        times=np.unique(np.concatenate([s.times for s in full])),
        spend=spend,
        categories=tuple(sorted({c for s in full for c in s.categories})),
        products=any(s.products for s in full),
    )


@dataclass(frozen=True)
class FirstPass:
    """What a build needs to know to run the first pass over a partition."""

    plan: SnapshotPlan
    tables: PartitionedTables
    spill: Path
    created: pd.Timestamp


@dataclass(frozen=True)
class PartitionSummary:
    """A partition's share of the population steps: a few numbers per customer and cutoff,
    and the offers' partial counts."""

    customers: pd.DataFrame  # SUMMARY_COLUMNS
    offer_partials: pd.DataFrame


def first_pass(job: FirstPass, index: int) -> PartitionSummary | None:
    """Features, profiles and labels of partition `index`, written to the spill folder; the
    partition's summary for the population steps (None: no transactions)."""
    tables = job.tables.partition(index)
    tx = tables["transactions"]
    if tx.empty:
        return None
    result = build_partition(job.plan, tx, tables.get("offer_events"), tables.get("interactions"))
    feats = add_profile(result["customer_features"], tables.get("customers"), tx)
    feats = _sorted(feats, [CUSTOMER_ID])
    _write_part(job.spill, PROFILES, index, feats)
    for name in ("labels_churn", "labels_clv"):
        _write_part(job.spill, name, index, _sorted(result[name], [CUSTOMER_ID]))
    for name in PAIR_OUTPUTS:
        pairs = result[name]
        if len(pairs):
            created = job.created if name == "customer_offer_features" else None
            _write_part(job.spill, name, index, _stamped(pairs, created))
    return PartitionSummary(
        feats[list(SUMMARY_COLUMNS)].reset_index(drop=True), result["offer_partials"]
    )


@dataclass(frozen=True)
class SecondPass:
    """The population every partition is ranked among, and the settings of the steps."""

    spill: Path
    population: Population
    fits: dict[int, BtydFit | None]
    segments: SegmentParams
    active_window_days: int
    churn_horizon_days: int
    clv_days: int  # the horizon the CLV labels are built at
    clv_asked_days: int
    created: pd.Timestamp


def second_pass(job: SecondPass, index: int) -> None:
    """Segments and BTYD features of partition `index` against the whole population: the
    partition's customer_features and customer_btyd, written to the spill folder."""
    path = job.spill / PROFILES / part_name(index)
    if not path.exists():
        return
    snapshot = add_segments(
        pd.read_parquet(path), job.segments, job.active_window_days, job.population
    )
    features = snapshot[[CUSTOMER_ID, EVENT_TIMESTAMP, *CUSTOMER_FEATURES]]
    _write_part(
        job.spill, "customer_features", index, _finish(features, [CUSTOMER_ID], job.created)
    )
    btyd = btyd_features(
        snapshot[[CUSTOMER_ID, EVENT_TIMESTAMP, *BTYD_INPUTS]],
        job.churn_horizon_days,
        job.clv_days,
        job.clv_asked_days,
        fits=job.fits,
    )
    _write_part(job.spill, "customer_btyd", index, _finish(btyd, [CUSTOMER_ID], job.created))


def _write_part(spill: Path, name: str, index: int, frame: pd.DataFrame) -> None:
    folder = spill / name
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(folder / part_name(index), index=False)


def _stamped(frame: pd.DataFrame, created: pd.Timestamp | None) -> pd.DataFrame:
    frame = frame.assign(**{EVENT_TIMESTAMP: pd.to_datetime(frame[EVENT_TIMESTAMP], utc=True)})
    if created is not None:
        frame[CREATED_TIMESTAMP] = created
    return frame.reset_index(drop=True)


def _merge_parts(folder: Path, dest: Path, empty: pd.DataFrame | None) -> int:
    """Copy the partition files of `folder` into one parquet file `dest`, partition after
    partition (one at a time in memory); returns the rows. No file: `empty` is written."""
    files = sorted(folder.glob("*.parquet")) if folder.is_dir() else []
    if not files:
        if empty is None:
            raise ValueError(f"{folder}: no partition wrote this output")
        empty.to_parquet(dest, index=False)
        return 0
    # The largest part's schema first: its column types and pandas metadata win where a
    # part without rows has untyped (null) columns.
    largest = sorted(files, key=lambda f: -pq.read_metadata(f).num_rows)
    schema = pa.unify_schemas([pq.read_schema(f) for f in largest], promote_options="permissive")
    rows = 0
    with pq.ParquetWriter(dest, schema) as writer:
        for file in files:
            table = pq.read_table(file)
            writer.write_table(table.select(schema.names).cast(schema))
            rows += table.num_rows
    return rows


def _plan(
    scan: TxScan,
    features: FeatureParams,
    labels: LabelParams,
    paths: Workspace,
    add_cutoffs: Sequence[date],
    fixed_slots: Sequence[str] | None,
) -> SnapshotPlan:
    """The plan of a build: cutoffs, slots, catalog and the observed period, from the scan."""
    assert scan.first is not None and scan.last is not None
    span = pd.DataFrame({"timestamp": [scan.first, scan.last]})
    cutoffs = build_cutoffs(features, span, paths, add_cutoffs)
    if not cutoffs:
        raise ValueError("no cutoffs: the data is shorter than features.min_history_days")
    observed_until = observed_end_at(scan.last, is_date_only_at(scan.times))
    # CLV labels at the longest horizon the history can train and test (the asked one when
    # it fits); the served CLV is extrapolated to the asked horizon (`btyd_clv_horizon_ratio`).
    clv_days = (
        trainable_horizon(labels.clv_horizon_days, cutoffs, observed_until)
        or labels.clv_horizon_days
    )
    slots = (
        top_categories(scan.spend, cutoffs[0])
        if fixed_slots is None
        else check_slots(fixed_slots, scan.categories_frame())
    )
    return SnapshotPlan(
        cutoffs=tuple(cutoffs),
        category_slots=tuple(slots),
        catalog=resolve_catalog(labels.offer_catalog, scan.categories_frame()),
        observed_from=scan.first,
        observed_until=observed_until,
        labels=labels.model_copy(update={"clv_horizon_days": clv_days}),
        affinity_top_offers=features.affinity_top_offers,
    )


def build_snapshots(
    tables: dict[str, pd.DataFrame] | PartitionedTables,
    features: FeatureParams,
    labels: LabelParams,
    segments: SegmentParams,
    paths: Workspace,
    add_cutoffs: Sequence[date] = (),
    fixed_slots: Sequence[str] | None = None,
    engine: EngineParams | None = None,
) -> dict[str, Any]:
    """Features and labels at every cutoff from canonical tables, written to the workspace's
    snapshots (one file per output in OUTPUTS) with their metadata, which is returned.

    `tables` are the partitioned tables ingest wrote (`features.partitions.on_disk`) or
    frames in memory (split into `features.partitions` partitions, more for many lines).
    Partitions are processed one at a time in this process, or as Ray tasks (`engine`); the
    results do not depend on either. Two passes: each partition's features and labels, then,
    once the population's summaries are combined, each partition's segments and BTYD features.

    `add_cutoffs` are added to the cutoffs of the last build (to the configured ones when
    there is none). `fixed_slots` are the categories of the `category_share_N` features
    when models depend on them (ValueError when the data has none of one of them); else
    the slots are the top categories before the first cutoff.

    Every output is in partition order, each partition's rows sorted by (cutoff, keys)."""
    engine = engine or EngineParams()
    if isinstance(tables, dict):
        lines = len(tables["transactions"])
        tables = in_memory(tables, max(features.partitions, -(-lines // LINES_PER_PARTITION)))
    indexes = range(tables.count)
    created = pd.Timestamp.now(tz="UTC").floor("s")
    with session(engine), publishing(paths.snapshot_versions) as version:
        # Every output and the metadata of this build are published together, or none is.
        staged = paths.staged(paths.snapshot_versions, version)
        spill = version / ".parts"
        with stage(log, "features build: scan the transactions"):
            scan = combine_scans(map_partitions(scan_partition, tables, indexes, engine))
        plan = _plan(scan, features, labels, paths, add_cutoffs, fixed_slots)
        with stage(log, f"features build: {tables.count} partitions, {len(plan.cutoffs)} cutoffs"):
            first = FirstPass(plan, tables, spill, created)
            summaries = [s for s in map_partitions(first_pass, first, indexes, engine) if s]
        with stage(log, "features build: population (segments, BTYD, offers)"):
            customers = pd.concat([s.customers for s in summaries], ignore_index=True)
            population, fits = population_of(customers), btyd_fits(customers)
            del customers
            partials = _concat([s.offer_partials for s in summaries])
            del summaries
        second = SecondPass(
            spill,
            population,
            fits,
            segments,
            labels.active_window_days,
            labels.churn_horizon_days,
            plan.labels.clv_horizon_days,
            labels.clv_horizon_days,
            created,
        )
        with stage(log, "features build: segments and BTYD per partition"):
            map_partitions(second_pass, second, indexes, engine)
        with stage(log, "features build: write the snapshots"):
            rows = {
                name: _merge_parts(
                    spill / name,
                    staged.snapshot(name),
                    empty_output(name) if name in PAIR_OUTPUTS else None,
                )
                for name in OUTPUTS
                if name != "offer_features"
            }
            offers = _offer_features(partials, created)
            offers.to_parquet(staged.snapshot("offer_features"), index=False)
            rows["offer_features"] = len(offers)
            shutil.rmtree(spill)
        return _write_metadata(staged, plan, scan, tables.count, rows)


def _write_metadata(
    paths: Workspace,
    plan: SnapshotPlan,
    scan: TxScan,
    partitions: int,
    rows: dict[str, int],
) -> dict[str, Any]:
    """Write and return the metadata of a build."""
    metadata = {
        "cutoffs": [c.isoformat() for c in plan.cutoffs],
        "category_slots": list(plan.category_slots),
        # None without products: the offer outputs are empty, the offer model is skipped.
        "offer_catalog": plan.catalog if scan.products else None,
        "products": scan.products,
        "observed_from": plan.observed_from.isoformat(),
        "observed_until": plan.observed_until.isoformat(),
        "partitions": partitions,
        # Label horizons the models are trained at, where the history is shorter than asked.
        "trained_horizons": {"clv_horizon_days": plan.labels.clv_horizon_days},
        "rows": {name: rows[name] for name in OUTPUTS},
    }
    paths.snapshots_meta.write_text(json.dumps(metadata, indent=2))
    return metadata


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
    """Canonical tables written by ingest, whole in memory (small data, tests); the feature
    build reads them partition by partition (`partitioned_tables`)."""
    pinned = paths.pinned(paths.data_versions)  # every table of the same ingest
    tables = {p.stem: pd.read_parquet(p) for p in pinned.tables()}
    if "transactions" not in tables:
        raise FileNotFoundError(f"{paths.table('transactions')}: not found; run `crmscore ingest`")
    return tables


def partitioned_tables(paths: Workspace) -> PartitionedTables:
    """The canonical tables of the published ingest, read one partition at a time."""
    return on_disk(paths.pinned(paths.data_versions).data_dir)
