"""Real servers for the tests, started on free loopback ports and stopped afterwards:
redis-server, PostgreSQL and the MLflow tracking server. `make services` installs the
Debian packages when missing (as root); without them the tests that need a server skip,
except under CI=true, where they must run."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def free_port() -> int:
    """A loopback port nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def missing(what: str) -> None:
    """Skip the test with the reason, or fail under CI=true (CI installs everything)."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what}; CI must have it (`make services` installs it as root)")
    pytest.skip(f"{what} (`make services` installs it as root)")


def wait_until(ready: Callable[[], bool], process: subprocess.Popen[bytes], log: Path) -> None:
    """Poll `ready` until it is true; fail with the server's log when the process exits."""
    while not ready():
        if process.poll() is not None:
            pytest.fail(f"{process.args} exited:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)


def stop(process: subprocess.Popen[bytes]) -> None:
    """Terminate a server process (kill it when it does not stop)."""
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def redis_server(folder: Path) -> Iterator[str]:
    """A redis-server without persistence; yields Feast's connection string "host:port"."""
    binary = shutil.which("redis-server")
    if binary is None:
        missing("redis-server is not installed")
    import redis

    port = free_port()
    log = folder / "redis.log"
    command = [str(binary), "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    command += ["--appendonly", "no", "--dir", str(folder)]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    client = redis.Redis(host="127.0.0.1", port=port)

    def ready() -> bool:
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False

    try:
        wait_until(ready, process, log)
        yield f"127.0.0.1:{port}"
    finally:
        client.close()
        stop(process)


def postgres_bin() -> Path | None:
    """The folder of PostgreSQL's server programs (Debian's, else initdb on PATH)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


@contextmanager
def postgres_server() -> Iterator[str]:
    """A PostgreSQL cluster initialised in a temporary folder, with a database `mlflow`;
    yields its SQLAlchemy URI. As root the cluster runs as the `postgres` user (PostgreSQL
    refuses to run as root)."""
    import psycopg

    bin_dir = postgres_bin()
    if bin_dir is None:
        missing("PostgreSQL (initdb, postgres) is not installed")
    user: str | None = None
    folder = Path(tempfile.mkdtemp(prefix="crmscore-pg-"))
    if os.geteuid() == 0:
        user = "postgres"
        os.chown(folder, pwd.getpwnam(user).pw_uid, -1)
    data, log = folder / "data", folder / "postgres.log"
    port = free_port()
    subprocess.run(
        [str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"],
        check=True,
        capture_output=True,
        user=user,
    )
    command = [str(bin_dir / "postgres"), "-D", str(data), "-p", str(port)]
    command += ["-c", "listen_addresses=127.0.0.1", "-k", str(folder), "-c", "fsync=off"]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, user=user)

    def ready() -> bool:
        try:
            psycopg.connect(
                host="127.0.0.1", port=port, user="postgres", dbname="postgres", autocommit=True
            ).close()
        except psycopg.OperationalError:
            return False
        return True

    try:
        wait_until(ready, process, log)
        conn = psycopg.connect(
            host="127.0.0.1", port=port, user="postgres", dbname="postgres", autocommit=True
        )
        with conn.cursor() as cursor:
            cursor.execute("CREATE DATABASE mlflow")
        conn.close()
        yield f"postgresql://postgres@127.0.0.1:{port}/mlflow"
    finally:
        stop(process)
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def mlflow_server(backend_uri: str, folder: Path) -> Iterator[str]:
    """`mlflow server` on a free port, runs and registry in `backend_uri`, artifacts proxied
    to `folder/artifacts` (clients upload and download through the server); yields its URL."""
    import httpx

    port = free_port()
    log = folder / "mlflow-server.log"
    command = [str(Path(sys.executable).parent / "mlflow"), "server"]
    command += ["--backend-store-uri", backend_uri, "--artifacts-destination"]
    command += [str(folder / "artifacts"), "--host", "127.0.0.1", "--port", str(port)]
    command += ["--workers", "1"]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return httpx.get(f"{url}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(ready, process, log)
        yield url
    finally:
        stop(process)
