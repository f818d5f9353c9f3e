"""Load shedding and the limit on failed authentications, per worker process.

Both answer at once instead of queueing: a caller that is turned away is told when to retry
(`Retry-After`), and the work already admitted keeps the CPU it needs to answer in time."""

from __future__ import annotations

import hashlib
import logging
import time
from collections import deque
from collections.abc import Callable

LOG = logging.getLogger("crmscore.serving")


class Admission:
    """A budget of customers being scored at once. A request is admitted when its customers
    fit in what is left (or nothing else is running), else refused at once: one worker
    scoring more than this would answer nobody within the request time-out."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.in_flight = 0
        self.shed = 0  # requests refused since the start

    def try_admit(self, n: int) -> bool:
        """Take `n` customers of the budget; False (and nothing taken) when they do not fit."""
        if self.in_flight and self.in_flight + n > self.budget:
            self.shed += 1
            return False
        self.in_flight += n
        return True

    def release(self, n: int) -> None:
        """Give back what `try_admit` took, when the request's work has ended."""
        self.in_flight -= n


def key_fingerprint(presented: str | None) -> str:
    """What the log says of a presented key: the first 8 hex characters of its SHA-256 (the
    key itself never reaches a log), or "none"."""
    if not presented:
        return "none"
    return hashlib.sha256(presented.encode("utf8")).hexdigest()[:8]


class AuthFailures:
    """Failed authentications per client address in a sliding window. A client with
    `limit` failures in the last `window` seconds is refused (429) until the oldest of them
    leaves the window, whatever key it presents: a guesser cannot test keys faster."""

    def __init__(
        self,
        limit: int,
        window: float = 60.0,
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit, self.window, self.max_clients, self.clock = limit, window, max_clients, clock
        self._seen: dict[str, deque[float]] = {}
        self.total = 0  # failed authentications since the start

    def _recent(self, client: str, now: float) -> deque[float]:
        times = self._seen.get(client, deque())
        while times and times[0] <= now - self.window:
            times.popleft()
        return times

    def retry_after(self, client: str) -> float | None:
        """Seconds until `client` may try again; None when it is not blocked."""
        now = self.clock()
        times = self._recent(client, now)
        if len(times) < self.limit:
            return None
        return max(0.0, times[0] + self.window - now)

    def record(self, client: str, presented: str | None) -> None:
        """Count a failed authentication and log it (the key by its fingerprint only)."""
        now = self.clock()
        if client not in self._seen and len(self._seen) >= self.max_clients:
            # Forget clients whose failures all left the window; else the oldest one.
            for other in [c for c, t in self._seen.items() if not self._recent(c, now)]:
                del self._seen[other]
            if len(self._seen) >= self.max_clients:
                del self._seen[next(iter(self._seen))]
        times = self._recent(client, now)
        times.append(now)
        self._seen[client] = times
        self.total += 1
        LOG.warning(
            "authentication failed: client %s, key sha256 %s, %d failures in the last %g s",
            client,
            key_fingerprint(presented),
            len(times),
            self.window,
        )
