"""`crmscore train`: train, evaluate, report and register each model."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from feast import FeatureStore
from mlflow import MlflowClient

from features.catalog import Workspace
from features.config import LabelParams
from features.feast_repo import AFFINITY_VIEW, CUSTOMER_VIEW, OFFER_VIEW
from features.model_spec import CHAMPION, ModelSpec, check_kinds, model_spec
from features.privacy import resolve_id_key
from features.progress import stage
from serving.models import BundleModel, ModelNotFound
from serving.registry import load_registered
from training.config import TrainingParams
from training.contenders import BASELINE
from training.export import REFERENCE_DIR, write_reference
from training.pipeline import TrainResult, runner
from training.report import About, write_report
from training.tracking import PRIMARY_METRIC_TAG, data_fingerprint, log_run, metric_key

# Snapshot outputs every model's data fingerprint covers, beside its labels.
FEATURE_OUTPUTS = (CUSTOMER_VIEW, OFFER_VIEW, AFFINITY_VIEW)

log = logging.getLogger(__name__)


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in name.lower()).strip("_")


def _metrics(result: TrainResult, spec: ModelSpec, champion: float | None) -> dict[str, float]:
    key, higher = result.primary_key, spec.primary.higher_is_better
    model, others = result.scored[0], result.scored[1:]
    out = {f"model_{k}": v for k, v in model.metrics.items()}
    for k, (lo, hi) in model.intervals.items():
        out[f"model_{k}_ci_low"], out[f"model_{k}_ci_high"] = lo, hi
    for b in others:
        prefix = "baseline" if b.role == BASELINE else "contender"
        out.update({f"{prefix}_{_slug(b.name)}_{k}": v for k, v in b.metrics.items()})
    for p in result.paired:  # model minus each contender on the primary metric, + = better
        slug = f"paired_{_slug(p.baseline)}_{key}"
        out[slug], out[f"{slug}_ci_low"], out[f"{slug}_ci_high"] = p.difference, p.low, p.high
    values = [b.metrics[key] for b in others if b.role == BASELINE]
    if model.role == BASELINE:
        values.append(model.metrics[key])
    out[f"best_baseline_{key}"] = max(values) if higher else min(values)
    if champion is not None:
        out[f"champion_{key}"] = champion
    return {metric_key(k): v for k, v in out.items()}


def _champion(kind: str, client: MlflowClient) -> BundleModel | None:
    """The current @champion (None when there is none, or it is not a bundle)."""
    try:
        model = load_registered(kind, client, CHAMPION)
    except ModelNotFound:
        return None
    model.threads = 0
    return model


def train_models(
    kinds: list[str],
    store: FeatureStore,
    paths: Workspace,
    labels: LabelParams,
    params: TrainingParams,
    client: MlflowClient,
    settings_json: str,
    commit: str,
    id_salt: str = "",
    currency: str = "",
) -> list[dict[str, Any]]:
    """Train each model, compare it with its baselines and the champion, log and register it
    as @challenger (and as @champion when the model has none yet). Reads the snapshots of
    the workspace `paths`, writes reports to its reports folder. Returns one summary per
    model. Customer ids in the reference samples are hashed with `id_salt` (the configured
    key), else the workspace's key (`features.privacy.resolve_id_key`); model cards name
    `currency` (the dataset's) beside amounts."""
    summaries = []
    id_key = resolve_id_key(id_salt, paths)
    about = About(labels, currency, params.nbo.top_k)
    for kind in check_kinds(kinds):
        spec = model_spec(kind)
        out_dir = paths.model_reports(kind)
        with stage(log, f"train {kind}: training set, fit and evaluation"):
            result = runner(kind)(store, paths, labels, params, out_dir)
        # The horizon the model predicts over, for the answers (a CLV extrapolated to a
        # longer one than it was trained at already says which).
        result.model.meta.setdefault("horizon_days", result.split.horizon_days)
        key = result.primary_key
        with stage(log, f"train {kind}: champion and report"):
            champion_model = _champion(kind, client)
            champion = result.primary_metric(champion_model) if champion_model is not None else None
            report = write_report(
                result, out_dir, about, {key: champion} if champion is not None else None
            )
        fingerprint = data_fingerprint(
            [paths.snapshot(spec.label_output), *(paths.snapshot(o) for o in FEATURE_OUTPUTS)]
        )
        params_logged = {
            **{f"split_{k}": ",".join(v) for k, v in result.split.as_dict().items()},
            **{k: v for k, v in result.info.items()},
            "rows": result.rows,
            "feature_service": spec.feature_service,
            "seed": params.seed,
        }
        tags = {
            "test_cutoff": result.split.test.date().isoformat(),
            "git_commit": commit,
            "data_fingerprint": fingerprint,
            "feature_service": spec.feature_service,
            "grade": result.grade[0],
            PRIMARY_METRIC_TAG: key,
        }
        with (
            stage(log, f"train {kind}: log and register in MLflow"),
            tempfile.TemporaryDirectory() as tmp,
        ):
            reference = write_reference(
                result.model,
                result.test_frame,
                result.test_predictions,
                Path(tmp) / "reference",
                id_key,
                params.seed,
            ).parent
            version = log_run(
                kind,
                result.model,
                _metrics(result, spec, champion),
                params_logged,
                tags,
                [report, *result.plots],
                {REFERENCE_DIR: reference},
                result.input_example,
                settings_json,
                paths.mlflow_artifacts,
                client,
            )
        if champion_model is None:
            # The first version: there is always a champion, even one short of the gate
            # (the best contender on validation; its grade and report say what it lacks).
            client.set_registered_model_alias(spec.registry_name, CHAMPION, str(version))
        model_scored = result.scored[0]
        summaries.append(
            {
                "model": kind,
                "version": version,
                "contender": result.champion,
                "grade": result.grade[0],
                "test_cutoff": tags["test_cutoff"],
                key: round(model_scored.metrics[key], 4),
                "best_baseline": result.grade[1],
                "champion_" + key: None if champion is None else round(champion, 4),
                "report": str(report),
            }
        )
    return summaries
