"""The API's JSON contract: requests, answers and errors (published as OpenAPI)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from features.segments import LIFECYCLE_STAGES, RFM_SEGMENTS, VALUE_TIERS
from serving.models import CHURN_BANDS


def _whole(value: Any) -> Any:
    """A float with no fraction as an int: JSON's 6.0 is the integer 6 (JSON Schema agrees)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


# Offers per customer.
TopK = Annotated[Annotated[int, Field(ge=1, le=50)] | None, BeforeValidator(_whole)]

# A customer id: a string of at most ID_MAX_LENGTH characters, not only spaces, or a
# whole number from 0 to ID_MAX_NUMBER (serving/openapi.py documents the same).
ID_MAX_LENGTH = 128
ID_MAX_NUMBER = 2**63 - 1


def _as_id(value: Any) -> Any:
    """A customer id as the store keys it: a string without surrounding spaces, a whole
    number as its digits. Anything else is refused with what was expected."""
    value = _whole(value)
    if isinstance(value, str):
        if len(value) > ID_MAX_LENGTH:
            raise ValueError(f"expected at most {ID_MAX_LENGTH} characters")
        if not value.strip():
            raise ValueError("expected an id, not an empty or blank string")
        return value.strip()
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= ID_MAX_NUMBER:
        return str(value)
    raise ValueError(f"expected a string or a whole number from 0 to {ID_MAX_NUMBER}")


CustomerId = Annotated[str, BeforeValidator(_as_id)]


class _Strict(BaseModel):
    """A request: no unknown field, no value of another type (no "true" for true)."""

    model_config = ConfigDict(extra="forbid", strict=True)


class ScoreRequest(_Strict):
    """One customer (`customer_id`) or a page of customers (`customer_ids`)."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [
                {"customer_id": "1364", "explain": True},
                {"customer_ids": ["1364", "2070", "new-customer-42"], "top_k": 3},
            ]
        },
    )

    customer_id: CustomerId | None = Field(
        default=None, description="trimmed; a whole number is taken as its digits"
    )
    customer_ids: list[CustomerId] | None = Field(default=None, min_length=1)
    explain: bool = Field(default=False, description="add reason codes (top drivers, in words)")
    top_k: TopK = Field(default=None, description="offers per customer")

    @model_validator(mode="after")
    def _one_of(self) -> ScoreRequest:
        null = {"customer_id", "customer_ids"} & self.model_fields_set
        if any(getattr(self, name) is None for name in null):
            raise ValueError("customer_id and customer_ids may not be null")
        if (self.customer_id is None) == (self.customer_ids is None):
            raise ValueError("give exactly one of customer_id or customer_ids")
        return self

    def ids(self) -> list[str]:
        """The customer ids asked for, in order."""
        return [self.customer_id] if self.customer_id is not None else list(self.customer_ids or [])


FeatureValue = float | int | str | None


class OfferRow(_Strict):
    """A customer x offer row the caller knows (history features of one offer)."""

    offer_id: str = Field(min_length=1, max_length=128)
    features: dict[str, FeatureValue] = Field(default_factory=dict)


class FeatureCustomer(_Strict):
    """A customer described by the caller: model features by name (missing ones are
    treated as unknown), optionally with their customer x offer rows."""

    customer_id: str = Field(default="what-if", min_length=1, max_length=128)
    features: dict[str, FeatureValue]
    offers: list[OfferRow] = Field(default_factory=list, max_length=200)


class FeaturesRequest(_Strict):
    """Scores from features the caller sends (what-if, or fresher data than the store's)."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [
                {
                    "customers": [
                        {
                            "customer_id": "what-if-1",
                            "features": {
                                "recency_days": 12.0,
                                "frequency_90d": 4,
                                "monetary_365d": 820.5,
                                "lifecycle_stage": "active",
                            },
                            "offers": [
                                {
                                    "offer_id": "BAKED BREAD/BUNS/ROLLS",
                                    "features": {"affinity_orders_365d": 6},
                                }
                            ],
                        }
                    ],
                    "explain": True,
                }
            ]
        },
    )

    customers: list[FeatureCustomer] = Field(min_length=1)
    explain: bool = False
    top_k: TopK = None


def _one_of(values: tuple[str, ...], description: str) -> Any:
    """A text field documented with its values (the values' names have one source)."""
    return Field(description=description, json_schema_extra={"enum": list(values)})


class ChurnAnswer(BaseModel):
    """Calibrated probability of churn in the churn horizon (`GET /v1/models`: horizon_days),
    risk band and flag."""

    probability: float = Field(
        description="probability (0 to 1, 6 decimals) that an active customer makes no "
        "purchase in the churn horizon"
    )
    band: str = _one_of(CHURN_BANDS, "risk band at the model's band edges (GET /v1/models)")
    flag: bool = Field(description="probability at or above the model's decision threshold")


class ClvAnswer(BaseModel):
    """Expected net revenue in the CLV horizon, its percentile and value tier."""

    value: float = Field(
        description="expected net revenue (after returns) in the CLV horizon, in the currency "
        "of GET /v1/models (2 decimals)"
    )
    percentile: float = Field(
        description="where the value falls among the model's test population (0 to 100)"
    )
    tier: str = _one_of(VALUE_TIERS, "high: the top share by percentile (GET /v1/models)")


class OfferAnswer(BaseModel):
    """One recommended offer: P(accept in the offer horizon) and probability x offer value."""

    rank: int = Field(description="1 = best")
    offer_id: str
    probability: float = Field(
        description="probability (0 to 1, 6 decimals) of buying the offer in the offer horizon"
    )
    expected_value: float = Field(
        description="probability x the offer's average spend per order, in the currency of "
        "GET /v1/models (2 decimals)"
    )


class Reasons(BaseModel):
    """Top drivers of a score, in words."""

    up: list[str]
    down: list[str]


class Segment(BaseModel):
    """The customer's segments at the feature snapshot (null for an unknown customer; a
    what-if answer shows the values sent)."""

    rfm_segment: str | None = Field(description=f"named RFM segment: {', '.join(RFM_SEGMENTS)}")
    value_tier: str | None = Field(
        description=f"value tier by spend in the last 365 days: {', '.join(VALUE_TIERS)}"
    )
    lifecycle_stage: str | None = Field(
        description=f"lifecycle stage: {', '.join(LIFECYCLE_STAGES)}"
    )


class CustomerScore(BaseModel):
    """Everything crmscore knows about one customer's future."""

    customer_id: str
    as_of: str | None = Field(description="time of the feature snapshot the scores use")
    feature_age_seconds: int | None = Field(
        description="age of those features now; past `serving.stale_feature_days` a warning says so"
    )
    churn: ChurnAnswer
    clv: ClvAnswer
    offers: list[OfferAnswer]
    segment: Segment
    retention_priority: float | None = Field(
        description="value at risk: churn probability x CLV, in the currency of GET "
        "/v1/models (2 decimals); null for an unknown customer (cold start), whose "
        "scores are population averages: rank known customers first"
    )
    model_versions: dict[str, str] = Field(description='{"churn": "3@champion", ...}')
    cold_start: bool = Field(
        description="unknown customer: churn, CLV and offers from population priors"
    )
    warnings: list[str] = Field(
        description="what to know before using the answer (cold start, stale features, no offers)"
    )
    reasons: dict[str, Reasons] | None = Field(
        default=None, description="top drivers per model, with `explain: true`"
    )


_SCORE_EXAMPLE: dict[str, Any] = {
    "request_id": "4f1c2b7e9a0d4c3b8e6f5a7d9c1b2e3f",
    "scores": [
        {
            "customer_id": "1364",
            "as_of": "2017-12-01T00:00:00+00:00",
            "feature_age_seconds": 3600,
            "churn": {"probability": 0.412, "band": "medium", "flag": False},
            "clv": {"value": 318.45, "percentile": 71.5, "tier": "medium"},
            "offers": [
                {
                    "rank": 1,
                    "offer_id": "FLUID MILK PRODUCTS",
                    "probability": 0.83,
                    "expected_value": 4.12,
                }
            ],
            "segment": {
                "rfm_segment": "Need Attention",
                "value_tier": "medium",
                "lifecycle_stage": "active",
            },
            "retention_priority": 131.2,
            "model_versions": {"churn": "3@champion", "clv": "2@champion", "nbo": "3@champion"},
            "cold_start": False,
            "warnings": [],
            "reasons": {
                "churn": {
                    "up": ["days since the last purchase (41) raises the churn risk"],
                    "down": ["purchase orders in the last 90 days (9) lowers the churn risk"],
                }
            },
        }
    ],
}


class ScoreResponse(BaseModel):
    """Answers in the order asked."""

    model_config = ConfigDict(json_schema_extra={"examples": [_SCORE_EXAMPLE]})

    request_id: str
    scores: list[CustomerScore]


class ModelInfo(BaseModel):
    """A served model: registry version, alias, training window, and what its outputs
    mean (horizon, unit, value sets)."""

    name: str
    version: str
    alias: str
    run_id: str
    test_cutoff: str | None
    training_cutoffs: str
    validation_cutoffs: str
    feature_service: str | None
    grade: str | None
    metrics: dict[str, float]
    horizon_days: int | None = Field(
        description="days ahead the model predicts over (null: an older version that did not "
        "record it)"
    )
    currency: str | None = Field(description="ISO code of the amounts (null: not configured)")
    predicts: str = Field(description="what the model predicts, in words")
    unit: str = Field(description="the unit of its main output")
    values: dict[str, dict[str, str]] = Field(
        description="the values of its bands, tiers and flags and what each means"
    )


class PredictionLogStatus(BaseModel):
    """The prediction log of the worker process that answered: rows written, waiting to be
    written, dropped (the queue was full), recovered (written from the spool of a worker that
    was killed), failed writes and the last failure (None once a write succeeded again)."""

    rows_written: int
    rows_waiting: int
    rows_dropped: int
    rows_recovered: int = 0
    failed_writes: int
    last_error: str | None = None


class ModelsResponse(BaseModel):
    """The models answering now, and the state of the prediction log (None when it is off)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "models": {
                        "churn": {
                            "name": "crmscore-churn",
                            "version": "3",
                            "alias": "champion",
                            "run_id": "0a1b2c3d4e5f",
                            "test_cutoff": "2017-10-01",
                            "training_cutoffs": "2017-04-01,2017-05-01",
                            "validation_cutoffs": "2017-07-01,2017-08-01",
                            "feature_service": "churn_v1",
                            "grade": "B",
                            "metrics": {"model_roc_auc": 0.9},
                            "horizon_days": 90,
                            "currency": None,
                            "predicts": "probability that an active customer makes no "
                            "purchase in the next 90 days",
                            "unit": "probability (0 to 1)",
                            "values": {
                                "band": {
                                    "low": "probability below 0.3",
                                    "medium": "0.3 to below 0.6",
                                    "high": "0.6 or more",
                                },
                                "flag": {"true": "probability 0.5 or more"},
                            },
                        }
                    },
                    "loaded_at": "2026-11-23T12:00:00+00:00",
                }
            ]
        }
    )

    models: dict[str, ModelInfo]
    loaded_at: str
    prediction_log: PredictionLogStatus | None = None
    precomputed_customers: int | None = Field(
        default=None,
        description="customers whose default answers the answering worker holds in memory "
        "(computed in the background after each load and materialize); null while they are "
        "computed per request",
    )


class ErrorBody(BaseModel):
    """What went wrong, where, and what was expected."""

    code: str
    message: str
    fields: list[dict[str, Any]] = Field(default_factory=list)
    request_id: str | None = None


class ErrorResponse(BaseModel):
    """Every 4xx/5xx answer has this body."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "error": {
                        "code": "invalid_request",
                        "message": "the request does not match the schema",
                        "fields": [
                            {"field": "top_k", "expected": "Input should be a valid integer"}
                        ],
                    }
                }
            ]
        }
    )

    error: ErrorBody


class Status(BaseModel):
    """Health and readiness."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"status": "ready", "detail": {"models_loaded": True, "online_store": True}}
            ]
        }
    )

    status: str
    detail: dict[str, Any] = Field(default_factory=dict)
