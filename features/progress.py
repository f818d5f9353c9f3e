"""One line per stage of a long command, with its elapsed time.

Packages log through their module's logger (`logging.getLogger(__name__)`); the command
line decides where lines go (crmscore/logs.py): stage lines to the terminal, everything
at debug level to the workspace's log file."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator


@contextlib.contextmanager
def stage(logger: logging.Logger, what: str) -> Iterator[None]:
    """Log `what` when it starts (debug) and when it ends, with its elapsed time (info);
    a failed stage only at debug level: reporting the error is left to the caller."""
    logger.debug("%s ...", what)
    started = time.perf_counter()
    try:
        yield
    except BaseException:
        logger.debug("%s failed after %s", what, elapsed(started))
        raise
    logger.info("%s (%s)", what, elapsed(started))


def elapsed(started: float) -> str:
    """Seconds since `started` (a `time.perf_counter()` value), in words: "12.3 s"."""
    return f"{time.perf_counter() - started:.1f} s"
