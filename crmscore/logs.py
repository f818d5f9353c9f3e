"""The command line's one logging set-up.

The terminal (stderr) shows crmscore's own lines: a line per stage with its elapsed time
(info), or only warnings and errors with --quiet, or everything with --verbose. The
workspace's log file (`Workspace.log_file`) gets crmscore's lines at debug level and the
libraries' at info (debug with --verbose): MLflow, Feast, PyTensor, SQLAlchemy, Python
warnings, and what libraries print on stdout. Progress bars (tqdm, MLflow's artifact
downloads) are switched off."""

from __future__ import annotations

import contextlib
import io
import logging
import sys
from collections.abc import Iterator, MutableMapping
from pathlib import Path

# Loggers of this project's packages; every other logger is third-party.
OWN = ("crmscore", "features", "training", "serving", "monitoring")
LEVELS = {"quiet": logging.WARNING, "normal": logging.INFO, "verbose": logging.DEBUG}
# Environment that silences libraries' progress bars and their own logging set-ups.
QUIET_LIBRARIES = {
    "TQDM_DISABLE": "1",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "MLFLOW_CONFIGURE_LOGGING": "false",
}
_CONSOLE, _FILE = "crmscore-console", "crmscore-file"  # the handlers set up here


def is_own(name: str) -> bool:
    """True for a logger of this project (`features.snapshots`, `crmscore`, ...)."""
    return name.split(".", 1)[0] in OWN


class _Console(logging.Filter):
    """Own lines at the chosen level; third-party lines only when verbose, or errors."""

    def __init__(self, verbose: bool) -> None:
        super().__init__()
        self.verbose = verbose

    def filter(self, record: logging.LogRecord) -> bool:
        return self.verbose or is_own(record.name) or record.levelno >= logging.ERROR


def setup_logging(verbosity: str, env: MutableMapping[str, str]) -> None:
    """Route every logger: the terminal at `verbosity` ("quiet", "normal" or "verbose"),
    Python warnings into logging, and libraries' bars and logging set-ups off (`env`, the
    process environment, gets `QUIET_LIBRARIES` where not already set)."""
    for key, value in QUIET_LIBRARIES.items():
        env.setdefault(key, value)
    root = logging.getLogger()
    for handler in list(root.handlers):
        if handler.get_name() in (_CONSOLE, _FILE):
            root.removeHandler(handler)
            handler.close()
    # Libraries' debug lines (matplotlib's font search, ...) only when asked for.
    root.setLevel(logging.DEBUG if verbosity == "verbose" else logging.INFO)
    for name in OWN:
        logging.getLogger(name).setLevel(logging.DEBUG)
    console = logging.StreamHandler(sys.stderr)
    console.set_name(_CONSOLE)
    console.setLevel(LEVELS[verbosity])
    console.addFilter(_Console(verbosity == "verbose"))
    console.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    root.addHandler(console)
    logging.captureWarnings(True)


def log_to_file(path: Path) -> None:
    """Also write every log line at debug level to `path` (instead of an earlier file)."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _FILE]:
        if isinstance(old, logging.FileHandler) and Path(old.baseFilename) == path.resolve():
            return
        root.removeHandler(old)
        old.close()
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.set_name(_FILE)
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s")
    )
    root.addHandler(handler)


class _LogStream(io.TextIOBase):
    """A text stream whose lines go to a logger at info level."""

    def __init__(self, logger: logging.Logger) -> None:
        self.logger, self.pending = logger, ""

    def write(self, text: str) -> int:
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            if line.strip():
                self.logger.info(line.rstrip())
        return len(text)

    def flush(self) -> None:
        if self.pending.strip():
            self.logger.info(self.pending.rstrip())
        self.pending = ""


@contextlib.contextmanager
def libraries_to_log() -> Iterator[None]:
    """What libraries print on stdout goes to the log file, keeping stdout for the
    command's answer."""
    stream = _LogStream(logging.getLogger("stdout"))
    with contextlib.redirect_stdout(stream):
        yield
    stream.flush()


def environment_quiet(env: dict[str, str]) -> dict[str, str]:
    """`env` with `QUIET_LIBRARIES` added where not set (for a child process)."""
    return {**QUIET_LIBRARIES, **env}
