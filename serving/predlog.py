"""The prediction log: what was answered, for monitoring, written off the request path.

Requests put rows on a queue; one background thread writes them as parquet files under
`<folder>/date=YYYY-MM-DD/`, when `max_rows` have gathered or `max_seconds` have passed.
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
    """A queue and the thread that writes it to parquet."""

    def __init__(self, folder: Path, max_rows: int = 5000, max_seconds: float = 10.0) -> None:
        self.folder = folder
        self.max_rows, self.max_seconds = max_rows, max_seconds
        self._queue: queue.Queue[list[dict[str, Any]] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    def put(self, rows: list[dict[str, Any]]) -> None:
        """Queue rows; returns at once."""
        self._queue.put(rows)

    def close(self) -> None:
        """Write what is queued and stop the thread."""
        self._queue.put(None)
        self._thread.join(timeout=30)

    def _run(self) -> None:
        pending: list[dict[str, Any]] = []
        started = time.monotonic()
        while True:
            try:
                item = self._queue.get(timeout=max(0.05, self.max_seconds / 4))
            except queue.Empty:
                item = []
            if item is None:
                self._write(pending)
                return
            pending.extend(item)
            if len(pending) >= self.max_rows or (
                pending and time.monotonic() - started >= self.max_seconds
            ):
                self._write(pending)
                pending, started = [], time.monotonic()

    def _write(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        try:
            frame = pd.DataFrame(rows)
            for column in frame.select_dtypes(include="object").columns:
                frame[column] = frame[column].astype("string")
            now = datetime.now(UTC)
            folder = log_partition(self.folder, now.date())
            folder.mkdir(parents=True, exist_ok=True)
            name = f"part-{now.strftime('%H%M%S')}-{uuid.uuid4().hex[:8]}.parquet"
            tmp = folder / f".{name}.tmp"
            frame.to_parquet(tmp, index=False)
            tmp.replace(folder / name)
        except Exception:  # the log must never take the service down
            LOG.exception("prediction log: %d rows could not be written", len(rows))
