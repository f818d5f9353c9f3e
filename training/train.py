"""`crmscore train`: train, evaluate, report and register each model."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from feast import FeatureStore
from mlflow import MlflowClient

from features.config import LabelParams
from serving.registry import SERVING_ARTIFACTS
from training.config import TrainingParams
from training.evaluate import PRIMARY
from training.export import write_bundle, write_reference
from training.pipeline import RUNNERS, SERVICES, TrainResult, primary_metric
from training.report import write_report
from training.tracking import CHAMPION, data_fingerprint, load_alias, log_run, metric_key

LABEL_FILES = {
    "churn": "labels_churn.parquet",
    "clv": "labels_clv.parquet",
    "nbo": "labels_offer.parquet",
}
FEATURE_FILES = [
    "customer_features.parquet",
    "offer_features.parquet",
    "customer_offer_features.parquet",
]


def _metrics(result: TrainResult, champion: float | None) -> dict[str, float]:
    key, higher = PRIMARY[result.kind]
    model, baselines = result.scored[0], result.scored[1:]
    out = {f"model_{k}": v for k, v in model.metrics.items()}
    for k, (lo, hi) in model.intervals.items():
        out[f"model_{k}_ci_low"], out[f"model_{k}_ci_high"] = lo, hi
    for b in baselines:
        slug = "".join(ch if ch.isalnum() else "_" for ch in b.name.lower()).strip("_")
        out.update({f"baseline_{slug}_{k}": v for k, v in b.metrics.items()})
    values = [b.metrics[key] for b in baselines]
    out[f"best_baseline_{key}"] = max(values) if higher else min(values)
    if champion is not None:
        out[f"champion_{key}"] = champion
    return {metric_key(k): v for k, v in out.items()}


def train_models(
    kinds: list[str],
    store: FeatureStore,
    snapshot_dir: Path,
    labels: LabelParams,
    params: TrainingParams,
    report_dir: Path,
    client: MlflowClient,
    artifact_root: Path,
    settings_json: str,
    commit: str,
    id_salt: str = "",
) -> list[dict[str, Any]]:
    """Train each model, compare it with its baselines and the champion, log and register it
    as @challenger. Returns one summary per model."""
    summaries = []
    for kind in kinds:
        out_dir = report_dir / kind
        result = RUNNERS[kind](store, snapshot_dir, labels, params, out_dir)
        champion_model = load_alias(kind, CHAMPION, client)
        champion = (
            primary_metric(kind, champion_model, result.test_frame)
            if champion_model is not None
            else None
        )
        key = PRIMARY[kind][0]
        reports = write_report(result, out_dir, {key: champion} if champion is not None else None)
        fingerprint = data_fingerprint(
            [snapshot_dir / LABEL_FILES[kind], *(snapshot_dir / f for f in FEATURE_FILES)]
        )
        params_logged = {
            **{f"split_{k}": ",".join(v) for k, v in result.split.as_dict().items()},
            **{k: v for k, v in result.info.items()},
            "rows": result.rows,
            "feature_service": SERVICES[kind],
            "seed": params.seed,
        }
        tags = {
            "test_cutoff": result.split.test.date().isoformat(),
            "git_commit": commit,
            "data_fingerprint": fingerprint,
            "feature_service": SERVICES[kind],
            "grade": result.grade[0],
        }
        predictions = result.model.predict(result.test_frame)
        with tempfile.TemporaryDirectory() as tmp:
            bundle = write_bundle(kind, result.model, predictions, params, Path(tmp) / "s")
            reference = write_reference(
                kind,
                result.model,
                result.test_frame,
                predictions,
                Path(tmp) / "r",
                id_salt,
                params.seed,
            ).parent
            version = log_run(
                kind,
                result.model,
                _metrics(result, champion),
                params_logged,
                tags,
                [*reports, *result.plots],
                {SERVING_ARTIFACTS: bundle, "reference": reference},
                result.input_example,
                settings_json,
                artifact_root,
                client,
            )
        model_scored = result.scored[0]
        summaries.append(
            {
                "model": kind,
                "version": version,
                "grade": result.grade[0],
                "test_cutoff": tags["test_cutoff"],
                key: round(model_scored.metrics[key], 4),
                "best_baseline": result.grade[1],
                "champion_" + key: None if champion is None else round(champion, 4),
                "report": str(reports[1]),
            }
        )
    return summaries
