"""Typed parameters of the features package: dataset descriptions, feature, label and segment
settings, and the Feast store. The CLI builds them from `configs/`; functions take them as
arguments and never read files or the environment themselves."""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class LookupConfig(_Frozen):
    """A side table joined onto a source's rows (e.g. products -> category)."""

    path: str | None = None
    package: str | None = None
    # Named `by`, not `on`: YAML reads a bare `on` key as the boolean true.
    by: str = Field(description="canonical column of the source to join on")
    key: str = Field(description="column of the lookup table that matches `on`")
    columns: dict[str, str | list[str]] = Field(
        description="canonical name -> lookup column (a list: first non-empty wins)"
    )


class SourceConfig(_Frozen):
    """One input file: where it is and how its columns map to the canonical table."""

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
