"""Starting the scoring API: what would stop it, its API keys, its settings file, and the
command and environment of the service process.

`prepare` does it all and returns a `Launch`; `crmscore serve` (and the demo) print what it
says and replace their process with `Launch.command`. Nothing here starts a server."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from features.catalog import Workspace
from features.model_spec import MODEL_KINDS
from serving.auth import ApiKeys, create_key_files
from serving.config import ID_SALT_VAR, SETTINGS_VAR, ServiceSettings, write_service_settings
from serving.models import ModelNotFound
from serving.registry import RegistryError, configure, served_version

# The project root: BentoML imports `serving.service` from there.
PROJECT_ROOT = Path(__file__).resolve().parent.parent
SERVICE = "serving.service:CrmscoreService"
# BentoML's own time-out, after the API's (`serving.request_timeout_seconds`) by this much:
# the API's answers first, in its error format; BentoML's only stops a request that hangs.
# Short: BentoML keeps each request's timer and context alive for its time-out (BENCHMARKS.md).
BENTOML_TIMEOUT_GRACE_SECONDS = 1.0
# Models the service answers without: their part of the answer is left empty, with a warning.
OPTIONAL_KINDS = frozenset({"nbo"})


class ServeError(ValueError):
    """The service cannot start; the message lists every reason."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("cannot serve:\n  " + "\n  ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Launch:
    """How to start the service: the command, its environment, and what to tell the user."""

    command: list[str]
    env: dict[str, str]
    host: str
    port: int
    settings_file: Path
    key_folder: Path
    new_keys: tuple[str, str] | None = None  # (user, admin) when created now: shown once

    @property
    def url(self) -> str:
        """Where the API answers."""
        return f"http://{self.host}:{self.port}"


def serving_problems(settings: ServiceSettings, env: dict[str, str]) -> list[str]:
    """What would stop the service from starting, in words (empty when nothing): no Feast
    registry, no registered churn or CLV model (or a model registry that cannot be read),
    unreadable API key files. The offer model is optional (data without products has none):
    without it answers carry no offers and a warning."""
    from features.store import registry_problem

    paths = settings.paths
    problems = []
    registry = registry_problem(settings.feast, paths)
    if registry is not None:
        problems.append(
            f"{registry}; run `crmscore features apply` and `crmscore features materialize`"
        )
    client = configure(settings.tracking_uri)
    for kind in (k for k in MODEL_KINDS if k not in OPTIONAL_KINDS):
        try:
            served_version(kind, client)
        except (ModelNotFound, RegistryError) as exc:
            problems.append(str(exc))
    try:
        ApiKeys.from_env(env)
    except (OSError, ValueError) as exc:
        problems.append(f"API keys: {exc}")
    return problems


def ensure_keys(
    paths: Workspace, env: dict[str, str], new: bool = False
) -> tuple[dict[str, str], tuple[str, str] | None]:
    """API keys for the service: the environment's when it configures some, else the
    workspace's key files, created when missing (or when `new`). Returns the variables to add
    to the service's environment and the keys created now (None when none were)."""
    configured = ApiKeys.from_env(env).configured
    files = paths.key_files()
    created = None
    if new or not (configured or all(f.exists() for f in files.values())):
        created = create_key_files(paths)
    if configured and created is None:
        return {}, None
    return {var: str(path) for var, path in files.items() if not env.get(var)}, created


def service_command(host: str, port: int) -> list[str]:
    """The command that serves the API with BentoML."""
    command = [sys.executable, "-m", "bentoml", "serve", SERVICE]
    return [*command, "--host", host, "--port", str(port), "--working-dir", str(PROJECT_ROOT)]


def bentoml_overrides(request_timeout_seconds: float) -> str:
    """BentoML's configuration overrides (the `BENTOML_CONFIG_OVERRIDES` variable) that set
    its traffic time-out from the API's."""
    timeout = request_timeout_seconds + BENTOML_TIMEOUT_GRACE_SECONDS
    return json.dumps({"services": {"crmscore": {"traffic": {"timeout": timeout}}}})


def prepare(
    settings: ServiceSettings,
    env: dict[str, str],
    id_salt: str = "",
    host: str | None = None,
    port: int | None = None,
    new_keys: bool = False,
) -> Launch:
    """Check the workspace (ServeError listing every problem), make sure API keys exist,
    write the service's settings file and build the service process's environment: `env`
    plus the key files, the settings file, the id salt (environment only) and BentoML's
    time-out (`bentoml_overrides`)."""
    problems = serving_problems(settings, env)
    if problems:
        raise ServeError(problems)
    key_vars, created = ensure_keys(settings.paths, env, new_keys)
    settings_file = write_service_settings(settings)
    service_env = {
        **env,
        **key_vars,
        SETTINGS_VAR: str(settings_file),
        "CRMSCORE_HOME": str(settings.workspace),
        "BENTOML_CONFIG_OVERRIDES": bentoml_overrides(settings.serving.request_timeout_seconds),
    }
    if id_salt:
        service_env[ID_SALT_VAR] = id_salt
    address = (host or settings.serving.host, port or settings.serving.port)
    return Launch(
        command=service_command(*address),
        env=service_env,
        host=address[0],
        port=address[1],
        settings_file=settings_file,
        key_folder=settings.paths.serving_dir,
        new_keys=created,
    )
