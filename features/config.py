"""Typed parameters of the features package: dataset descriptions, feature, label and segment
settings, and the Feast store. The CLI builds them from `configs/`; functions take them as
arguments and never read files or the environment themselves."""

from __future__ import annotations

import codecs
from datetime import date
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveInt,
    field_validator,
    model_validator,
)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


WHITESPACE = "whitespace"
TEXT_SUFFIXES = (".csv", ".csv.gz", ".txt", ".txt.gz", ".tsv", ".tsv.gz", ".dat", ".dat.gz")


class ReaderOptions(_Frozen):
    """How a text file is read: delimiter, header, skipped lines, encoding, fixed widths and
    number format. The defaults read a UTF-8 CSV with a header line (a .tsv file: tabs).
    Parquet files carry their own schema and take none of these options."""

    delimiter: str | None = Field(
        default=None,
        description="one character (',' ';' '|'), 'tab', or 'whitespace' (runs of spaces and "
        "tabs); default ',' (tab for .tsv)",
    )
    header: bool = Field(default=True, description="the first line (after skip_rows) names columns")
    column_names: list[str] | None = Field(
        default=None, description="names of the columns, left to right (required without header)"
    )
    skip_rows: int = Field(default=0, ge=0, description="lines to skip at the top of the file")
    encoding: str = "utf-8"
    widths: list[PositiveInt] | None = Field(
        default=None, description="a fixed-width file: the width of each column, left to right"
    )
    decimal: Literal[".", ","] = "."
    thousands: Literal[",", ".", " ", "'"] | None = None

    @field_validator("delimiter")
    @classmethod
    def _one_character(cls, value: str | None) -> str | None:
        if value is None or value == WHITESPACE:
            return value
        if value in ("tab", "\\t"):
            return "\t"
        if len(value) != 1 or value in ('"', "\n", "\r") or not value.isascii():
            raise ValueError(
                f"delimiter must be one ASCII character (e.g. ';'), 'tab' or 'whitespace'; "
                f"got {value!r}"
            )
        return value

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(
                f"unknown encoding {value!r} (e.g. 'utf-8', 'latin-1', 'cp1252')"
            ) from None
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ReaderOptions:
        if not self.header and not self.column_names:
            raise ValueError(
                "header: false needs column_names (the names the columns mapping refers to)"
            )
        if self.column_names and len(set(self.column_names)) != len(self.column_names):
            raise ValueError(f"column_names has duplicate names: {self.column_names}")
        if self.widths is not None:
            if self.delimiter is not None:
                raise ValueError("a fixed-width file (widths) has no delimiter: set only one")
            if self.column_names and len(self.column_names) != len(self.widths):
                raise ValueError(
                    f"widths has {len(self.widths)} columns but column_names has "
                    f"{len(self.column_names)}"
                )
        if self.thousands is not None and self.thousands == self.decimal:
            raise ValueError(f"decimal and thousands are both {self.decimal!r}")
        return self

    def text_options_set(self) -> list[str]:
        """The options given that only a text file can use (for a parquet file: an error)."""
        return sorted(self.model_fields_set & set(ReaderOptions.model_fields))

    def check_names(self, location: str, wanted: list[str]) -> None:
        """With column_names, every column the config maps must be one of them."""
        if self.column_names:
            unknown = [name for name in wanted if name not in self.column_names]
            if unknown:
                raise ValueError(
                    f"{location}: column(s) {unknown} are not in column_names {self.column_names}"
                )
        if location.lower().endswith(".parquet") and self.text_options_set():
            raise ValueError(
                f"{location}: {self.text_options_set()} apply to text files; a parquet file "
                "has its own column names and types"
            )


class LookupConfig(ReaderOptions):
    """A side table joined onto a source's rows (e.g. products -> category)."""

    path: str | None = None
    package: str | None = None
    # Named `by`, not `on`: YAML reads a bare `on` key as the boolean true.
    by: str = Field(description="canonical column of the source to join on")
    key: str = Field(description="column of the lookup table that matches `on`")
    columns: dict[str, str | list[str]] = Field(
        description="canonical name -> lookup column (a list: first non-empty wins)"
    )

    @model_validator(mode="after")
    def _names_known(self) -> LookupConfig:
        self.check_names(self.path or self.package or "", [self.key, *mapped(self.columns)])
        return self


def mapped(columns: dict[str, str | list[str]]) -> list[str]:
    """The file columns a `columns` mapping reads, each once, in order."""
    names: list[str] = []
    for raw in columns.values():
        for name in [raw] if isinstance(raw, str) else raw:
            if name not in names:
                names.append(name)
    return names


class SourceConfig(ReaderOptions):
    """One input file: where it is, how it is read and how its columns map to the canonical
    table."""

    path: str | None = None
    package: str | None = Field(
        default=None, description="file inside an installed package: '<package>/<path>'"
    )
    columns: dict[str, str | list[str]] = Field(
        description="canonical name -> source column (a list: first non-empty wins)"
    )
    constants: dict[str, str] = Field(default_factory=dict)
    lookups: list[LookupConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_location(self) -> SourceConfig:
        if (self.path is None) == (self.package is None):
            raise ValueError("a source needs exactly one of 'path' or 'package'")
        self.check_names(self.location(), mapped(self.columns))
        return self

    def location(self) -> str:
        """The path or package resource this source reads, for messages."""
        return self.path or f"package:{self.package}"


class TableRules(_Frozen):
    """Row rules that turn raw export quirks into canonical rows or rejects."""

    # Orders whose id starts with this prefix are returns: their amount is made negative.
    return_order_prefix: str | None = None
    # Product codes that are not products (postage, fees, manual adjustments): rejected.
    non_product_codes: list[str] = Field(default_factory=list)
    non_product_code_pattern: str | None = Field(
        default=None, description="regular expression; matching product codes are rejected too"
    )
    # Reject lines whose unit price is zero or negative (adjustments, bad debt).
    require_positive_unit_price: bool = False


class TableConfig(_Frozen):
    """How one canonical table is built from one or more sources."""

    sources: list[SourceConfig]
    timestamp_format: str | None = None
    # Canonical columns computed from others with a pandas expression, e.g. "quantity * unit_price".
    derive: dict[str, str] = Field(default_factory=dict)
    # Remove rows repeated across sources (a multiset union: a line k times in one source and
    # m times in another is kept max(k, m) times).
    dedupe_across_sources: bool = False
    rules: TableRules = Field(default_factory=TableRules)
    # Transaction columns that are customer attributes (e.g. country): their latest value per
    # customer goes to the customers table.
    customer_attributes: list[str] = Field(default_factory=list)


class DatasetConfig(_Frozen):
    """A dataset: its tables, time zone and where it came from."""

    name: str
    description: str = ""
    timezone: str = "UTC"
    # The currency of the amounts (ISO 4217, e.g. GBP): reports name it beside values.
    currency: str = ""
    # Settings this dataset needs (e.g. shorter windows for one year of data), over
    # configs/settings.yaml: {section: {key: value}}.
    settings: dict[str, Any] = Field(default_factory=dict)
    tables: dict[
        Literal["transactions", "customers", "interactions", "offers", "offer_events"], TableConfig
    ]

    @field_validator("tables")
    @classmethod
    def _needs_transactions(cls, tables: dict[str, TableConfig]) -> dict[str, TableConfig]:
        if "transactions" not in tables:
            raise ValueError("a dataset needs a 'transactions' table")
        return tables


class FeatureParams(_Frozen):
    """Feature engineering settings."""

    cutoffs: Literal["monthly"] | list[date] = "monthly"
    min_history_days: int = 90
    partitions: int = 4
    # Customer x offer affinity keeps each customer's most bought offers, at most this many.
    affinity_top_offers: int = 50


class LabelParams(_Frozen):
    """Label windows (see DESIGN.md, Definitions)."""

    active_window_days: int = 365
    churn_horizon_days: int = 90
    clv_horizon_days: int = 180
    offer_horizon_days: int = 30
    offer_catalog: Literal["auto", "category", "product"] = "auto"


class SegmentParams(_Frozen):
    """Thresholds for value tiers and lifecycle stages."""

    high_value_share: float = 0.2
    low_value_share: float = 0.5
    new_customer_days: int = 90
    at_risk_gap_ratio: float = 2.0


class FeastParams(_Frozen):
    """Feast store settings; the Redis connection string comes from the environment."""

    project: str = "crmscore"
    online_store: Literal["sqlite", "redis"] = "sqlite"
    ttl_days: int = 400
    redis_url: str | None = None
