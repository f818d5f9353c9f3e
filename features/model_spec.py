"""The model spec: one entry per model kind with everything every package needs to know of it.

A model kind is defined by its label (`features.labels`) and its feature service
(`features.feast_repo`), so the spec lives beside them. Training, serving, batch scoring,
monitoring and the command line read these entries and never re-list the kinds. Adding a kind
is one entry here plus its trainer (the function `trainer` names).

Kept free of heavy imports: the service reads it at start-up."""

from __future__ import annotations

from dataclasses import dataclass

from features.names import ACCEPTED, CHURN, CLV

# Registry aliases: training registers @challenger, the gate moves @champion.
CHALLENGER, CHAMPION = "challenger", "champion"
# Run artifact of each training run that monitoring reads (test rows, prediction, outcome).
REFERENCE_ARTIFACT = "reference/reference.parquet"


@dataclass(frozen=True)
class Metric:
    """A metric by name (`hit@{k}` takes the configured top-k) and its direction."""

    name: str
    higher_is_better: bool

    def key(self, top_k: int) -> str:
        """The metric's name with `{k}` filled in: "hit@5"."""
        return self.name.format(k=top_k)

    def better(self, value: float, reference: float, margin: float = 0.0) -> bool:
        """True when `value` beats `reference` by more than `margin` (a tie does not)."""
        if self.higher_is_better:
            return value > reference + margin
        return value < reference - margin


@dataclass(frozen=True)
class BacktestMetric:
    """A realised metric backtests track and the `monitoring.backtest` setting holding the
    largest tolerated change against its evaluation-time value."""

    metric: Metric
    margin_setting: str
    relative: bool = False  # the margin is a share of the evaluation value (MAE)


@dataclass(frozen=True)
class ModelSpec:
    """Everything about one model kind that is not its training code."""

    kind: str
    registry_name: str  # the registered MLflow model
    feature_service: str  # the Feast feature service it reads
    label_output: str  # the snapshot output with its labels (`features.snapshots`)
    target: str  # the label column in that output
    horizon_setting: str  # the `labels` setting with its horizon in days
    primary: Metric  # what it is graded, gated and compared on
    secondary: tuple[Metric, ...]  # significantly worse on one of these caps the grade at B
    gate_margin_setting: str  # the `training.gate` setting with the promotion margin
    prediction_column: str  # its score in batch scores and the prediction log
    backtest: tuple[BacktestMetric, ...]  # realised metrics monitoring tracks
    trainer: str  # "module:function" that trains and evaluates it
    explains: str  # what its reason codes explain, in words

    def primary_key(self, top_k: int) -> str:
        """The primary metric's name ("roc_auc", "hit@5")."""
        return self.primary.key(top_k)


MODEL_SPECS: dict[str, ModelSpec] = {
    spec.kind: spec
    for spec in (
        ModelSpec(
            kind="churn",
            registry_name="crmscore-churn",
            feature_service="churn_v1",
            label_output="labels_churn",
            target=CHURN,
            horizon_setting="churn_horizon_days",
            primary=Metric("roc_auc", True),
            secondary=(Metric("pr_auc", True), Metric("brier", False)),
            gate_margin_setting="churn_auc_margin",
            prediction_column="churn_probability",
            backtest=(
                BacktestMetric(Metric("roc_auc", True), "churn_auc_drop"),
                BacktestMetric(Metric("calibration_error", False), "churn_calibration_rise"),
            ),
            trainer="training.pipeline:run_churn",
            explains="the churn risk",
        ),
        ModelSpec(
            kind="clv",
            registry_name="crmscore-clv",
            feature_service="clv_v1",
            label_output="labels_clv",
            target=CLV,
            horizon_setting="clv_horizon_days",
            primary=Metric("mae", False),
            secondary=(
                Metric("spearman", True),
                Metric("top20_capture", True),
                Metric("normalized_gini", True),
            ),
            gate_margin_setting="clv_mae_margin",
            prediction_column="clv",
            backtest=(
                BacktestMetric(Metric("mae", False), "clv_mae_rise", relative=True),
                BacktestMetric(Metric("top20_capture", True), "clv_capture_drop"),
            ),
            trainer="training.pipeline:run_clv",
            explains="the expected value",
        ),
        ModelSpec(
            kind="nbo",
            registry_name="crmscore-nbo",
            feature_service="nbo_v1",
            label_output="labels_offer",
            target=ACCEPTED,
            horizon_setting="offer_horizon_days",
            primary=Metric("hit@{k}", True),
            secondary=(Metric("recall@10", True),),
            gate_margin_setting="nbo_hit_margin",
            prediction_column="offer_1_probability",
            backtest=(BacktestMetric(Metric("hit@{k}", True), "nbo_hit_drop"),),
            trainer="training.nbo_pipeline:run_nbo",
            explains="the offer's appeal",
        ),
    )
}
MODEL_KINDS: tuple[str, ...] = tuple(MODEL_SPECS)


def model_spec(kind: str) -> ModelSpec:
    """The spec of a model kind; a ValueError naming the known kinds otherwise."""
    try:
        return MODEL_SPECS[kind]
    except KeyError:
        raise ValueError(f"model '{kind}' unknown; expected one of {list(MODEL_KINDS)}") from None


def check_kinds(kinds: list[str] | tuple[str, ...]) -> list[str]:
    """`kinds` as a list, after checking each is a known model kind (ValueError otherwise)."""
    unknown = [k for k in kinds if k not in MODEL_SPECS]
    if unknown:
        raise ValueError(f"model {unknown} unknown; expected some of {list(MODEL_KINDS)}")
    return list(kinds)
