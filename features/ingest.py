"""Ingestion: raw exports -> validated canonical tables, a rejects file and a report.

Every input row ends in exactly one place: the canonical table (accepted), the rejects file
(with the file, row, field, reason and what was expected) or the duplicate count (a line
repeated across sources). `input_rows == accepted_rows + rejected_rows + duplicate_rows`.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

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
from features.progress import stage
from features.publish import publishing, write_atomic
from features.readers import IngestError, read_raw

SOURCE_COL = "_source"
ROW_COL = "_row"
REJECT_COLUMNS = ["table", "source", "row", "field", "reason", "expected", "value"]

log = logging.getLogger(__name__)

__all__ = [
    "IngestError",
    "TableReport",
    "build_table",
    "customer_day_orders",
    "customers_table",
    "ingest",
    "load_source",
    "resolve_location",
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


def _apply_lookup(frame: pd.DataFrame, lookup: LookupConfig, base_dir: Path) -> pd.DataFrame:
    path = resolve_location(lookup.path, lookup.package, base_dir)
    side = read_raw(path, list({lookup.key, *mapped(lookup.columns)}), lookup).frame
    side = _map_columns(side, lookup.columns).assign(_key=_normalise_id(side[lookup.key]))
    side = side.drop_duplicates("_key").set_index("_key")
    keys = _normalise_id(frame[lookup.by])
    for canonical in lookup.columns:
        frame[canonical] = keys.map(side[canonical]).astype(side[canonical].dtype)
    return frame


def load_source(source: SourceConfig, base_dir: Path, index: int) -> pd.DataFrame:
    """One source as a frame of canonical columns (still raw values) plus provenance."""
    path = resolve_location(source.path, source.package, base_dir)
    raw = read_raw(path, mapped(source.columns), source)
    frame = _map_columns(raw.frame, source.columns)
    for name, value in source.constants.items():
        frame[name] = value
    for lookup in source.lookups:
        frame = _apply_lookup(frame, lookup, base_dir)
    frame[SOURCE_COL] = np.int16(index)
    # Rows as a person finds them: lines of a text file (the header is a line), parquet rows.
    frame[ROW_COL] = raw.rows
    return frame


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
    frame: pd.DataFrame, spec: TableSpec, cfg: TableConfig, tz: str
) -> tuple[pd.DataFrame, list[_ParseFailure]]:
    """Convert raw values to canonical types; report the values that do not parse."""
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
            out[column], expected = _parse_times(raw, sources, cfg, tz, column)
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


def _parse_times(
    raw: pd.Series, sources: np.ndarray, cfg: TableConfig, tz: str, column: str
) -> tuple[pd.Series, str | np.ndarray]:
    """Parse a timestamp column with the table's `timestamp_format`, or else with each
    source's format decided from all its values (features.dates); also what was expected."""
    if cfg.timestamp_format or not pd.api.types.is_string_dtype(raw):
        fmt = cfg.timestamp_format
        return _parse_time(raw, fmt, tz), f"a date-time{f' as {fmt}' if fmt else ''}"
    parts = []
    expected = np.empty(len(raw), dtype=object)
    for index, source in enumerate(cfg.sources):
        rows = sources == index
        if not rows.any():
            continue
        where = f"{source.location()}: column {source.columns.get(column, column)!r} ({column})"
        try:
            guess = guess_date_format(raw[rows], where)
        except DateFormatError as exc:
            raise IngestError(str(exc)) from None
        fmt = guess.format if guess else None
        parts.append(_parse_time(raw[rows], fmt, tz))
        expected[rows] = f"a date-time{f' as {fmt}' if fmt else ''}"
    parsed = pd.concat(parts) if len(parts) > 1 else parts[0]
    return parsed, expected[0] if len(set(expected)) == 1 else expected


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


def build_table(
    spec: TableSpec, cfg: TableConfig, tz: str, base_dir: Path
) -> tuple[pd.DataFrame, pd.DataFrame, TableReport]:
    """Build one canonical table. Returns (accepted rows, rejected rows, report)."""
    report = TableReport()
    inputs = _expression_inputs(cfg)
    frames = []
    for index, source in enumerate(cfg.sources):
        frame = load_source(source, base_dir, index)
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
        report.sources.append({"source": source.location(), "input_rows": len(frame)})
        frames.append(frame)
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    report.input_rows = len(frame)

    parsed, failures = _parse(frame, spec, cfg, tz)
    if "customer_id" in parsed:
        ids = parsed.groupby(SOURCE_COL)["customer_id"].nunique()
        for index, entry in enumerate(report.sources):
            entry["distinct_customer_ids"] = int(ids.get(index, 0))
    for name, expression in cfg.derive.items():
        parsed[name] = pd.Series(parsed.eval(expression), index=parsed.index, dtype="float64")
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
        report.duplicate_rows = int((~keep).sum())
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
    report.accepted_rows = len(accepted)
    report.rejected_rows = {str(k): int(v) for k, v in rejected["reason"].value_counts().items()}
    return accepted, rejected, report


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


def ingest(dataset: DatasetConfig, base_dir: Path, paths: Workspace) -> dict[str, Any]:
    """Ingest a dataset into the canonical tables of a workspace.

    Writes the tables, the rejects file and the ingest report (`paths`); returns the report.
    Relative source paths are resolved against `base_dir`."""
    reports: dict[str, TableReport] = {}
    accepted: dict[str, pd.DataFrame] = {}
    rejected: list[pd.DataFrame] = []
    for name, cfg in dataset.tables.items():
        with stage(log, f"ingest {name}"):
            rows, bad, reports[name] = build_table(TABLES[name], cfg, dataset.timezone, base_dir)
        accepted[name] = rows
        rejected.append(bad)

    rejects = pd.concat([r for r in rejected if len(r)] or [rejected[0]], ignore_index=True)
    empty = [name for name, r in reports.items() if r.accepted_rows == 0]
    if empty:  # nothing is published: the rejects go beside the tables left as they were
        paths.data_versions.mkdir(parents=True, exist_ok=True)
        write_atomic(rejects, paths.failed_rejects)
        r = reports[empty[0]]
        raise IngestError(
            f"table '{empty[0]}': no row accepted: all {r.input_rows} rows were rejected "
            f"({', '.join(f'{k}: {v}' for k, v in sorted(r.rejected_rows.items()))}); "
            f"see {paths.failed_rejects}"
        )

    tx_cfg = dataset.tables["transactions"]
    transactions = accepted["transactions"]
    accepted["customers"] = customers_table(
        transactions, tx_cfg.customer_attributes, accepted.get("customers")
    )

    with (
        stage(log, "ingest: write the canonical tables"),
        publishing(paths.data_versions) as version,  # all tables of this run, or none
    ):
        out = paths.staged(paths.data_versions, version)
        for table, frame in accepted.items():
            frame.to_parquet(out.table(table), index=False)
        rejects.to_csv(out.rejects, index=False)
        report = _report(dataset, reports, transactions, paths)
        out.ingest_report.write_text(json.dumps(report, indent=2))
    return report


def _report(
    dataset: DatasetConfig,
    reports: dict[str, TableReport],
    transactions: pd.DataFrame,
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
        "customers": int(transactions["customer_id"].nunique()),
        # False for an export without products: churn and CLV only, no offer model.
        "products": has_products(transactions),
        "period": {
            "first": str(transactions["timestamp"].min()),
            "last": str(transactions["timestamp"].max()),
        },
        "tables": {name: r.as_dict() for name, r in reports.items()},
        "rejects_file": str(paths.rejects),
    }
    return report
