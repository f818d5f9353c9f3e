"""Typed monitoring settings: sampling, drift tests and thresholds, backtest and uplift."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DriftParams(_Frozen):
    """Per-feature drift tests and the thresholds that raise an alarm.

    Distance measures rather than p-values: on tens of thousands of rows every p-value test
    flags negligible differences, while a distance is stable in the sample size. Numerical
    columns use the normed Wasserstein distance (the distance in units of the reference
    standard deviation), categorical ones the Jensen-Shannon distance (which also sees new
    categories). Any method Evidently knows can be named (ks, psi, chisquare, ...)."""

    num_method: str = "wasserstein"
    num_threshold: float = 0.1
    cat_method: str = "jensenshannon"
    cat_threshold: float = 0.1
    # The prediction column is tested like a numerical feature with its own threshold.
    prediction_threshold: float = 0.1
    # Alarm when at least this share of the model's features drift ...
    drift_share: float = 0.3
    # ... or when any of these features drift (empty: none singled out).
    key_features: list[str] = Field(default_factory=list)


class QualityParams(_Frozen):
    """Data-quality checks on the current data, computed on all rows (never sampled)."""

    # A feature's missing share may rise by at most this much (share points) over reference.
    max_missing_increase: float = 0.1
    # Share of rows with a category never seen in the reference above this: an issue.
    max_unseen_share: float = 0.01
    # Alarm on a feature that is empty or constant now but was not in the reference.
    alarm_on_broken_columns: bool = True


class BacktestParams(_Frozen):
    """How much realised quality may fall short of the evaluation-time figure. The model spec
    (`features.model_spec`) names the setting of each tracked metric."""

    churn_auc_drop: float = 0.05
    churn_calibration_rise: float = 0.05
    clv_mae_rise: float = 0.25  # relative: realised MAE > (1 + 0.25) x evaluation MAE
    clv_capture_drop: float = 0.1
    nbo_hit_drop: float = 0.05  # hit@k, k being training.nbo.top_k


class UpliftParams(_Frozen):
    """Campaign uplift: the confidence level of the intervals and the bootstrap rounds."""

    confidence: float = 0.95
    bootstrap: int = 2000
    seed: int = 0


class MonitoringParams(_Frozen):
    """Everything monitoring needs; `monitoring:` in configs/settings.yaml."""

    # Drift reports use at most this many rows per side: a uniform random sample without
    # replacement drawn with `seed` (Evidently slows down badly on millions of rows).
    sample_rows: int = 50_000
    seed: int = 0
    # Add Evidently's DataSummaryPreset (per-column statistics and plots) to drift reports:
    # informative but slow, about 0.3 s per column whatever the row count.
    summary_preset: bool = False
    models: list[str] = Field(default_factory=lambda: ["churn", "clv"])
    reference_alias: str = "champion"
    drift: DriftParams = Field(default_factory=DriftParams)
    quality: QualityParams = Field(default_factory=QualityParams)
    backtest: BacktestParams = Field(default_factory=BacktestParams)
    uplift: UpliftParams = Field(default_factory=UpliftParams)
