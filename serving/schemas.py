"""The API's JSON contract: requests, answers and errors (published as OpenAPI)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator


def _whole(value: Any) -> Any:
    """A float with no fraction as an int: JSON's 6.0 is the integer 6 (JSON Schema agrees)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


# Offers per customer.
TopK = Annotated[Annotated[int, Field(ge=1, le=50)] | None, BeforeValidator(_whole)]


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

    customer_id: str | None = Field(default=None, min_length=1, max_length=128)
    customer_ids: list[str] | None = Field(default=None, min_length=1)
    explain: bool = Field(default=False, description="add reason codes (top drivers, in words)")
    top_k: TopK = Field(default=None, description="offers per customer")

    @model_validator(mode="after")
    def _one_of(self) -> ScoreRequest:
        null = {"customer_id", "customer_ids"} & self.model_fields_set
        if any(getattr(self, name) is None for name in null):
            raise ValueError("customer_id and customer_ids may not be null")
        if (self.customer_id is None) == (self.customer_ids is None):
            raise ValueError("give exactly one of customer_id or customer_ids")
        for i, cid in enumerate(self.customer_ids or []):
            if not 1 <= len(cid) <= 128:
                raise ValueError(f"customer_ids[{i}]: expected 1 to 128 characters")
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


class ChurnAnswer(BaseModel):
    """Calibrated probability of churn in the horizon, risk band and flag."""

    probability: float
    band: str
    flag: bool


class ClvAnswer(BaseModel):
    """Expected net revenue in the horizon, its percentile and value tier."""

    value: float
    percentile: float
    tier: str


class OfferAnswer(BaseModel):
    """One recommended offer: P(accept in the horizon) and probability x offer value."""

    rank: int
    offer_id: str
    probability: float
    expected_value: float


class Reasons(BaseModel):
    """Top drivers of a score, in words."""

    up: list[str]
    down: list[str]


class CustomerScore(BaseModel):
    """Everything crmscore knows about one customer's future."""

    customer_id: str
    as_of: str | None = Field(description="time of the feature snapshot the scores use")
    feature_age_seconds: int | None = Field(description="age of those features now")
    churn: ChurnAnswer
    clv: ClvAnswer
    offers: list[OfferAnswer]
    segment: dict[str, str | None]
    retention_priority: float = Field(description="value at risk: P(churn) x CLV")
    model_versions: dict[str, str]
    cold_start: bool
    warnings: list[str]
    reasons: dict[str, Reasons] | None = None


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
    """A served model: registry version, alias and training window."""

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
