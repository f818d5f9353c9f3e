"""Run the scoring API until it stops, saying once when it is ready.

The server's own output (BentoML, MLflow, Feast) goes to the workspace's log file; the
terminal gets one "ready on <url>" line when `/readyz` answers, or one error line when the
server stops before that."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import FrameType

from crmscore.logs import environment_quiet

# How long a stop request waits for the server before killing it.
STOP_SECONDS = 20.0


def probe_url(url: str) -> str:
    """The address to probe: a server listening on every interface answers on localhost."""
    return url.replace("://0.0.0.0:", "://127.0.0.1:")


def is_ready(url: str) -> bool:
    """True when the service at `url` answers /readyz with 200."""
    try:
        with urllib.request.urlopen(f"{probe_url(url)}/readyz", timeout=2) as answer:
            return int(answer.status) == 200
    except (urllib.error.URLError, OSError):
        return False


def last_line(path: Path) -> str:
    """The last non-empty line of a log file ("" when none)."""
    if not path.exists():
        return ""
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def run_server(command: list[str], env: dict[str, str], url: str, log_path: Path) -> int:
    """Start `command`, print "ready on `url`" with the time it took once it is ready, and
    wait for it; Ctrl-C or SIGTERM stop it. Returns its exit code (0 when stopped)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with log_path.open("ab") as out:
        process = subprocess.Popen(
            command, env=environment_quiet(env), stdout=out, stderr=subprocess.STDOUT
        )

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        while process.poll() is None and not is_ready(url):
            time.sleep(0.2)
        if process.poll() is not None:
            print(
                f"error: the server stopped (exit {process.returncode}) before it was ready: "
                f"{last_line(log_path) or 'no output'} (full log: {log_path})",
                file=sys.stderr,
            )
            return process.returncode or 1
        seconds = time.perf_counter() - started
        print(f"ready on {url} in {seconds:.1f} s (server log: {log_path})", file=sys.stderr)
        sys.stderr.flush()
        return process.wait()
    except KeyboardInterrupt:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
