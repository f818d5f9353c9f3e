"""Typed training settings: splits, model parameters, calibration, offers and the promotion gate."""

from __future__ import annotations

from datetime import date
from typing import Any

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


class ChurnParams(_Frozen):
    """Churn classifier, calibration and the bands and flag built on its probability."""

    lgbm: dict[str, Any] = Field(default_factory=dict)
    calibration: list[str] = Field(default_factory=lambda: ["isotonic", "platt"])
    threshold: float = 0.5
    band_edges: tuple[float, float] = (0.3, 0.6)  # low < 0.3 <= medium < 0.6 <= high


class ClvParams(_Frozen):
    """CLV regressor; the formulations listed are compared on validation, the best is kept."""

    lgbm: dict[str, Any] = Field(default_factory=dict)
    formulations: list[str] = Field(default_factory=lambda: ["two_part", "tweedie", "l1"])
    high_value_share: float = 0.2
    # A model whose total predicted value is off the actual total by more than this share
    # on the test cutoff is not graded A, whatever its MAE.
    max_total_bias: float = 0.1


class NboParams(_Frozen):
    """Next-best-offer ranker and its candidate generation and rules."""

    lgbm: dict[str, Any] = Field(default_factory=dict)
    popular_candidates: int = 50
    history_candidates: int = 100
    top_k: int = 5
    # Pairs grow with customers x candidates: train on the most recent cutoffs only.
    max_train_cutoffs: int = 4
    exclude_bought_within_days: int | None = None  # e.g. 7: do not offer what was just bought


class GateParams(_Frozen):
    """A challenger becomes champion only when it beats both by these margins (test set)."""

    churn_auc_margin: float = 0.0
    clv_mae_margin: float = 0.0
    nbo_hit_margin: float = 0.0


class TrainingParams(_Frozen):
    """Everything `crmscore train` needs besides the data."""

    seed: int = 42
    bootstrap: int = 200
    # Each of the training, validation and test parts needs this many labelled customers.
    min_customers: int = 100
    split: SplitParams = Field(default_factory=SplitParams)
    churn: ChurnParams = Field(default_factory=ChurnParams)
    clv: ClvParams = Field(default_factory=ClvParams)
    nbo: NboParams = Field(default_factory=NboParams)
    gate: GateParams = Field(default_factory=GateParams)
