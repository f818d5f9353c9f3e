"""The reference sample logged with each model's training run, and its evaluation metrics.

Every training run logs `reference/reference.parquet` (customer_hash, event_timestamp, the
model's raw features, prediction, target; offer_id for nbo) in the run of the registered
model version. Drift compares current data against it; backtests compare realised quality
against the run's metrics."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from typing import Any

import mlflow
import pandas as pd
from mlflow import MlflowClient

from features.model_spec import CHAMPION, MODEL_KINDS, REFERENCE_ARTIFACT, model_spec
from monitoring.privacy import CUSTOMER_HASH
from serving.registry import alias_version

# Columns of the reference that are not features.
NOT_FEATURES = (CUSTOMER_HASH, "event_timestamp", "prediction", "target", "offer_id")


class ReferenceError(ValueError):
    """No usable reference: the message names the model, version and what is missing."""


@dataclass(frozen=True)
class Reference:
    """A model version's reference sample and evaluation-time metrics."""

    kind: str
    version: str
    alias: str | None
    run_id: str
    frame: pd.DataFrame
    metrics: dict[str, float]

    @property
    def features(self) -> list[str]:
        """The model's feature columns, in the reference's order."""
        return [c for c in self.frame.columns if c not in NOT_FEATURES]

    def describe(self) -> dict[str, Any]:
        """JSON-ready identity of the reference (no data); `as_of`: the score date of its
        rows (the training run's test cutoff)."""
        as_of = None
        if "event_timestamp" in self.frame and len(self.frame):
            as_of = str(pd.to_datetime(self.frame["event_timestamp"], utc=True).max().date())
        return {
            "registered_model": model_spec(self.kind).registry_name,
            "version": self.version,
            "alias": self.alias,
            "run_id": self.run_id,
            "rows": len(self.frame),
            "as_of": as_of,
        }


def resolve_version(
    client: MlflowClient, kind: str, version: str | None = None, alias: str = CHAMPION
) -> tuple[str, str | None]:
    """(version, alias): `version` as given ("3" or "3@champion"), else the version behind
    `alias` (a ReferenceError when the registry has none: training always makes a
    champion, so nothing stands in for it). A registry that cannot be read raises
    `serving.registry.RegistryError`: an error never reads as "no version"."""
    name = model_spec(kind).registry_name
    if version:
        number, _, tag = str(version).partition("@")
        return number, tag or None
    found = alias_version(client, name, alias)
    if found is None:
        raise ReferenceError(f"{name} has no @{alias} version: run `crmscore train` first")
    return str(found.version), alias


def load_reference(
    client: MlflowClient, kind: str, version: str | None = None, alias: str = CHAMPION
) -> Reference:
    """The reference of a registered model version (see `resolve_version`)."""
    if kind not in MODEL_KINDS:
        raise ReferenceError(f"model '{kind}': expected one of {list(MODEL_KINDS)}")
    number, tag = resolve_version(client, kind, version, alias)
    name = model_spec(kind).registry_name
    try:
        run_id = client.get_model_version(name, number).run_id
    except mlflow.exceptions.MlflowException as exc:
        raise ReferenceError(f"{name} version {number} not found in the registry") from exc
    if not run_id:
        raise ReferenceError(f"{name} version {number} has no training run")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = client.download_artifacts(run_id, REFERENCE_ARTIFACT, tmp)
        except (mlflow.exceptions.MlflowException, OSError) as exc:
            raise ReferenceError(
                f"{name} version {number} (run {run_id}) has no {REFERENCE_ARTIFACT}: "
                "retrain it with a crmscore that logs reference data"
            ) from exc
        frame = pd.read_parquet(path)
    missing = [c for c in ("prediction",) if c not in frame]
    if missing:
        raise ReferenceError(f"{name} version {number}: {REFERENCE_ARTIFACT} lacks {missing}")
    metrics = dict(client.get_run(run_id).data.metrics)
    return Reference(kind, number, tag, run_id, frame, metrics)
