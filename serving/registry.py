"""The MLflow model registry as serving, batch scoring and monitoring read it: where the
store is, which version serves a model, and loading that version's bundle.

Training writes to the same registry (training/tracking.py) through these helpers."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from features.catalog import Workspace
from features.model_spec import CHALLENGER, CHAMPION, model_spec
from serving.models import BundleModel, ModelNotFound, _ensure_features_known

# Run artifact with the serving bundle (until the registered model itself is the bundle).
SERVING_ARTIFACTS = "serving"


def default_tracking_uri(paths: Workspace) -> str:
    """The embedded default: SQLite in the workspace (MLFLOW_TRACKING_URI overrides it)."""
    paths.mlflow_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{paths.mlflow_db}"


def configure(tracking_uri: str) -> Any:
    """Point MLflow at the tracking server or local store; returns an `MlflowClient`."""
    import mlflow

    # MLflow also exports the URI as MLFLOW_TRACKING_URI, which crmscore's settings read as
    # the user's choice: keep the variable as the user set it, or the next command run in
    # this process (another workspace) would use this store.
    user_choice = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    if user_choice is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = user_choice
    return mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def served_version(kind: str, client: Any) -> tuple[Any, str]:
    """The registry version that serves a model, with its alias: the @champion, else the
    @challenger while no version has passed the gate."""
    from mlflow.exceptions import MlflowException

    name = model_spec(kind).registry_name
    for alias in (CHAMPION, CHALLENGER):
        try:
            return client.get_model_version_by_alias(name, alias), alias
        except MlflowException:
            continue
    raise ModelNotFound(f"no registered version of {name}: run `crmscore train` first")


def load_registered(kind: str, client: Any) -> BundleModel:
    """The served version of a model (`served_version`) from its serving bundle; the version
    says which alias it came by: "3@challenger"."""
    import mlflow

    name = model_spec(kind).registry_name
    version, alias = served_version(kind, client)
    run = client.get_run(version.run_id)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            folder = mlflow.artifacts.download_artifacts(
                run_id=version.run_id, artifact_path=SERVING_ARTIFACTS, dst_path=tmp
            )
        except (OSError, mlflow.exceptions.MlflowException) as exc:
            raise ModelNotFound(
                f"{name} v{version.version} has no serving bundle: retrain it ({exc})"
            ) from exc
        model = BundleModel.from_folder(Path(folder), f"{version.version}@{alias}")
    params = run.data.params
    model.info = {
        "name": name,
        "version": str(version.version),
        "alias": alias,
        "run_id": version.run_id,
        "test_cutoff": run.data.tags.get("test_cutoff"),
        "training_cutoffs": params.get("split_train", ""),
        "validation_cutoffs": params.get("split_valid", ""),
        "feature_service": run.data.tags.get("feature_service"),
        "grade": run.data.tags.get("grade"),
        "metrics": {k: round(v, 6) for k, v in run.data.metrics.items() if k.startswith("model_")},
    }
    _ensure_features_known(model)
    return model
