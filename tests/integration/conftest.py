"""A trained workspace and the real BentoML service over HTTP, shared by the serving tests."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from crmscore import steps
from crmscore.cli import app
from crmscore.settings import Settings, load_settings
from features.catalog import Workspace
from features.synthetic import dataset_yaml, synthetic_export, write_export

PROJECT_ROOT = Path(__file__).resolve().parents[2]
USER_KEY, ADMIN_KEY = "test-user-key", "test-admin-key"
# Small limits so the tests can cross them cheaply.
SERVING_SETTINGS = """
settings:
  training:
    bootstrap: 20
  serving:
    max_page: 50
    max_body_bytes: 20000
    prediction_log_rows: 50
    prediction_log_seconds: 0.5
    prediction_log_max_rows: 200
    store_timeout_seconds: 2
    max_inflight_customers: 100
    auth_failures_per_minute: 50
"""


def cli(*args: str) -> dict:
    """Run a crmscore command in-process; its JSON answer."""
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@dataclass(frozen=True)
class Trained:
    """A workspace with features, a materialized online store, trained models and batch
    scores of the latest cutoff."""

    workspace: Path
    dataset: Path
    latest: str

    @property
    def base(self) -> list[str]:
        """Global CLI options for this workspace."""
        return ["--workspace", str(self.workspace), "--dataset", str(self.dataset)]

    def copy(self, folder: Path) -> Settings:
        """Settings of a copy of this workspace in `folder`, for tests that write into it."""
        shutil.copytree(self.workspace, folder / "ws")
        return load_settings(folder / "ws", dataset=str(self.dataset))


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    root = tmp_path_factory.mktemp("trained")
    csv = write_export(
        synthetic_export(lines=60_000, customers=400, seed=7, days=730), root / "export.csv"
    )
    dataset = root / "synthetic.yaml"
    dataset.write_text(dataset_yaml(csv) + SERVING_SETTINGS)
    settings = load_settings(root / "ws", dataset=str(dataset))
    for _, step in steps.PIPELINE:  # the demo's pipeline: ingest ... train, promote
        step(settings)
    latest = steps.latest_cutoff(settings)
    # Batch scores through the command line, as a user runs it.
    cli(
        "--workspace",
        str(settings.workspace),
        "--dataset",
        str(dataset),
        "score",
        "batch",
        "--as-of",
        latest,
    )
    return Trained(settings.workspace, dataset, latest)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Server:
    """A running `crmscore serve`."""

    url: str
    log: Path
    trained: Trained

    def output(self) -> str:
        """Everything the server printed: the command's own lines and the server process's
        log in the workspace."""
        server_log = Workspace(self.trained.workspace).server_log
        return self.log.read_text() + (server_log.read_text() if server_log.exists() else "")

    def client(self, key: str | None = USER_KEY) -> httpx.Client:
        """An HTTP client, with the key when given."""
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


@contextmanager
def serving(base: list[str], log: Path, extra_env: dict[str, str] | None = None) -> Iterator[str]:
    """`crmscore serve` with global options `base` on a free port, until it answers
    /readyz; yields its URL and stops it afterwards."""
    port = _free_port()
    env = {
        **os.environ,
        "CRMSCORE_API_KEYS": USER_KEY,
        "CRMSCORE_ADMIN_KEYS": ADMIN_KEY,
        "BENTOML_DO_NOT_TRACK": "true",
        **(extra_env or {}),
    }
    command = [sys.executable, "-m", "crmscore", *base, "serve", "--port", str(port)]
    with log.open("w") as out:
        process = subprocess.Popen(
            command, cwd=PROJECT_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    try:
        # A guard against a server that never starts, not a performance limit: start-up
        # precomputes every answer, slow on a loaded machine.
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"crmscore serve exited:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail(f"crmscore serve not ready in 900 s:\n{log.read_text()[-3000:]}")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(scope="session")
def server(trained: Trained, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("server") / "server.log"
    with serving(trained.base, log) as url:
        yield Server(url, log, trained)
