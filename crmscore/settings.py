"""Settings: `configs/settings.yaml` + `configs/datasets/<name>.yaml` -> one frozen object.

Built when a command runs, never at import. Hosts and secrets come from the environment."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from features.catalog import DEFAULT_ROOT, Workspace
from features.config import (
    DatasetConfig,
    EngineParams,
    FeastParams,
    FeatureParams,
    LabelParams,
    SegmentParams,
)
from monitoring.config import MonitoringParams
from serving.config import REGISTRY_URL_VAR, ServingParams
from training.config import TrainingParams

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Where an installed crmscore keeps its default configs (the wheel puts configs/ there).
PACKAGED_CONFIGS = Path(__file__).resolve().parent / "configs"


# Names the configuration profile: configs/<profile>/settings.yaml over configs/settings.yaml.
PROFILE_VAR = "CRMSCORE_PROFILE"


class SettingsError(ValueError):
    """A settings or dataset file that cannot be used; the message names the file and field."""


class Settings(BaseModel):
    """Everything a command needs, resolved once per run."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    workspace: Path
    config_dir: Path
    # Relative source paths in dataset configs are resolved against this directory.
    data_root: Path
    dataset: DatasetConfig
    features: FeatureParams = Field(default_factory=FeatureParams)
    labels: LabelParams = Field(default_factory=LabelParams)
    segments: SegmentParams = Field(default_factory=SegmentParams)
    feast: FeastParams = Field(default_factory=FeastParams)
    engine: EngineParams = Field(default_factory=EngineParams)
    training: TrainingParams = Field(default_factory=TrainingParams)
    monitoring: MonitoringParams = Field(default_factory=MonitoringParams)
    serving: ServingParams = Field(default_factory=ServingParams)
    # MLflow tracking/registry; default: SQLite in the workspace (env MLFLOW_TRACKING_URI).
    mlflow_tracking_uri: str | None = None
    # "server": MLFLOW_TRACKING_URI must name a tracking server (the production profile).
    mlflow_tracking: Literal["embedded", "server"] = "embedded"
    # The configuration profile laid over configs/settings.yaml (env CRMSCORE_PROFILE).
    profile: str | None = None
    # Salt of the customer-id hashes in logs and samples (env CRMSCORE_ID_SALT; never logged).
    id_salt: SecretStr = SecretStr("")

    @property
    def paths(self) -> Workspace:
        """Every folder and file of the workspace (features/catalog.py)."""
        return Workspace(self.workspace)

    @model_validator(mode="after")
    def _hosts_given(self) -> Settings:
        """What the profile selects must have its host from the environment."""
        from serving.registry import is_tracking_server

        uri = self.mlflow_tracking_uri or ""
        if self.mlflow_tracking == "server" and not is_tracking_server(uri):
            raise ValueError(
                "mlflow_tracking is server: set MLFLOW_TRACKING_URI to the tracking server's "
                "http(s) URL"
            )
        if self.feast.online_store == "redis" and not self.feast.redis_url:
            raise ValueError(
                "feast.online_store is redis: set CRMSCORE_REDIS_URL (host:port[,password=...])"
            )
        if self.feast.registry == "sql" and not self.feast.registry_url:
            raise ValueError(
                f"feast.registry is sql: set {REGISTRY_URL_VAR} "
                "(postgresql://user:password@host:port/database)"
            )
        return self


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise SettingsError(f"{path}: file not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise SettingsError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise SettingsError(f"{path}: expected a mapping at the top level")
    return data


def _validation_message(path: Path, exc: ValidationError) -> str:
    problems = "; ".join(
        f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
    )
    return f"{path}: invalid settings: {problems}"


def default_config_dir() -> Path:
    """The default configs: the ones packaged with an installed crmscore, else the source
    tree's `configs/` (a checkout or an editable install)."""
    return PACKAGED_CONFIGS if PACKAGED_CONFIGS.is_dir() else PROJECT_ROOT / "configs"


def default_data_root() -> Path:
    """What relative dataset paths are relative to: the project root in a checkout, the
    current directory for an installed crmscore."""
    return Path.cwd() if PACKAGED_CONFIGS.is_dir() else PROJECT_ROOT


def copy_default_configs(dest: Path) -> list[Path]:
    """Copy the default configs (settings.yaml, datasets/*.yaml, the profiles' overlays such
    as production/settings.yaml) into `dest` for editing; use them with
    `crmscore --config DEST`. ValueError, copying nothing, when a file exists."""
    source = default_config_dir()
    files = sorted(source.rglob("*.yaml"))
    targets = [dest / f.relative_to(source) for f in files]
    existing = [str(t) for t in targets if t.exists()]
    if existing:
        raise ValueError(f"{', '.join(existing)}: exists; choose another folder or remove it")
    for file, target in zip(files, targets, strict=True):
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(file.read_bytes())
    return targets


def dataset_path(config_dir: Path, dataset: str) -> Path:
    """A dataset name from `configs/datasets/`, or a path to a dataset YAML."""
    candidate = Path(dataset)
    if candidate.suffix in (".yaml", ".yml"):
        return candidate
    return config_dir / "datasets" / f"{dataset}.yaml"


def dataset_names(config_dir: Path) -> list[str]:
    """The dataset names `--dataset` accepts in `config_dir` (configs/datasets/*.yaml)."""
    return sorted(p.stem for p in (config_dir / "datasets").glob("*.yaml"))


def unknown_dataset(config_dir: Path, dataset_file: Path) -> str:
    """The error for a dataset YAML that does not exist, listing the names that do."""
    names = ", ".join(dataset_names(config_dir)) or "none"
    return (
        f"dataset {dataset_file}: not found; available in {config_dir / 'datasets'}: {names} "
        "(or a path to a dataset YAML; draft one with `crmscore init --from FILE`)"
    )


def deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """`top` over `base`, mapping by mapping."""
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def load_settings(
    workspace: Path | None = None,
    config_dir: Path | None = None,
    dataset: str | None = None,
    overrides: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
) -> Settings:
    """Load settings. Precedence, lowest first: configs/settings.yaml, the profile's
    configs/<profile>/settings.yaml (env CRMSCORE_PROFILE, e.g. `production`), the dataset
    YAML's `settings:` (what that dataset needs, e.g. shorter windows for one year of data),
    `overrides` (command-line options), environment variables for hosts and secrets."""
    env = dict(os.environ) if env is None else env
    config_dir = config_dir or Path(env.get("CRMSCORE_CONFIG", default_config_dir()))
    workspace = workspace or Path(env.get("CRMSCORE_HOME", DEFAULT_ROOT))
    settings_file = config_dir / "settings.yaml"
    raw = _read_yaml(settings_file)
    profile = env.get(PROFILE_VAR) or None
    if profile is not None:
        overlay = config_dir / profile / "settings.yaml"
        if not overlay.exists():
            raise SettingsError(f"{overlay}: no such profile ({PROFILE_VAR}={profile})")
        raw = deep_merge(raw, {**_read_yaml(overlay), "profile": profile})
        settings_file = overlay
    dataset_file = dataset_path(config_dir, dataset or raw.pop("dataset", "complete_journey"))
    raw.pop("dataset", None)
    if not dataset_file.exists():
        raise SettingsError(unknown_dataset(config_dir, dataset_file))
    try:
        parsed_dataset = DatasetConfig.model_validate(_read_yaml(dataset_file))
    except ValidationError as exc:
        raise SettingsError(_validation_message(dataset_file, exc)) from exc
    raw = deep_merge(deep_merge(raw, parsed_dataset.settings), overrides or {})
    if env.get("MLFLOW_TRACKING_URI"):
        raw["mlflow_tracking_uri"] = env["MLFLOW_TRACKING_URI"]
    if env.get("CRMSCORE_ID_SALT"):
        raw["id_salt"] = env["CRMSCORE_ID_SALT"]
    if env.get("CRMSCORE_REDIS_URL"):
        raw["feast"] = {**raw.get("feast", {}), "redis_url": env["CRMSCORE_REDIS_URL"]}
    if env.get(REGISTRY_URL_VAR):
        raw["feast"] = {**raw.get("feast", {}), "registry_url": env[REGISTRY_URL_VAR]}
    try:
        return Settings(
            workspace=workspace.resolve(),
            config_dir=config_dir.resolve(),
            data_root=Path(env.get("CRMSCORE_DATA_ROOT", default_data_root())).resolve(),
            dataset=parsed_dataset,
            **raw,
        )
    except ValidationError as exc:
        raise SettingsError(_validation_message(settings_file, exc)) from exc
