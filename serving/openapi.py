"""The API's OpenAPI document made as strict as the API: a request the document calls valid
is one the API accepts (and one it calls invalid gets a 4xx).

FastAPI's document from the pydantic models says less than the API checks: exactly one of
`customer_id` / `customer_ids`, the page limit and the feature names and types of what-if
requests come from the running service (its settings and loaded models)."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

from features.names import ALL_FEATURES
from serving.contract import currency_words, horizon_words
from serving.schemas import ID_MAX_LENGTH, ID_MAX_NUMBER

# What `serving.schemas.CustomerId` accepts: a string with a non-space character (it is
# trimmed), or a whole number (taken as its digits).
CUSTOMER_ID_SCHEMA = {
    "anyOf": [
        {"type": "string", "maxLength": ID_MAX_LENGTH, "pattern": r"\S"},
        {"type": "integer", "minimum": 0, "maximum": ID_MAX_NUMBER},
    ],
    "description": "trimmed; a whole number is taken as its digits",
}
# A JSON number the API accepts: finite as a float64.
FINITE = {"type": "number", "minimum": -sys.float_info.max, "maximum": sys.float_info.max}


def feature_object(names: Iterable[str]) -> dict[str, Any]:
    """A JSON schema object of the named features, each typed (or null), no other key."""
    properties = {
        name: {
            "anyOf": [
                {"type": "string"} if ALL_FEATURES[name].dtype == "string" else FINITE,
                {"type": "null"},
            ]
        }
        for name in sorted(names)
    }
    return {"type": "object", "properties": properties, "additionalProperties": False}


def tighten(
    document: dict[str, Any],
    max_page: int,
    customer_features: Iterable[str],
    offer_features: Iterable[str],
) -> dict[str, Any]:
    """`document` (FastAPI's, changed in place and returned) with the API's real rules:
    one of `customer_id`/`customer_ids` (no null), at most `max_page` customers, and what-if
    features by name and type."""
    schemas = document["components"]["schemas"]
    score = schemas["ScoreRequest"]
    score["properties"]["customer_id"] = dict(CUSTOMER_ID_SCHEMA)
    score["properties"]["customer_ids"] = {
        "type": "array",
        "items": dict(CUSTOMER_ID_SCHEMA),
        "minItems": 1,
        "maxItems": max_page,
    }
    score["oneOf"] = [{"required": ["customer_id"]}, {"required": ["customer_ids"]}]
    schemas["FeaturesRequest"]["properties"]["customers"]["maxItems"] = max_page
    schemas["FeatureCustomer"]["properties"]["features"] = feature_object(customer_features)
    schemas["OfferRow"]["properties"]["features"] = feature_object(offer_features)
    return document


def describe_units(
    document: dict[str, Any], horizons: dict[str, int | None], currency: str | None
) -> dict[str, Any]:
    """`document` (changed in place and returned) with the served models' horizons and the
    currency written into the descriptions of the answer's numbers."""
    schemas = document["components"]["schemas"]
    money = currency_words(currency)
    notes = {
        ("ChurnAnswer", "probability"): f"churn horizon: {horizon_words(horizons.get('churn'))}",
        ("ClvAnswer", "value"): f"CLV horizon: {horizon_words(horizons.get('clv'))}; in {money}",
        ("OfferAnswer", "probability"): f"offer horizon: {horizon_words(horizons.get('nbo'))}",
        ("OfferAnswer", "expected_value"): f"in {money}",
        ("CustomerScore", "retention_priority"): f"in {money}",
    }
    for (schema, field), note in notes.items():
        prop = schemas[schema]["properties"][field]
        prop["description"] = f"{prop.get('description', '')} ({note})".strip()
    return document
