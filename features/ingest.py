"""Ingestion: raw exports -> validated canonical tables, a rejects file and a report.

Every input row ends in exactly one place: the canonical table (accepted), the rejects file
(with the file, row, field, reason and what was expected) or the duplicate count (a line
repeated across sources). `input_rows == accepted_rows + rejected_rows + duplicate_rows`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from features.catalog import Workspace
from features.config import DatasetConfig, LookupConfig, SourceConfig, TableConfig, mapped
from features.contract import (
    CUSTOMER_ATTRIBUTES,
    CUSTOMERS,
    OFFER_EVENT_TYPES,
    TABLES,
    TableSpec,
    has_products,
)
from features.dates import DateFormatError, guess_date_format
from features.partitions import part_name, partition_of
from features.progress import stage
from features.publish import publishing, write_atomic
from features.readers import (
    CHUNK_BYTES,
    IngestError,
    RawTable,
    arrow_strings,
    is_text,
    read_chunks,
    read_raw,
)

SOURCE_COL = "_source"
ROW_COL = "_row"
REJECT_COLUMNS = ["table", "source", "row", "field", "reason", "expected", "value"]

log = logging.getLogger(__name__)

__all__ = [
    "IngestError",
    "TableReport",
    "customer_day_orders",
    "customers_table",
    "ingest",
    "partition_count",
    "resolve_location",
    "source_pieces",
]


@dataclass
class TableReport:
    """Row accounting for one canonical table."""

    input_rows: int = 0
    accepted_rows: int = 0
    duplicate_rows: int = 0
    rejected_rows: dict[str, int] = field(default_factory=dict)
    sources: list[dict[str, Any]] = field(default_factory=list)
    derived: dict[str, str] = field(default_factory=dict)  # column -> how it was derived

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form, with the rejected total next to the per-reason counts."""
        return {
            "input_rows": self.input_rows,
            "accepted_rows": self.accepted_rows,
            "rejected_rows": sum(self.rejected_rows.values()),
            "rejected_by_reason": dict(sorted(self.rejected_rows.items())),
            "duplicate_rows": self.duplicate_rows,
            "sources": self.sources,
            **({"derived": self.derived} if self.derived else {}),
        }


def resolve_location(location: str | None, package: str | None, base_dir: Path) -> Path:
    """Path of a source file: a package resource, or a path relative to `base_dir`."""
    if package is not None:
        pkg, _, inner = package.partition("/")
        return Path(str(resources.files(pkg).joinpath(inner)))
    assert location is not None
    path = Path(os.path.expandvars(location)).expanduser()
    return path if path.is_absolute() else base_dir / path


def _first_non_empty(frame: pd.DataFrame, names: list[str]) -> pd.Series:
    out = frame[names[0]]
    for name in names[1:]:
        out = out.where(out.notna() & (out.astype("string") != ""), frame[name])
    return out


def _map_columns(raw: pd.DataFrame, columns: dict[str, str | list[str]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            canonical: raw[src] if isinstance(src, str) else _first_non_empty(raw, src)
            for canonical, src in columns.items()
        },
        index=raw.index,
    )


def _lookup_side(lookup: LookupConfig, base_dir: Path) -> pd.DataFrame:
    """A lookup file's mapped columns, indexed by its normalised key (first row per key)."""
    path = resolve_location(lookup.path, lookup.package, base_dir)
    side = read_raw(path, list({lookup.key, *mapped(lookup.columns)}), lookup).frame
    side = _map_columns(side, lookup.columns).assign(_key=_normalise_id(side[lookup.key]))
    return side.drop_duplicates("_key").set_index("_key")


def _apply_lookup(frame: pd.DataFrame, lookup: LookupConfig, side: pd.DataFrame) -> pd.DataFrame:
    keys = _normalise_id(frame[lookup.by])
    for canonical in lookup.columns:
        frame[canonical] = keys.map(side[canonical]).astype(side[canonical].dtype)
    return frame


def _source_frame(
    raw: RawTable, source: SourceConfig, sides: list[pd.DataFrame], index: int
) -> pd.DataFrame:
    """Rows of a source (or a piece of it) as canonical columns (still raw values) plus
    provenance; `sides` are its lookups' tables (`_lookup_side`)."""
    frame = _map_columns(raw.frame, source.columns)
    for name, value in source.constants.items():
        frame[name] = value
    for lookup, side in zip(source.lookups, sides, strict=True):
        frame = _apply_lookup(frame, lookup, side)
    frame[SOURCE_COL] = np.int16(index)
    # Rows as a person finds them: lines of a text file (the header is a line), parquet rows.
    frame[ROW_COL] = raw.rows
    return frame


def source_pieces(
    source: SourceConfig, base_dir: Path, index: int, chunk_bytes: int = CHUNK_BYTES
) -> Iterator[pd.DataFrame]:
    """A source as frames of canonical columns plus provenance, piece by piece in file
    order (`features.readers.read_chunks`)."""
    path = resolve_location(source.path, source.package, base_dir)
    sides = [_lookup_side(lookup, base_dir) for lookup in source.lookups]
    for raw in read_chunks(path, mapped(source.columns), source, chunk_bytes):
        yield _source_frame(raw, source, sides, index)


def _normalise_id(values: pd.Series) -> pd.Series:
    """Ids as trimmed strings; integers stored as floats ('17850.0') lose the '.0'."""
    if pd.api.types.is_integer_dtype(values):
        return values.astype("string[pyarrow]")
    if pd.api.types.is_float_dtype(values):
        as_int = values.round().astype("Int64")
        text = as_int.astype("string").where(values == values.round(), values.astype("string"))
    else:
        text = values.astype("string[pyarrow]")
    # pyarrow compute: pandas' .str.replace with a group reference loops in Python.
    arrow = pa.array(text.astype("string[pyarrow]").array).cast(pa.string())
    arrow = pc.utf8_trim_whitespace(arrow)
    arrow = pc.replace_substring_regex(arrow, pattern=r"^(-?\d+)\.0+$", replacement=r"\1")
    arrow = pc.if_else(pc.equal(arrow, ""), pa.scalar(None, pa.string()), arrow)
    return pd.Series(pd.arrays.ArrowStringArray(arrow), index=values.index)


@dataclass
class _Rejects:
    """Collects rejected rows of one table: first failing rule wins."""

    frame: pd.DataFrame
    mask: np.ndarray = field(init=False)
    parts: list[pd.DataFrame] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.mask = np.zeros(len(self.frame), dtype=bool)

    def add(
        self, bad: np.ndarray, fld: str, reason: str, expected: str | np.ndarray, raw: pd.Series
    ) -> None:
        """Reject the rows of `bad` not rejected yet; `expected` is one text or one per row."""
        new = bad & ~self.mask
        if not new.any():
            return
        self.mask |= new
        self.parts.append(
            pd.DataFrame(
                {
                    SOURCE_COL: self.frame[SOURCE_COL].to_numpy()[new],
                    "row": self.frame[ROW_COL].to_numpy()[new],
                    "field": fld,
                    "reason": reason,
                    "expected": expected if isinstance(expected, str) else expected[new],
                    "value": raw.astype("string").to_numpy()[new],
                }
            )
        )


@dataclass(frozen=True)
class _ParseFailure:
    column: str
    expected: str | np.ndarray  # one text, or one per row when sources differ
    mask: np.ndarray
    raw: pd.Series


def _parse(
    frame: pd.DataFrame, spec: TableSpec, cfg: TableConfig, tz: str, formats: DateFormats
) -> tuple[pd.DataFrame, list[_ParseFailure]]:
    """Convert raw values to canonical types; report the values that do not parse.
    `formats`: the date format of each (source, column) decided from all its values."""
    out = pd.DataFrame(index=frame.index)
    failures = []
    sources = frame[SOURCE_COL].to_numpy()
    for column in frame.columns:
        # Outside the contract: customer attributes (strings) or inputs of `derive` (numbers).
        ctype = spec.column_type(column) or ("string" if column in CUSTOMER_ATTRIBUTES else "float")
        raw = frame[column]
        if column in (SOURCE_COL, ROW_COL):
            out[column] = raw
            continue
        if ctype == "float":
            out[column] = pd.to_numeric(_decimal_points(raw, sources, cfg), errors="coerce")
            out[column] = out[column].astype("float64")
            expected: str | np.ndarray = "a number"
        elif ctype == "timestamp":
            out[column], expected = _parse_times(raw, sources, cfg, tz, column, formats)
        else:  # strings, ids and customer attributes
            out[column] = _normalise_id(raw)
            continue
        failures.append(
            _ParseFailure(column, expected, (out[column].isna() & raw.notna()).to_numpy(), raw)
        )
    return out, [f for f in failures if f.mask.any()]


def _decimal_points(raw: pd.Series, sources: np.ndarray, cfg: TableConfig) -> pd.Series:
    """Number texts of sources with a decimal comma or thousands separators, rewritten as
    plain numbers ('1.234,5' -> '1234.5'); other values unchanged."""
    if not pd.api.types.is_string_dtype(raw):
        return raw
    out = raw
    for index, source in enumerate(cfg.sources):
        if source.decimal == "." and source.thousands is None:
            continue
        text = raw
        if source.thousands is not None:
            text = text.str.replace(source.thousands, "", regex=False)
        text = text.str.replace(source.decimal, ".", regex=False)
        out = out.where(sources != index, text)
    return out


# The date format of each (source index, canonical column), where the table has none.
DateFormats = dict[tuple[int, str], str | None]


def _parse_times(
    raw: pd.Series,
    sources: np.ndarray,
    cfg: TableConfig,
    tz: str,
    column: str,
    formats: DateFormats,
) -> tuple[pd.Series, str | np.ndarray]:
    """Parse a timestamp column with the table's `timestamp_format`, or else with each
    source's format decided from all its values (`date_formats`); also what was expected."""
    if cfg.timestamp_format or not pd.api.types.is_string_dtype(raw):
        fmt = cfg.timestamp_format
        return _parse_time(raw, fmt, tz), f"a date-time{f' as {fmt}' if fmt else ''}"
    parsed = pd.Series(pd.NaT, index=raw.index, dtype="datetime64[us, UTC]")
    expected = np.empty(len(raw), dtype=object)
    for index in range(len(cfg.sources)):
        rows = sources == index
        if not rows.any():
            continue
        fmt = formats.get((index, column))
        parsed[rows] = _parse_time(raw[rows], fmt, tz)
        expected[rows] = f"a date-time{f' as {fmt}' if fmt else ''}"
    if not len(raw):
        return parsed, "a date-time"
    return parsed, expected[0] if len(set(expected)) == 1 else expected


class _DistinctTimes:
    """The distinct date-time texts of each (source, column) in order of first appearance,
    gathered piece by piece: what `guess_date_format` decides a format from."""

    def __init__(self) -> None:
        self.values: dict[tuple[int, str], pd.Series] = {}

    def add(self, frame: pd.DataFrame, spec: TableSpec, cfg: TableConfig, index: int) -> None:
        if cfg.timestamp_format:
            return
        for column in frame.columns:
            raw = frame[column]
            if spec.column_type(column) != "timestamp" or not pd.api.types.is_string_dtype(raw):
                continue
            seen = self.values.get((index, column), pd.Series([], dtype=object))
            new = pd.Series(raw.dropna().astype(str).unique(), dtype=object)
            self.values[(index, column)] = pd.Series(pd.concat([seen, new]).unique(), dtype=object)

    def formats(self, cfg: TableConfig) -> DateFormats:
        """Each column's format (IngestError naming the file and column when undecidable)."""
        out: DateFormats = {}
        for (index, column), values in self.values.items():
            source = cfg.sources[index]
            where = f"{source.location()}: column {source.columns.get(column, column)!r} ({column})"
            try:
                guess = guess_date_format(values, where)
            except DateFormatError as exc:
                raise IngestError(str(exc)) from None
            out[(index, column)] = guess.format if guess else None
        return out


def _parse_time(raw: pd.Series, fmt: str | None, tz: str) -> pd.Series:
    parsed = (
        raw
        if pd.api.types.is_datetime64_any_dtype(raw)
        else pd.to_datetime(raw, format=fmt, errors="coerce")
    )
    if getattr(parsed.dt, "tz", None) is None:
        parsed = parsed.dt.tz_localize(tz, ambiguous=False, nonexistent="shift_forward")
    return parsed.dt.tz_convert("UTC").astype("datetime64[us, UTC]")


def _dedupe_mask(parsed: pd.DataFrame, failures: list[_ParseFailure]) -> np.ndarray:
    """Rows to keep in a multiset union of the sources (each line max(k_source) times).

    Lines are compared on parsed values, so '17850.0' and '17850' are the same customer;
    a value that did not parse is compared as its raw text."""
    keys = parsed.drop(columns=[SOURCE_COL, ROW_COL])
    for failure in failures:
        keys[f"_raw_{failure.column}"] = failure.raw.where(failure.mask, pd.NA)
    columns = list(keys.columns)
    occurrence = (
        keys.assign(**{SOURCE_COL: parsed[SOURCE_COL]})
        .groupby([SOURCE_COL, *columns], dropna=False, sort=False)
        .cumcount()
    )
    return ~keys.assign(_occ=occurrence.to_numpy()).duplicated().to_numpy()


def _validate(frame: pd.DataFrame, spec: TableSpec, cfg: TableConfig, rejects: _Rejects) -> None:
    for column in spec.required:
        rejects.add(
            frame[column].isna().to_numpy(),
            column,
            f"missing_{column}",
            f"a {spec.required[column]} value",
            frame[column],
        )
    rules = cfg.rules
    if "product_id" in frame:
        codes = frame["product_id"]
        bad = codes.isin(rules.non_product_codes).fillna(False).to_numpy(dtype=bool)
        if rules.non_product_code_pattern:
            bad |= (
                codes.str.fullmatch(rules.non_product_code_pattern)
                .fillna(False)
                .to_numpy(dtype=bool)
            )
        rejects.add(
            bad,
            "product_id",
            "non_product_code",
            "a product code (not a fee or adjustment code)",
            codes,
        )
    if rules.require_positive_unit_price and "unit_price" in frame:
        price = frame["unit_price"]
        rejects.add(
            (price <= 0).fillna(False).to_numpy(dtype=bool),
            "unit_price",
            "non_positive_unit_price",
            "a unit price > 0",
            price,
        )
    if spec.name == "offer_events":
        events = frame["event"]
        rejects.add(
            (~events.isin(OFFER_EVENT_TYPES)).fillna(False).to_numpy(dtype=bool),
            "event",
            "bad_event",
            f"one of {list(OFFER_EVENT_TYPES)}",
            events,
        )


def _apply_returns(frame: pd.DataFrame, prefix: str | None) -> pd.DataFrame:
    if prefix and "order_id" in frame:
        is_return = frame["order_id"].str.startswith(prefix).fillna(False).to_numpy(dtype=bool)
        frame.loc[is_return, "amount"] = -frame.loc[is_return, "amount"].abs()
    return frame


def _check_columns(
    frame: pd.DataFrame, spec: TableSpec, cfg: TableConfig, source: SourceConfig
) -> None:
    inputs = _expression_inputs(cfg)
    unknown = [
        c
        for c in frame.columns
        if c not in (SOURCE_COL, ROW_COL)
        and spec.column_type(c) is None
        and c not in inputs
        and c not in cfg.customer_attributes
    ]
    if unknown:
        raise IngestError(
            f"{source.location()}: canonical column(s) {unknown} are not part of the "
            f"'{spec.name}' table; allowed: {sorted({**spec.required, **spec.optional})}"
        )


def is_keyed(cfg: TableConfig) -> bool:
    """True when the table's rows name a customer: it is partitioned by customer."""
    return any(
        "customer_id" in {*source.columns, *source.constants}
        or any("customer_id" in lookup.columns for lookup in source.lookups)
        for source in cfg.sources
    )


def _spill_table(
    spec: TableSpec,
    cfg: TableConfig,
    base_dir: Path,
    spill: Path,
    partitions: int,
    report: TableReport,
    chunk_bytes: int,
) -> DateFormats:
    """Read a table's sources piece by piece and append each piece's rows to the spill files
    of their customer partitions (`spill/<partition>/<source>-<piece>.parquet`); every
    partition gets at least an empty piece. Returns the date formats decided from all values."""
    times = _DistinctTimes()
    keyed = is_keyed(cfg)
    for index, source in enumerate(cfg.sources):
        rows = 0
        for piece, frame in enumerate(source_pieces(source, base_dir, index, chunk_bytes)):
            if piece == 0:
                _check_columns(frame, spec, cfg, source)
            rows += len(frame)
            times.add(frame, spec, cfg, index)
            parts = (
                partition_of(_normalise_id(frame["customer_id"]), partitions)
                if keyed and "customer_id" in frame
                else np.zeros(len(frame), dtype=np.int64)
            )
            first = index == 0 and piece == 0
            for part in range(partitions) if first else np.unique(parts):
                folder = spill / f"{int(part):05d}"
                folder.mkdir(parents=True, exist_ok=True)
                rows_of = frame[parts == part]
                rows_of.to_parquet(folder / f"{index:04d}-{piece:06d}.parquet", index=False)
        report.sources.append({"source": source.location(), "input_rows": rows})
        report.input_rows += rows
    return times.formats(cfg)


def _gather(folder: Path) -> pd.DataFrame:
    """The spilled pieces of one partition of a table, in source and file order."""
    pieces = [
        pq.read_table(p).to_pandas(types_mapper=arrow_strings)
        for p in sorted(folder.glob("*.parquet"))
    ]
    return pd.concat(pieces, ignore_index=True) if len(pieces) > 1 else pieces[0]


def _build_rows(
    frame: pd.DataFrame,
    spec: TableSpec,
    cfg: TableConfig,
    tz: str,
    formats: DateFormats,
    report: TableReport,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Parse, de-duplicate and validate rows (all the rows of some customers, from every
    source); returns (accepted rows, rejected rows) and adds the counts to `report`."""
    parsed, failures = _parse(frame, spec, cfg, tz, formats)
    if "customer_id" in parsed:
        ids = parsed.groupby(SOURCE_COL)["customer_id"].nunique()
        for index, entry in enumerate(report.sources):
            entry["distinct_customer_ids"] = entry.get("distinct_customer_ids", 0) + int(
                ids.get(index, 0)
            )
    inputs = _expression_inputs(cfg)
    for name, expression in cfg.derive.items():
        values = parsed.eval(expression) if len(parsed) else np.array([], dtype=np.float64)
        parsed[name] = pd.Series(values, index=parsed.index, dtype="float64")
    parsed = parsed.drop(columns=[c for c in inputs if spec.column_type(c) is None])
    if spec.name == "transactions" and "order_id" not in parsed:
        parsed["order_id"] = customer_day_orders(parsed, tz)
        report.derived["order_id"] = (
            f"no order id in the data: one order per customer and day ({tz} days)"
        )
    missing = [c for c in spec.required if c not in parsed]
    if missing:
        raise IngestError(
            f"table '{spec.name}': required column(s) {missing} are neither mapped "
            "nor derived in the dataset config"
        )

    if cfg.dedupe_across_sources and len(cfg.sources) > 1:
        keep = _dedupe_mask(parsed, failures)
        report.duplicate_rows += int((~keep).sum())
        parsed = parsed[keep]
        failures = [
            _ParseFailure(
                f.column,
                f.expected if isinstance(f.expected, str) else f.expected[keep],
                f.mask[keep],
                f.raw[keep],
            )
            for f in failures
        ]

    rejects = _Rejects(parsed)
    for f in failures:
        rejects.add(f.mask, f.column, f"bad_{f.column}", f.expected, f.raw)
    _validate(parsed, spec, cfg, rejects)
    parsed = _apply_returns(parsed, cfg.rules.return_order_prefix)
    accepted = parsed[~rejects.mask].drop(columns=[SOURCE_COL, ROW_COL]).reset_index(drop=True)
    rejected = _rejects_frame(rejects.parts, spec.name, cfg)
    report.accepted_rows += len(accepted)
    for reason, count in rejected["reason"].value_counts().items():
        report.rejected_rows[str(reason)] = report.rejected_rows.get(str(reason), 0) + int(count)
    return accepted, rejected


def customer_day_orders(frame: pd.DataFrame, tz: str) -> pd.Series:
    """Order ids for an export without them (DESIGN.md): one order per customer and local
    day, "<customer_id>@<YYYY-MM-DD>". Rows without a customer or a time get a placeholder,
    so that they are rejected for what they really miss."""
    if "customer_id" not in frame or "timestamp" not in frame:
        return pd.Series("derived", index=frame.index, dtype="string[pyarrow]")
    day = frame["timestamp"].dt.tz_convert(tz).dt.strftime("%Y-%m-%d").astype("string[pyarrow]")
    order = frame["customer_id"].astype("string[pyarrow]") + "@" + day
    return order.fillna("derived")


def _expression_inputs(cfg: TableConfig) -> set[str]:
    names: set[str] = set()
    for source in cfg.sources:
        names |= set(source.columns) | set(source.constants)
        for lookup in source.lookups:
            names |= set(lookup.columns)
    return {n for n in names if any(n in expr for expr in cfg.derive.values())}


def _rejects_frame(parts: list[pd.DataFrame], table: str, cfg: TableConfig) -> pd.DataFrame:
    if not parts:
        return pd.DataFrame(columns=REJECT_COLUMNS)
    out = pd.concat(parts, ignore_index=True)
    locations = np.array([s.location() for s in cfg.sources], dtype=object)
    out["source"] = locations[out.pop(SOURCE_COL).to_numpy()]
    out["table"] = table
    return out[REJECT_COLUMNS].sort_values(["source", "row"], kind="stable")


def customers_table(
    transactions: pd.DataFrame, attributes: list[str], customers: pd.DataFrame | None
) -> pd.DataFrame:
    """Every customer seen in transactions or customer files, with their attributes.

    Attributes from transaction lines (e.g. country) take their latest value per customer;
    values from a customers file win over them."""
    ordered = transactions.sort_values("timestamp", kind="stable")
    base = pd.DataFrame({"customer_id": ordered["customer_id"].unique()})
    if attributes:
        latest = ordered.dropna(subset=attributes, how="all").groupby("customer_id").last()
        base = base.merge(latest[attributes].reset_index(), on="customer_id", how="left")
    if customers is not None and len(customers):
        extra = customers.drop_duplicates("customer_id", keep="last").set_index("customer_id")
        base = base.set_index("customer_id").combine_first(extra).reset_index()
        base = base.rename(columns={"index": "customer_id"})
    keep = [c for c in [*CUSTOMERS.required, *CUSTOMERS.optional] if c in base]
    return base[keep].sort_values("customer_id").reset_index(drop=True)


# Inputs are split into at least one customer partition per this many bytes of input files.
BYTES_PER_PARTITION = 64 * 1024 * 1024


def partition_count(dataset: DatasetConfig, base_dir: Path, partitions: int) -> int:
    """Customer partitions of an ingest: `partitions`, or more for large inputs (one per
    BYTES_PER_PARTITION of input; compressed and parquet files count four times their size)."""
    size = 0
    for cfg in dataset.tables.values():
        for source in cfg.sources:
            path = resolve_location(source.path, source.package, base_dir)
            if path.is_file():
                plain = is_text(path) and path.suffix.lower() != ".gz"
                size += path.stat().st_size * (1 if plain else 4)
    return max(1, partitions, -(-size // BYTES_PER_PARTITION))


@dataclass
class _Transactions:
    """What the ingest report says of the accepted transactions, summed over partitions."""

    customers: int = 0
    products: bool = False
    first: pd.Timestamp | None = None
    last: pd.Timestamp | None = None

    def add(self, transactions: pd.DataFrame) -> None:
        if transactions.empty:
            return
        self.customers += int(transactions["customer_id"].nunique())
        self.products = self.products or has_products(transactions)
        first, last = transactions["timestamp"].min(), transactions["timestamp"].max()
        self.first = first if self.first is None else min(self.first, first)
        self.last = last if self.last is None else max(self.last, last)


def ingest(
    dataset: DatasetConfig,
    base_dir: Path,
    paths: Workspace,
    partitions: int = 1,
    chunk_bytes: int = CHUNK_BYTES,
) -> dict[str, Any]:
    """Ingest a dataset into the canonical tables of a workspace.

    Sources are read in pieces (`chunk_bytes` of text at a time) and their rows spilled to
    customer partitions (`partition_count`); each partition is then parsed, de-duplicated
    across sources and validated on its own, so memory holds one piece or one partition,
    never the whole export. A line repeated across sources has the same customer, hence the
    same partition: de-duplication is that of the whole table.

    Writes each table as a folder of partition files (`features.partitions`), the rejects
    file and the ingest report (`paths`), all published together; returns the report.
    Relative source paths are resolved against `base_dir`."""
    count = partition_count(dataset, base_dir, partitions)
    reports: dict[str, TableReport] = {name: TableReport() for name in dataset.tables}
    tx_cfg = dataset.tables["transactions"]
    rejected: dict[str, list[pd.DataFrame]] = {name: [] for name in dataset.tables}
    summary = _Transactions()
    with publishing(paths.data_versions) as version:  # all tables of this run, or none
        out = paths.staged(paths.data_versions, version)
        spill = version / ".spill"
        formats: dict[str, DateFormats] = {}
        for name, cfg in dataset.tables.items():
            with stage(log, f"ingest {name}: read the sources"):
                formats[name] = _spill_table(
                    TABLES[name],
                    cfg,
                    base_dir,
                    spill / name,
                    count if is_keyed(cfg) else 1,
                    reports[name],
                    chunk_bytes,
                )
        with stage(log, f"ingest: {count} customer partitions"):
            for part in range(count):
                tables: dict[str, pd.DataFrame] = {}
                for name, cfg in dataset.tables.items():
                    if part and not is_keyed(cfg):
                        continue
                    rows = _gather(spill / name / f"{part:05d}")
                    tables[name], bad = _build_rows(
                        rows, TABLES[name], cfg, dataset.timezone, formats[name], reports[name]
                    )
                    rejected[name].append(bad)
                tables["customers"] = customers_table(
                    tables["transactions"], tx_cfg.customer_attributes, tables.get("customers")
                )
                summary.add(tables["transactions"])
                for table, frame in tables.items():
                    out.table(table).mkdir(exist_ok=True)
                    frame.to_parquet(out.table(table) / part_name(part), index=False)
        shutil.rmtree(spill)
        rejects = _all_rejects(rejected)
        empty = [name for name, r in reports.items() if r.accepted_rows == 0]
        if empty:  # nothing is published: the rejects go beside the tables left as they were
            write_atomic(rejects, paths.failed_rejects)
            r = reports[empty[0]]
            raise IngestError(
                f"table '{empty[0]}': no row accepted: all {r.input_rows} rows were rejected "
                f"({', '.join(f'{k}: {v}' for k, v in sorted(r.rejected_rows.items()))}); "
                f"see {paths.failed_rejects}"
            )
        with stage(log, "ingest: write the rejects and the report"):
            rejects.to_csv(out.rejects, index=False)
            report = _report(dataset, reports, summary, paths)
            out.ingest_report.write_text(json.dumps(report, indent=2))
    return report


def _all_rejects(rejected: dict[str, list[pd.DataFrame]]) -> pd.DataFrame:
    """Every table's rejects, table after table, each by source and row."""
    tables = []
    for frames in rejected.values():
        table = pd.concat([f for f in frames if len(f)] or frames[:1], ignore_index=True)
        tables.append(table.sort_values(["source", "row"], kind="stable"))
    return pd.concat([t for t in tables if len(t)] or tables[:1], ignore_index=True)


def _report(
    dataset: DatasetConfig,
    reports: dict[str, TableReport],
    transactions: _Transactions,
    paths: Workspace,
) -> dict[str, Any]:
    """The ingest report: counts, period and where the rejects are."""
    tx = reports["transactions"].as_dict()
    report = {
        "dataset": dataset.name,
        **{
            k: tx[k]
            for k in (
                "input_rows",
                "accepted_rows",
                "rejected_rows",
                "rejected_by_reason",
                "duplicate_rows",
            )
        },
        **({"derived": tx["derived"]} if "derived" in tx else {}),
        "customers": transactions.customers,
        # False for an export without products: churn and CLV only, no offer model.
        "products": transactions.products,
        "period": {"first": str(transactions.first), "last": str(transactions.last)},
        "tables": {name: r.as_dict() for name, r in reports.items()},
        "rejects_file": str(paths.rejects),
    }
    return report
