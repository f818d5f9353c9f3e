"""The prediction log: what was answered, for monitoring, written off the request path.

Requests put rows on a bounded queue; one background thread writes them as parquet files
under `<folder>/date=YYYY-MM-DD/`, when `max_rows` have gathered or `max_seconds` have passed.
Rows lost are counted, never silent: dropped when the queue is full, or lost with the
process (up to `max_seconds` of rows on a `kill -9`).
Customer ids are hashed before they are queued: no raw id reaches a log."""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from features.catalog import log_partition
from features.privacy import CUSTOMER_HASH, hash_id

LOG = logging.getLogger("crmscore.predictions")


def log_rows(
    answers: list[dict[str, Any]], request_id: str, salt: str, now: datetime
) -> list[dict[str, Any]]:
    """Prediction-log rows of one request's answers (the answers carry "_features")."""
    rows = []
    for a in answers:
        offers = a.get("offers") or []
        rows.append(
            {
                "ts": now,
                "request_id": request_id,
                CUSTOMER_HASH: hash_id(a["customer_id"], salt),
                "as_of": pd.Timestamp(a["as_of"]) if a.get("as_of") else pd.NaT,
                "cold_start": bool(a["cold_start"]),
                **a.get("_features", {}),
                "churn_probability": a["churn"]["probability"],
                "clv": a["clv"]["value"],
                "offer_1": offers[0]["offer_id"] if offers else None,
                **{f"{k}_model_version": v for k, v in a["model_versions"].items()},
            }
        )
    return rows


class PredictionLog:
    """A bounded queue and the thread that writes it to parquet.

    At most `max_held` rows wait to be written: a request whose rows do not fit is not
    logged, and its rows are counted as dropped. Rows that cannot be written (the folder is
    unwritable, the disk full) stay queued and are tried again every `max_seconds`; the
    failure is logged and kept in `stats()` (shown by GET /v1/models)."""

    def __init__(
        self,
        folder: Path,
        max_rows: int = 5000,
        max_seconds: float = 10.0,
        max_held: int = 100_000,
    ) -> None:
        self.folder = folder
        self.max_rows, self.max_seconds, self.max_held = max_rows, max_seconds, max_held
        self._queue: queue.Queue[list[dict[str, Any]] | None] = queue.Queue()
        self._lock = threading.Lock()
        self._held = 0  # rows put and not yet written
        self._written = self._dropped = self._failed_writes = 0
        self._last_error: str | None = None
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    def put(self, rows: list[dict[str, Any]]) -> None:
        """Queue rows, or drop and count them when the queue is full; returns at once."""
        with self._lock:
            if self._held + len(rows) > self.max_held:
                self._dropped += len(rows)
                dropped = self._dropped
            else:
                self._held += len(rows)
                dropped = 0
        if dropped:
            LOG.warning("prediction log full: %d rows dropped since the start", dropped)
            return
        self._queue.put(rows)

    def stats(self) -> dict[str, Any]:
        """Rows written, waiting, dropped; failed writes and the last failure, if any."""
        with self._lock:
            return {
                "rows_written": self._written,
                "rows_waiting": self._held,
                "rows_dropped": self._dropped,
                "failed_writes": self._failed_writes,
                "last_error": self._last_error,
            }

    def close(self) -> None:
        """Write what is queued and stop the thread."""
        self._queue.put(None)
        self._thread.join(timeout=30)

    def _run(self) -> None:
        pending: list[dict[str, Any]] = []
        started = time.monotonic()
        failing = False  # after a failed write, the next try waits `max_seconds`
        while True:
            try:
                item = self._queue.get(timeout=max(0.05, self.max_seconds / 4))
            except queue.Empty:
                item = []
            if item is None:
                if pending and not self._write(pending):
                    LOG.error("prediction log: %d rows lost at shutdown", len(pending))
                return
            pending.extend(item)
            due = time.monotonic() - started >= self.max_seconds
            if pending and (due or (len(pending) >= self.max_rows and not failing)):
                failing = not self._write(pending)
                if not failing:
                    pending = []
                started = time.monotonic()

    def _write(self, rows: list[dict[str, Any]]) -> bool:
        """Write `rows` as one file; False (and the failure recorded) when it fails."""
        try:
            frame = pd.DataFrame(rows)
            for column in frame.select_dtypes(include="object").columns:
                frame[column] = frame[column].astype("string")
            now = datetime.now(UTC)
            folder = log_partition(self.folder, now.date())
            folder.mkdir(parents=True, exist_ok=True)
            name = f"part-{now.strftime('%H%M%S')}-{uuid.uuid4().hex[:8]}.parquet"
            tmp = folder / f".{name}.tmp"
            try:
                frame.to_parquet(tmp, index=False)
                tmp.replace(folder / name)
            finally:
                tmp.unlink(missing_ok=True)
        except Exception as exc:  # the log must never take the service down
            with self._lock:
                self._failed_writes += 1
                self._last_error = f"could not write to the prediction log ({type(exc).__name__})"
            LOG.error("prediction log: %d rows not written yet: %s", len(rows), exc)
            return False
        with self._lock:
            self._written += len(rows)
            self._held -= len(rows)
            self._last_error = None
        return True
