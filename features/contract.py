"""The canonical data contract (DESIGN.md): table names, their columns and types.

Every canonical table is stored as parquet in the workspace with exactly these columns
(optional ones only when the dataset has them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

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

# What the transactions say was bought. Both are optional: an export without them (one row
# per order or per customer-day: customer, date, amount) is a dataset *without products*. It
# ingests and gets churn and CLV models; the offer catalog is empty, so the offer views are
# empty and the next-best-offer model is skipped (`has_products`).
PRODUCT_COLUMNS: tuple[str, ...] = ("product_id", "category")
NO_PRODUCTS = (
    "the data has no products (neither product_id nor category is mapped in the transactions "
    "export), so there are no offers to rank"
)

TRANSACTIONS = TableSpec(
    "transactions",
    required={
        "customer_id": "string",
        # Derived as "<customer_id>@<local day>" when the export has none (ingest).
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


def has_products(transactions: Any) -> bool:
    """True when some transaction line names a product or a category (the offer catalog is
    built from them); False for an export without products (see PRODUCT_COLUMNS)."""
    return any(
        column in transactions and bool(transactions[column].notna().any())
        for column in PRODUCT_COLUMNS
    )
