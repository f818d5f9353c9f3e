"""What the numbers crmscore hands out mean: units, horizons, value sets and precision.

One description serves the API (`GET /v1/models`, the OpenAPI document) and the files for a
CRM (the data dictionary written beside every scores file and target list). Horizons come
from the model versions (training records them in the bundle), the currency from the
dataset's config (`currency:`)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import pandas as pd

from features.segments import LIFECYCLE_STAGES, RFM_SEGMENTS, VALUE_TIERS
from serving.models import CHURN_BANDS, BundleModel

# Decimals of each kind of number, in answers and files alike.
DECIMALS = {"probability": 6, "money": 2, "percentile": 1}
NOT_RECORDED = "not recorded in this model version (retrain to record it)"

_OFFER_COLUMN = re.compile(r"^offer_(\d+)(?:_(probability|expected_value))?$")


def horizon_words(days: int | None) -> str:
    """The words of a horizon ("the next 90 days"), or what is known when the model version
    does not say."""
    return f"the next {days} days" if days else f"the model's horizon ({NOT_RECORDED})"


def currency_words(currency: str | None) -> str:
    """The currency code, or what to do when the dataset's config does not name one."""
    return currency or "the data's currency (set `currency:` in the dataset config)"


def horizon(model: BundleModel | None) -> int | None:
    """The horizon in days a model version predicts over (None: not recorded)."""
    days = model.meta.get("horizon_days") if model is not None else None
    return int(days) if days else None


def model_terms(model: BundleModel, currency: str | None) -> dict[str, Any]:
    """What one model's outputs mean: horizon, what is predicted, the unit and the value
    sets with their edges (`GET /v1/models`)."""
    days = horizon(model)
    within = horizon_words(days)
    money = currency_words(currency)
    meta = model.meta
    if model.kind == "churn":
        low, high = meta["band_edges"]
        return {
            "horizon_days": days,
            "currency": None,
            "predicts": f"probability that an active customer makes no purchase in {within}",
            "unit": "probability (0 to 1)",
            "values": {
                "band": dict(
                    zip(
                        CHURN_BANDS,
                        (f"probability below {low}", f"{low} to below {high}", f"{high} or more"),
                        strict=True,
                    )
                ),
                "flag": {"true": f"probability {meta['threshold']} or more"},
            },
        }
    if model.kind == "clv":
        share = float(meta["high_value_share"])
        top = round(100 * (1 - share), 1)
        return {
            "horizon_days": days,
            "currency": currency,
            "predicts": f"expected net revenue (after returns) in {within}, in {money}",
            "unit": money,
            "values": {
                "tier": {
                    "high": f"top {share:.0%} of the model's test population (percentile {top:g}+)",
                    "medium": f"percentile 50 to below {top:g}",
                    "low": "below the median (percentile under 50)",
                },
                "percentile": {"0-100": "where the CLV falls among the model's test population"},
            },
        }
    return {
        "horizon_days": days,
        "currency": currency,
        "predicts": f"probability that the customer buys the offer in {within}; expected "
        f"value = probability x the offer's average spend per order, in {money}",
        "unit": "probability (0 to 1)",
        "values": {},
    }


def column_kind(name: str) -> str | None:
    """The kind of number a scores or target-list column holds (a DECIMALS key), or None
    for a column that is not a rounded number."""
    if name == "churn_probability":
        return "probability"
    if name in ("clv", "retention_priority", "objective_value"):
        return "money"
    if name == "clv_percentile":
        return "percentile"
    found = _OFFER_COLUMN.match(name)
    if found and found.group(2) == "probability":
        return "probability"
    if found and found.group(2) == "expected_value":
        return "money"
    return None


def rounded(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with every number column rounded to its kind's decimals (`DECIMALS`)."""
    out = frame.copy()
    for name in out.columns:
        kind = column_kind(str(name))
        if kind is not None:
            out[name] = pd.to_numeric(out[name]).round(DECIMALS[kind])
    return out


def _column(name: str, horizons: Mapping[str, int | None], currency: str | None) -> dict[str, Any]:
    money = currency_words(currency)
    churn_in, clv_in = horizon_words(horizons.get("churn")), horizon_words(horizons.get("clv"))
    offer_in = horizon_words(horizons.get("nbo"))
    fixed: dict[str, tuple[str, str, str | None, list[str] | None]] = {
        "customer_id": ("customer id, as in the source data", "text", None, None),
        "as_of": (
            "score date (UTC): the features use only events before it",
            "timestamp",
            None,
            None,
        ),
        "churn_probability": (
            f"probability of no purchase in {churn_in}",
            "number",
            "probability (0 to 1)",
            None,
        ),
        "churn_band": ("churn risk band (edges: GET /v1/models)", "text", None, list(CHURN_BANDS)),
        "churn_flag": (
            "churn probability at or above the decision threshold",
            "boolean",
            None,
            None,
        ),
        "clv": (f"expected net revenue in {clv_in}", "number", money, None),
        "clv_percentile": (
            "where the CLV falls among the model's test population",
            "number",
            "percentile (0 to 100)",
            None,
        ),
        "clv_tier": ("CLV tier by percentile", "text", None, list(VALUE_TIERS)),
        "rfm_segment": ("named RFM segment", "text", None, list(RFM_SEGMENTS)),
        "value_tier": ("value tier by spend in the last 365 days", "text", None, list(VALUE_TIERS)),
        "lifecycle_stage": ("lifecycle stage", "text", None, list(LIFECYCLE_STAGES)),
        "retention_priority": (
            "value at risk: churn probability x CLV (sort by it to contact first)",
            "number",
            money,
            None,
        ),
        "priority_rank": ("rank in the list, 1 = highest objective", "integer", None, None),
        "group": (
            "treatment: contact; control: hold out (do not contact) to measure the uplift",
            "text",
            None,
            ["treatment", "control"],
        ),
        "objective": ("what the list is ranked by", "text", None, ["retention", "value", "offer"]),
        "objective_value": (
            "the objective's value: retention_priority, clv or offer_1_expected_value",
            "number",
            money,
            None,
        ),
    }
    if name in fixed:
        meaning, kind, unit, values = fixed[name]
    elif (found := _OFFER_COLUMN.match(name)) is not None:
        rank, what = found.group(1), found.group(2)
        meaning, kind, unit, values = {
            None: (f"offer ranked {rank} (offer id)", "text", None, None),
            "probability": (
                f"probability of buying offer {rank} in {offer_in}",
                "number",
                "probability (0 to 1)",
                None,
            ),
            "expected_value": (
                f"probability x the offer's average spend per order, offer {rank}",
                "number",
                money,
                None,
            ),
        }[what]
    elif name.endswith("_model_version"):
        model = name.removesuffix("_model_version")
        meaning, kind, unit, values = (
            f"registry version of the {model} model used (version@alias)",
            "text",
            None,
            None,
        )
    else:
        meaning, kind, unit, values = ("", "text", None, None)
    entry: dict[str, Any] = {"name": name, "meaning": meaning, "type": kind}
    if unit:
        entry["unit"] = unit
    if column_kind(name):
        entry["decimals"] = DECIMALS[str(column_kind(name))]
    if values:
        entry["values"] = values
    return entry


def data_dictionary(
    columns: list[str],
    horizons: Mapping[str, int | None],
    versions: Mapping[str, str],
    currency: str | None,
    **about: Any,
) -> dict[str, Any]:
    """The data dictionary of a scores file or target list with these `columns`: each
    column's meaning, type, unit, decimals and values, the models' horizons in days (by
    kind: `horizon`), the currency and model versions, and `about` (the file's date, the
    list's objective and budget, ...)."""
    return {
        **about,
        "currency": currency,
        "horizons_days": dict(horizons),
        "model_versions": dict(versions),
        "decimals": DECIMALS,
        "columns": [_column(str(c), horizons, currency) for c in columns],
    }
