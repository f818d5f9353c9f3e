"""The canonical data contract (DESIGN.md): table names, their columns and types.

Every canonical table is stored as parquet in the workspace with exactly these columns
(optional ones only when the dataset has them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ColumnType = Literal["string", "float", "timestamp"]


@dataclass(frozen=True)
class TableSpec:
    """Columns of one canonical table: name -> type, split into required and optional."""

    name: str
    required: dict[str, ColumnType]
    optional: dict[str, ColumnType]

    def column_type(self, column: str) -> ColumnType | None:
        """Type of a canonical column, or None when the table has no such column."""
        return self.required.get(column) or self.optional.get(column)


# Customer attributes a dataset may map; they become categorical features when present.
CUSTOMER_ATTRIBUTES: tuple[str, ...] = (
    "country",
    "region",
    "age_band",
    "income_band",
    "gender",
    "household_size",
    "household_type",
    "home_ownership",
    "marital_status",
    "kids_count",
)

TRANSACTIONS = TableSpec(
    "transactions",
    required={
        "customer_id": "string",
        "order_id": "string",
        "timestamp": "timestamp",
        "amount": "float",
    },
    optional={
        "product_id": "string",
        "category": "string",
        "quantity": "float",
        "unit_price": "float",
        "channel": "string",
        "store_id": "string",
        "discount": "float",
    },
)
CUSTOMERS = TableSpec(
    "customers",
    required={"customer_id": "string"},
    optional={"signup_date": "timestamp", **dict.fromkeys(CUSTOMER_ATTRIBUTES, "string")},
)
INTERACTIONS = TableSpec(
    "interactions",
    required={"customer_id": "string", "timestamp": "timestamp", "type": "string"},
    optional={"value": "float", "channel": "string"},
)
OFFERS = TableSpec(
    "offers",
    required={"offer_id": "string"},
    optional={
        "product_id": "string",
        "category": "string",
        "offer_type": "string",
        "value": "float",
        "valid_from": "timestamp",
        "valid_to": "timestamp",
    },
)
OFFER_EVENTS = TableSpec(
    "offer_events",
    required={
        "customer_id": "string",
        "offer_id": "string",
        "timestamp": "timestamp",
        "event": "string",
    },
    optional={},
)
OFFER_EVENT_TYPES = ("sent", "redeemed")

TABLES: dict[str, TableSpec] = {
    t.name: t for t in (TRANSACTIONS, CUSTOMERS, INTERACTIONS, OFFERS, OFFER_EVENTS)
}
