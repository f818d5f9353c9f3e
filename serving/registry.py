"""The MLflow model registry as serving, batch scoring, monitoring and training read it: where
the store is, which version serves a model, and loading a version.

A registered version *is* the model's bundle (`serving.models`): training logs it as an
MLflow model whose loader is `serving.models` and whose data folder holds the bundle
(training/tracking.py). `load_registered` is the one loader: the API, batch scoring and
training's champion comparison all call it."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from features.catalog import Workspace
from features.model_spec import CHAMPION, MODEL_KINDS, model_spec
from serving.models import BundleError, BundleModel, ModelNotFound, _ensure_features_known

# The MLflow model's description, and the loader a crmscore bundle names in it.
MLMODEL_FILE = "MLmodel"
LOADER_MODULE = "serving.models"


def default_tracking_uri(paths: Workspace) -> str:
    """The embedded default: SQLite in the workspace (MLFLOW_TRACKING_URI overrides it)."""
    paths.mlflow_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{paths.mlflow_db}"


def is_tracking_server(tracking_uri: str) -> bool:
    """True for an MLflow tracking server (http/https): it stores and serves the artifacts."""
    return tracking_uri.split("://", 1)[0].lower() in ("http", "https")


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


class RegistryError(ValueError):
    """The model registry could not be read, or contradicts itself (an alias on a missing
    version): whatever needed a version stops here, nothing falls back to another."""


class NoVersion(ModelNotFound):
    """The registry answered: the model has no version behind the alias asked for."""


def alias_version(client: Any, name: str, alias: str) -> Any | None:
    """The version of registered model `name` behind `alias`; None only when the registry
    says there is none (no such registered model, or no such alias on it). Any other
    failure to read the registry is a RegistryError: it never reads as "no version"."""
    from mlflow.exceptions import MlflowException

    try:
        registered = client.get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise RegistryError(f"the model registry could not be read for {name}: {exc}") from exc
    except Exception as exc:
        raise RegistryError(
            f"the model registry could not be read for {name}: {type(exc).__name__}"
        ) from exc
    number = (registered.aliases or {}).get(alias)
    if number is None:
        return None
    try:
        return client.get_model_version(name, str(number))
    except Exception as exc:
        raise RegistryError(
            f"{name}@{alias} names version {number}, which the registry cannot give: "
            f"{type(exc).__name__}"
        ) from exc


def served_version(kind: str, client: Any) -> tuple[Any, str]:
    """The registry version that serves a model, with its alias: the @champion (training
    makes a model's first version its champion, so a trained model always has one).
    NoVersion when the registry has no champion; RegistryError when it cannot say."""
    name = model_spec(kind).registry_name
    version = alias_version(client, name, CHAMPION)
    if version is None:
        raise NoVersion(f"no @{CHAMPION} version of {name}: run `crmscore train` first")
    return version, CHAMPION


def champion_versions(client: Any) -> dict[str, str | None]:
    """The version number behind @champion of each model (None: the registry has none);
    RegistryError when the registry cannot say. Workers poll it to follow promotions and
    rollbacks made on any host."""
    out: dict[str, str | None] = {}
    for kind in MODEL_KINDS:
        version = alias_version(client, model_spec(kind).registry_name, CHAMPION)
        out[kind] = None if version is None else str(version.version)
    return out


def bundle_folder(model_dir: Path) -> Path:
    """The bundle inside a downloaded MLflow model: the python_function flavor's `data`
    folder (ModelNotFound when the model is not a crmscore bundle)."""
    from mlflow.models import Model

    flavor = Model.load(str(model_dir / MLMODEL_FILE)).flavors.get("python_function", {})
    if flavor.get("loader_module") != LOADER_MODULE or not flavor.get("data"):
        raise ModelNotFound(f"loaded by {flavor.get('loader_module')!r}, not {LOADER_MODULE}")
    return model_dir / str(flavor["data"])


def load_registered(kind: str, client: Any, alias: str | None = None) -> BundleModel:
    """A registered version of a model as its bundle: the version behind `alias`, or by
    default the one that serves (`served_version`). The version says which alias it came
    by ("3@challenger"); `info` has the registry and training details of the version.
    NoVersion when there is no such version, ModelNotFound when it is not a sound crmscore
    bundle (its files fail their checks: `BundleModel.from_folder`), RegistryError when the
    registry cannot be read."""
    import mlflow
    from mlflow.exceptions import MlflowException

    name = model_spec(kind).registry_name
    if alias is None:
        version, alias = served_version(kind, client)
    else:
        version = alias_version(client, name, alias)
        if version is None:
            raise NoVersion(f"{name} has no @{alias} version")
    try:
        run = client.get_run(version.run_id)
    except Exception as exc:
        raise RegistryError(
            f"the training run of {name} v{version.version} could not be read: {type(exc).__name__}"
        ) from exc
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{name}/{version.version}", dst_path=tmp
            )
            model = BundleModel.from_folder(
                bundle_folder(Path(local)), f"{version.version}@{alias}"
            )
        except (BundleError, ModelNotFound, MlflowException) as exc:
            raise ModelNotFound(f"{name} v{version.version} cannot be loaded: {exc}") from exc
        except (OSError, KeyError, ValueError) as exc:
            # Their messages name the temporary folder, which is gone: the type says enough.
            raise ModelNotFound(
                f"{name} v{version.version} is not a crmscore model bundle: retrain it "
                f"({type(exc).__name__})"
            ) from exc
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
