"""Typed serving settings: page and body limits, time-outs, caches and the prediction log; and
the service's own settings file, which `crmscore serve` writes and the service reads.

The service reads nothing else at start-up: not configs/, not crmscore's settings loader
(which would pull training code into the serving process). Secrets stay in the environment:
the id hash key (`CRMSCORE_ID_SALT`; else the workspace's key file), the Redis connection
string (`CRMSCORE_REDIS_URL`) and the Feast SQL registry's URL (`CRMSCORE_FEAST_REGISTRY_URL`)
are never written to the file."""

from __future__ import annotations

import json
import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from features.catalog import DEFAULT_ROOT, Workspace
from features.config import FeastParams
from features.privacy import resolve_id_key

# Names the service's settings file; without it, the file in the workspace of CRMSCORE_HOME.
SETTINGS_VAR = "CRMSCORE_SERVICE_SETTINGS"
ID_SALT_VAR = "CRMSCORE_ID_SALT"
REDIS_URL_VAR = "CRMSCORE_REDIS_URL"
REGISTRY_URL_VAR = "CRMSCORE_FEAST_REGISTRY_URL"


class ServingParams(BaseModel):
    """Limits and behaviour of the scoring API (`serving:` in configs/settings.yaml)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = "127.0.0.1"
    port: int = 3000
    # Most customers one POST /v1/score may carry (422 above it).
    max_page: int = 1000
    # Largest request body in bytes (413 above it).
    max_body_bytes: int = 2_000_000
    # A request still running after this many seconds answers 504 (BentoML's own time-out is
    # set a little longer from it, so that this one answers, in the API's error format).
    request_timeout_seconds: float = 10.0
    # An online store read waits at most this long (a locked SQLite file), then 503.
    store_timeout_seconds: float = 1.0
    # Customers being scored at once per worker process; a request that does not fit is
    # refused at once (503 with Retry-After) rather than queued past its time-out.
    max_inflight_customers: int = Field(default=3000, ge=1)
    # Failed authentications per client address and minute before it gets 429 for a minute.
    auth_failures_per_minute: int = Field(default=20, ge=1)
    # Each worker asks the model registry this often for the @champion versions and reloads
    # when they changed (a promotion or rollback from any host).
    reload_poll_seconds: float = Field(default=10.0, gt=0)
    # Offer popularity and values are re-read from the online store at most this often.
    offer_cache_seconds: float = 300.0
    # Answers of up to this many stored customers are computed when the models load and
    # after each materialize, and held in memory by each worker; with
    # more customers in the store, answers are computed per request.
    precompute_customers: int = Field(default=200_000, ge=0)
    # Reason codes: drivers up and down per model when a request asks `explain: true`.
    explain_top: int = 3
    # An answer whose features are older than this many days carries a warning naming their
    # age (features are as of the last `features build` + `features apply`).
    stale_feature_days: float = Field(default=45, gt=0)
    # Prediction log: rows are written off the request path, in files of at most this many
    # rows or after this many seconds, whichever comes first.
    prediction_log: bool = True
    prediction_log_rows: int = 5000
    prediction_log_seconds: float = 10.0
    # Rows waiting to be written (e.g. while the folder is unwritable); more are dropped and
    # counted (GET /v1/models).
    prediction_log_max_rows: int = Field(default=100_000, ge=1)


class ServiceSettings(BaseModel):
    """Everything the running service needs, resolved by `crmscore serve` (no secrets)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    workspace: Path
    tracking_uri: str  # the MLflow tracking server / registry
    feast: FeastParams = Field(default_factory=FeastParams)
    serving: ServingParams = Field(default_factory=ServingParams)
    # The currency of the amounts (the dataset's `currency`), named in answers and documents.
    currency: str | None = None

    @property
    def paths(self) -> Workspace:
        """Every folder and file of the workspace."""
        return Workspace(self.workspace)


def write_service_settings(settings: ServiceSettings) -> Path:
    """Write the settings to the workspace (`Workspace.service_settings`), readable by the
    owner only; the Redis and SQL registry URLs are left out. Returns the file."""
    path = settings.paths.service_settings
    path.parent.mkdir(parents=True, exist_ok=True)
    data = settings.model_dump(mode="json", exclude={"feast": {"redis_url", "registry_url"}})
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(json.dumps(data, indent=2))
    tmp.replace(path)
    return path


def settings_file(env: dict[str, str]) -> Path:
    """Where the service's settings are: `CRMSCORE_SERVICE_SETTINGS`, else the file in the
    workspace of `CRMSCORE_HOME` (default ./workspace)."""
    if env.get(SETTINGS_VAR):
        return Path(env[SETTINGS_VAR])
    return Workspace(Path(env.get("CRMSCORE_HOME") or DEFAULT_ROOT).resolve()).service_settings


def load_service_settings(env: dict[str, str]) -> ServiceSettings:
    """The service's settings from its file (see `settings_file`), with the Redis connection
    string and the SQL registry's URL from the environment. A missing or broken file is a
    ValueError naming it."""
    path = settings_file(env)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no service settings; start the API with `crmscore serve`")
    try:
        settings = ServiceSettings.model_validate_json(path.read_text())
    except ValidationError as exc:
        raise ValueError(f"{path}: not valid service settings: {exc}") from exc
    secrets = {
        field: env[var]
        for field, var in (("redis_url", REDIS_URL_VAR), ("registry_url", REGISTRY_URL_VAR))
        if env.get(var)
    }
    if secrets:
        feast = settings.feast.model_copy(update=secrets)
        settings = settings.model_copy(update={"feast": feast})
    return settings


def id_salt(env: dict[str, str], paths: Workspace) -> str:
    """The key of the customer-id hashes in the prediction log: the environment's, else the
    workspace's (created when missing: `features.privacy.resolve_id_key`); never empty."""
    return resolve_id_key(env.get(ID_SALT_VAR, ""), paths)
