"""MLflow: one experiment per model, runs with everything needed to reproduce them, the model
registry with @challenger / @champion aliases, the promotion gate and rollback.

The registered model version is the model's bundle (`serving.models`): LightGBM's text
files and model.json in the MLflow model's data folder, loaded by `serving.models`
(`loader_module`); nothing is pickled. `serving.registry.load_registered` reads it back."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.models import infer_signature

from features.model_spec import CHALLENGER, CHAMPION, model_spec
from serving.models import BundleModel
from serving.registry import alias_version, is_tracking_server
from training.config import GateParams, NboParams

PREVIOUS_CHAMPION_TAG = "previous_champion_version"
# Run tag with the name of the primary metric the run was graded on ("hit@5").
PRIMARY_METRIC_TAG = "primary_metric"
# The bundle's folder inside the MLflow model's data.
BUNDLE_FOLDER = "bundle"
# What `serving.models` needs beside crmscore itself; listing them avoids MLflow's slow
# requirement inference.
MODEL_REQUIREMENTS = ["lightgbm==4.7.0", "pandas", "numpy"]


def data_fingerprint(paths: list[Path]) -> str:
    """SHA-256 over the bytes of the files a model was trained from."""
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(path.name.encode())
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def git_commit(root: Path) -> str:
    """The checked-out commit, or 'unknown' outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            check=True,
            capture_output=True,
            text=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return out.stdout.strip()


def _experiment(name: str, artifact_root: Path) -> str:
    """The experiment's id, created when missing: a tracking server chooses where its
    artifacts go (hosts other than the trainer's download them through it); a local store
    keeps them under `artifact_root`."""
    found = mlflow.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    if is_tracking_server(mlflow.get_tracking_uri()):
        return str(mlflow.create_experiment(name))
    return str(mlflow.create_experiment(name, artifact_location=(artifact_root / name).as_uri()))


@dataclass(frozen=True)
class RunRecord:
    """What the gate needs from a training run, as logged metrics."""

    key: str  # the primary metric ("roc_auc", "hit@5")
    model: float
    best_baseline: float
    champion: float | None
    total_bias: float | None = None  # a CLV's total predicted / actual - 1 (test cutoff)


def log_run(
    kind: str,
    model: BundleModel,
    metrics: dict[str, float],
    params: dict[str, Any],
    tags: dict[str, str],
    artifacts: list[Path],
    artifact_dirs: dict[str, Path],
    input_example: pd.DataFrame,
    settings_json: str,
    artifact_root: Path,
    client: MlflowClient,
) -> str:
    """Log one training run, register the model's bundle as a new version and give it
    @challenger.

    `artifacts` are logged under report/, each folder of `artifact_dirs` under its key.
    Returns the new version number."""
    name = model_spec(kind).registry_name
    experiment_id = _experiment(f"crmscore-{kind}", artifact_root)
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"{kind}-{tags['test_cutoff']}"):
        mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if np.isfinite(v)})
        mlflow.set_tags(tags)
        mlflow.log_text(settings_json, "settings.json")
        for path in artifacts:
            mlflow.log_artifact(str(path), artifact_path="report")
        for artifact_path, folder in artifact_dirs.items():
            mlflow.log_artifacts(str(folder), artifact_path=artifact_path)
        # Integers as floats: a missing value at scoring time must not break the signature.
        example = input_example.head(3).apply(
            lambda c: c.astype("float64") if pd.api.types.is_integer_dtype(c) else c
        )
        with tempfile.TemporaryDirectory() as tmp:
            bundle = model.save(Path(tmp) / BUNDLE_FOLDER)
            info = mlflow.pyfunc.log_model(
                name="model",
                loader_module="serving.models",
                data_path=str(bundle),
                signature=infer_signature(example, model.predict(example)),
                input_example=example,
                pip_requirements=MODEL_REQUIREMENTS,
                registered_model_name=name,
            )
    version = str(info.registered_model_version)
    client.set_registered_model_alias(name, CHALLENGER, version)
    return version


def _record(kind: str, version: Any, client: MlflowClient) -> RunRecord:
    run = client.get_run(version.run_id)
    # Runs name the metric they were graded on; older ones used the default top-k.
    key = run.data.tags.get(PRIMARY_METRIC_TAG) or model_spec(kind).primary_key(NboParams().top_k)
    m = run.data.metrics
    return RunRecord(
        key,
        m[metric_key(f"model_{key}")],
        m[metric_key(f"best_baseline_{key}")],
        m.get(metric_key(f"champion_{key}")),
        m.get("model_total_bias"),
    )


def metric_key(name: str) -> str:
    """MLflow metric names cannot hold '@' (hit@5 is logged as hit_at_5)."""
    return name.replace("@", "_at_")


@dataclass(frozen=True)
class GateDecision:
    """The gate's verdict with the figures it compared."""

    kind: str
    promoted: bool
    version: str | None
    reason: str

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "model": self.kind,
            "promoted": self.promoted,
            "version": self.version,
            "reason": self.reason,
        }


def gate_passes(kind: str, record: RunRecord, gate: GateParams) -> tuple[bool, str]:
    """Beat the current champion on the same test cutoff by the margin (a tie is not a
    win), with a CLV total within `clv_max_total_bias` of the actual. Every version is
    already the best of its contenders (the classical models among them) on validation,
    so with no champion the first version always passes: there is always a champion."""
    spec = model_spec(kind)
    key = record.key
    margin = float(getattr(gate, spec.gate_margin_setting))
    if record.total_bias is not None and abs(record.total_bias) > gate.clv_max_total_bias:
        return False, (
            f"its total predicted value is {record.total_bias:+.0%} off the actual total "
            f"(more than ±{gate.clv_max_total_bias:.0%})"
        )
    if record.champion is None:
        return True, f"{key} {record.model:.4f}: no champion yet; chosen on validation"
    if not spec.primary.better(record.model, record.champion, margin):
        return False, (
            f"{key} {record.model:.4f} does not beat the champion ({record.champion:.4f}) by "
            f"more than the margin {margin}"
        )
    champion = f"the champion ({record.champion:.4f})"
    return True, f"{key} {record.model:.4f} beats {champion} by more than {margin}"


def promote(kind: str, gate: GateParams, client: MlflowClient) -> GateDecision:
    """Move @champion to the @challenger version when the gate passes, recording the
    champion it replaces (the registered model's `previous_champion_version` tag) for
    `rollback`. Only a registry that has no champion lets a challenger in without the
    comparison; one that cannot be read stops the promotion (RegistryError)."""
    name = model_spec(kind).registry_name
    challenger = alias_version(client, name, CHALLENGER)
    if challenger is None:
        return GateDecision(kind, False, None, "no @challenger version: run `crmscore train`")
    champion = alias_version(client, name, CHAMPION)
    if champion is not None and champion.version == challenger.version:
        return GateDecision(kind, False, str(challenger.version), "the challenger is the champion")
    passed, reason = gate_passes(kind, _record(kind, challenger, client), gate)
    if passed:
        if champion is not None:
            client.set_registered_model_tag(name, PREVIOUS_CHAMPION_TAG, str(champion.version))
        client.set_registered_model_alias(name, CHAMPION, str(challenger.version))
    return GateDecision(kind, passed, str(challenger.version), reason)


def rollback(kind: str, client: MlflowClient) -> GateDecision:
    """Put the previous champion (recorded by `promote`) back as @champion; the champion it
    replaces becomes the previous one, so a second rollback undoes the first."""
    name = model_spec(kind).registry_name
    champion = alias_version(client, name, CHAMPION)
    if champion is None:
        return GateDecision(kind, False, None, "no @champion version: run `crmscore train`")
    previous = client.get_registered_model(name).tags.get(PREVIOUS_CHAMPION_TAG)
    if not previous:
        return GateDecision(kind, False, None, "no previous champion to roll back to")
    current = str(champion.version)
    client.set_registered_model_alias(name, CHAMPION, previous)
    client.set_registered_model_tag(name, PREVIOUS_CHAMPION_TAG, current)
    return GateDecision(kind, True, previous, f"@champion moved back from version {current}")


MASK = "***"
# Settings whose whole value is a secret, by a word in their name.
SECRET_NAMES = re.compile(r"password|passwd|secret|token|api_?key|salt|credential", re.I)
# A URL's password (scheme://user:password@host) and secret query values (?token=...).
URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^/@:\s]*:)[^/@\s]*(?=@)", re.I)
SECRET_QUERY = re.compile(
    r"(?P<head>[?&;](?:password|passwd|secret|token|access_?token|api_?key|key|sig|signature)=)"
    r"[^&;#\s]*",
    re.I,
)


def mask_secrets(value: Any, name: str = "") -> Any:
    """`value` (settings as JSON-like data) with secrets replaced by "***": the value of a
    setting named like a secret, passwords in URLs and secret query parameters."""
    if isinstance(value, dict):
        return {k: mask_secrets(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_secrets(v, name) for v in value]
    if isinstance(value, str):
        if value and SECRET_NAMES.search(name):
            return MASK
        value = URL_PASSWORD.sub(lambda m: m["head"] + MASK, value)
        return SECRET_QUERY.sub(lambda m: m["head"] + MASK, value)
    return value


def settings_json(settings: Any) -> str:
    """Resolved settings as JSON, for the run, secrets masked (`mask_secrets`)."""
    return json.dumps(mask_secrets(json.loads(settings.model_dump_json())), indent=2)
