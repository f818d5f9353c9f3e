"""Typed training settings: splits, model parameters, calibration, offers and the promotion gate."""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SplitParams(_Frozen):
    """Time-based split: test on the latest fully observed cutoff, validate on the ones before.

    A training cutoff's label window must end before the first validation cutoff, and a
    validation cutoff's before the test cutoff, so no outcome period is shared."""

    test_cutoff: date | None = None  # default: the latest cutoff with a fully observed horizon
    valid_cutoffs: int = 2
    max_train_cutoffs: int = 24
    # After the choices made on validation (rounds, contender, calibration), fit LightGBM
    # again on the training and validation cutoffs together (churn: with the gap's too,
    # `ChurnParams.refit_gap`): the served model then learns from the latest seasons.
    refit: bool = True


class ChurnParams(_Frozen):
    """Churn classifier, calibration and the bands and flag built on its probability."""

    lgbm: dict[str, Any] = Field(default_factory=dict)
    # The refit also learns from the gap's cutoffs: between training and validation, their
    # outcome observed before the test cutoff (`TimeSplit.gap`). Not for CLV: on Online
    # Retail its gap (June to October 2010) moved the June 2011 test cutoff's total bias
    # from -13% to +15%. Off by default for churn too: LightGBM alone gained (ROC-AUC 0.777
    # -> 0.780) but the served model's calibration error rose (0.049 -> 0.083 on Online
    # Retail, 0.015 -> 0.021 on Complete Journey; BENCHMARKS.md, issue #15 sixth part).
    refit_gap: bool = False
    calibration: list[str] = Field(default_factory=lambda: ["isotonic", "platt"])
    threshold: float = 0.5
    band_edges: tuple[float, float] = (0.3, 0.6)  # low < 0.3 <= medium < 0.6 <= high


class ClvParams(_Frozen):
    """CLV regressor; the formulations listed are compared on validation, the best is kept."""

    lgbm: dict[str, Any] = Field(default_factory=dict)
    formulations: list[str] = Field(default_factory=lambda: ["two_part", "tweedie", "btyd_tweedie"])
    # Variance powers a Tweedie formulation is fitted with; validation MAE chooses.
    tweedie_powers: list[float] = Field(default_factory=lambda: [1.3, 1.6, 1.9], min_length=1)
    high_value_share: float = 0.2


class NboParams(_Frozen):
    """Next-best-offer ranker and its candidate generation and rules."""

    lgbm: dict[str, Any] = Field(default_factory=dict)
    # LightGBM objectives compared on validation (hit@top_k); the better one is kept.
    # "binary": P(accept) per pair; "lambdarank": a ranker per customer and cutoff, its
    # score mapped to a probability by a logistic fit on validation.
    objectives: list[Literal["binary", "lambdarank"]] = ["binary", "lambdarank"]
    # Candidates: the customer's most bought offers of the last year, the cutoff's most
    # popular and fastest-rising offers, and the offers most bought with the customer's
    # (co-purchase neighbours: each offer keeps its `neighbours_per_offer` nearest).
    popular_candidates: int = 50
    history_candidates: int = 100
    trending_candidates: int = 10
    neighbour_candidates: int = 20
    neighbours_per_offer: int = 20
    # Offers are ranked by P(accept) ("probability") or by P(accept) x offer value
    # ("expected_value").
    rank_by: Literal["probability", "expected_value"] = "probability"
    top_k: int = 5
    # Pairs grow with customers x candidates: train on the most recent cutoffs only, and on
    # the training cutoffs keep every accepted pair and at most this many others per
    # customer (`training.nbo.sample_negatives`; None: all). Validation and test cutoffs
    # always score every candidate.
    max_train_cutoffs: int = 7
    train_negatives_per_query: int | None = Field(default=50, gt=0)
    exclude_bought_within_days: int | None = None  # e.g. 7: do not offer what was just bought


class GateParams(_Frozen):
    """A challenger becomes champion only when it beats the champion by more than these
    margins on the same test cutoff."""

    churn_auc_margin: float = 0.0
    clv_mae_margin: float = 0.0
    nbo_hit_margin: float = 0.0
    # A CLV whose total predicted value is off the actual total by more than this share is
    # corrected on validation, is not graded A on the test cutoff, and is not promoted.
    clv_max_total_bias: float = 0.1


class TrainingParams(_Frozen):
    """Everything `crmscore train` needs besides the data."""

    seed: int = 42
    bootstrap: int = 200
    # Each of the training, validation and test parts needs this many labelled customers.
    min_customers: int = 100
    # More label rows (customer x cutoff) than this: train on a seeded sample of customers,
    # stratified on the label, said in the report (training.datasets.sample_customers).
    max_training_rows: int = Field(default=3_000_000, gt=0)
    split: SplitParams = Field(default_factory=SplitParams)
    churn: ChurnParams = Field(default_factory=ChurnParams)
    clv: ClvParams = Field(default_factory=ClvParams)
    nbo: NboParams = Field(default_factory=NboParams)
    gate: GateParams = Field(default_factory=GateParams)
