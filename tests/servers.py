"""Real servers for the tests, started on free loopback ports and stopped afterwards:
redis-server, PostgreSQL and the MLflow tracking server. `make services` installs the
Debian packages when missing (as root); without them the tests that need a server skip,
except under CI=true, where they must run."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

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


def answers(url: str) -> Callable[[], bool]:
    """A readiness check for `wait_until`: true once GET `url` answers 200."""
    import httpx

    def ready() -> bool:
        try:
            return httpx.get(url, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    return ready


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
    """A PostgreSQL cluster initialised in a temporary folder, with databases `mlflow` and
    `feast` (a Feast SQL registry); yields the SQLAlchemy URI of `mlflow`. As root the
    cluster runs as the `postgres` user (PostgreSQL refuses to run as root)."""
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
            cursor.execute("CREATE DATABASE feast")
        conn.close()
        yield f"postgresql://postgres@127.0.0.1:{port}/mlflow"
    finally:
        stop(process)
        shutil.rmtree(folder, ignore_errors=True)


def database_uri(server_uri: str, database: str) -> str:
    """The URI of another database on the server of `server_uri`."""
    return f"{server_uri.rsplit('/', 1)[0]}/{database}"


@contextmanager
def mlflow_server(backend_uri: str, folder: Path) -> Iterator[str]:
    """`mlflow server` on a free port, runs and registry in `backend_uri`, artifacts proxied
    to `folder/artifacts` (clients upload and download through the server); yields its URL."""
    with mlflow_process(backend_uri, folder) as (url, _):
        yield url


@contextmanager
def mlflow_process(backend_uri: str, folder: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`mlflow_server`, with its process (a test may stop it to cut the registry off)."""
    port = free_port()
    log = folder / "mlflow-server.log"
    command = [str(Path(sys.executable).parent / "mlflow"), "server"]
    command += ["--backend-store-uri", backend_uri, "--artifacts-destination"]
    command += [str(folder / "artifacts"), "--host", "127.0.0.1", "--port", str(port)]
    command += ["--workers", "1"]
    # MLflow's job runner (seven polling huey consumers, for GenAI jobs crmscore never runs)
    # took about 40% of a core while idle.
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(answers(f"{url}/health"), process, log)
        yield url, process
    finally:
        stop(process)


@contextmanager
def ray_cluster(cpus: int = 2) -> Iterator[str]:
    """A two-node Ray cluster on this machine: a head and a worker node started as separate
    processes (`ray start --block`, tiny resources), stopped afterwards by their process
    groups. The head offers no CPU, so every task runs on the worker node. Yields the head's
    address; the test process is connected to it (the engine reuses the connection)."""
    import ray
    from ray._private.services import get_node_ip_address

    binary = Path(sys.executable).with_name("ray")
    folder = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))  # short: Ray's socket paths
    port = free_port()
    # Ray replaces a loopback address by the machine's own when it connects: use that one.
    ip = get_node_ip_address()
    address = f"{ip}:{port}"
    common = ["--block", "--disable-usage-stats", "--node-ip-address", ip]
    common += ["--object-store-memory", str(80 * 1024 * 1024)]
    head = [str(binary), "start", "--head", "--port", str(port), "--num-cpus", "0", *common]
    head += ["--include-dashboard", "false", "--temp-dir", str(folder)]
    head += ["--dashboard-agent-listen-port", str(free_port())]
    worker = [str(binary), "start", "--address", address, "--num-cpus", str(cpus), *common]
    worker += ["--dashboard-agent-listen-port", str(free_port())]
    logs = [folder / "head.log", folder / "worker.log"]
    processes: list[subprocess.Popen[bytes]] = []
    # No token authentication (`ray start` turns it on when ~/.ray holds a token): the
    # cluster listens on this machine only, for this test process.
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    try:
        with logs[0].open("wb") as out:
            processes.append(_group(head, out, env))
        wait_until(lambda: _listening(port), processes[0], logs[0])
        with logs[1].open("wb") as out:
            processes.append(_group(worker, out, env))
        for log, process in zip(logs, processes, strict=True):
            wait_until(lambda log=log: "Ray runtime started" in log.read_text(), process, log)
        ray.init(address=address, log_to_driver=False, configure_logging=False)

        def two_nodes() -> bool:
            alive = [n for n in ray.nodes() if n["Alive"]]
            return len(alive) == 2 and ray.cluster_resources().get("CPU", 0) >= cpus

        wait_until(two_nodes, processes[1], logs[1])
        yield address
    finally:
        ray.shutdown()
        for process in reversed(processes):
            _stop_group(process)
        shutil.rmtree(folder, ignore_errors=True)


def _group(command: list[str], out: Any, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """A process leading its own process group: the node's raylet, store and workers too."""
    return subprocess.Popen(
        command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
    )


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    """Stop a node: SIGTERM to its process group (the ids this fixture started), then
    SIGKILL to what is left of it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=30)
    time.sleep(1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0
