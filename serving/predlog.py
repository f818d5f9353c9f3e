"""The prediction log: what was answered, for monitoring, written off the request path.

Requests put rows on a bounded queue, already encoded as JSON lines (a few microseconds with
orjson); one background thread writes them as parquet files under `<folder>/date=YYYY-MM-DD/`,
when `max_rows` have gathered or `max_seconds` have passed. The writer turns those lines into
a table with Arrow's JSON reader, which runs without the GIL: building a DataFrame of 5,000
rows in Python held it for about 20 ms and delayed every request the worker was serving
(BENCHMARKS.md, issue #12).
Rows lost are counted, never silent: dropped when the queue is full. Rows waiting to be
written are also appended to a spool file of the process (`.spool-<pid>-*.jsonl`), emptied
after each written batch: when a worker is killed (`kill -9`, out of memory), the next
worker to start writes its spool out, so only the rows still in the queue (milliseconds of
traffic) are lost.
Customer ids are hashed before they are queued: no raw id reaches a log."""

from __future__ import annotations

import io
import logging
import os
import queue
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from features.catalog import log_partition
from features.privacy import CUSTOMER_HASH, hash_id
from features.publish import alive

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
                "as_of": a.get("as_of") or None,
                "cold_start": bool(a["cold_start"]),
                **a.get("_features", {}),
                "churn_probability": a["churn"]["probability"],
                "clv": a["clv"]["value"],
                "offer_1": offers[0]["offer_id"] if offers else None,
                **{f"{k}_model_version": v for k, v in a["model_versions"].items()},
            }
        )
    return rows


# Timestamps are ISO strings in the lines; the other columns' types are inferred.
_TIMES = pa.schema([("ts", pa.timestamp("us", "UTC")), ("as_of", pa.timestamp("us", "UTC"))])


def encode_rows(rows: list[dict[str, Any]]) -> bytes:
    """Rows as JSON lines (NaN and missing values as null)."""
    option = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE
    return b"".join(orjson.dumps(row, default=_null, option=option) for row in rows)


def _null(value: Any) -> None:
    """orjson's fallback: values it cannot write (pandas' NA) are written as null."""
    return None


def lines_table(lines: bytes) -> pa.Table:
    """The table of JSON lines, parsed in one block (one type per column); a column whose
    values mix types (a number in one row, text in another) is written as text."""
    try:
        return pa_json.read_json(
            io.BytesIO(lines),
            read_options=pa_json.ReadOptions(block_size=len(lines) + 1),
            parse_options=pa_json.ParseOptions(explicit_schema=_TIMES),
        )
    except pa.ArrowInvalid:
        frame = pd.DataFrame([orjson.loads(line) for line in lines.splitlines()])
        for column in frame.columns:
            if column in _TIMES.names:
                frame[column] = pd.to_datetime(frame[column], utc=True, format="ISO8601")
            elif frame[column].dtype == object:
                frame[column] = frame[column].astype("string")
        return pa.Table.from_pandas(frame, preserve_index=False)


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
        self._queue: queue.Queue[tuple[bytes, int] | None] = queue.Queue()
        self._lock = threading.Lock()
        self._held = 0  # rows put and not yet written
        self._written = self._dropped = self._failed_writes = 0
        self._last_error: str | None = None
        self._recovered = 0
        self._spool: io.BufferedWriter | None = None
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
        self._queue.put((encode_rows(rows), len(rows)))

    def stats(self) -> dict[str, Any]:
        """Rows written, waiting, dropped; failed writes and the last failure, if any."""
        with self._lock:
            return {
                "rows_written": self._written,
                "rows_waiting": self._held,
                "rows_dropped": self._dropped,
                "rows_recovered": self._recovered,
                "failed_writes": self._failed_writes,
                "last_error": self._last_error,
            }

    def close(self) -> None:
        """Write what is queued and stop the thread."""
        self._queue.put(None)
        self._thread.join(timeout=30)

    def _run(self) -> None:
        self._recover()
        self._spool = self._open_spool()
        pending: list[bytes] = []
        rows = 0
        started = time.monotonic()
        failing = False  # after a failed write, the next try waits `max_seconds`
        while True:
            try:
                item = self._queue.get(timeout=max(0.05, self.max_seconds / 4))
            except queue.Empty:
                item = (b"", 0)
            if item is None:
                if rows and not self._write(pending, rows):
                    LOG.error("prediction log: %d rows kept in the spool at shutdown", rows)
                else:
                    self._close_spool(remove=True)
                return
            if item[1]:
                self._append_spool(item[0])
                pending.append(item[0])
                rows += item[1]
            due = time.monotonic() - started >= self.max_seconds
            if rows and (due or (rows >= self.max_rows and not failing)):
                failing = not self._write(pending, rows)
                if not failing:
                    pending, rows = [], 0
                    self._empty_spool()
                started = time.monotonic()

    def _open_spool(self) -> io.BufferedWriter | None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            return (self.folder / _spool_name(os.getpid())).open("wb")
        except OSError as exc:
            LOG.error("prediction log: no spool file (%s); rows wait in memory only", exc)
            return None

    def _append_spool(self, lines: bytes) -> None:
        if self._spool is None or not lines:
            return
        try:
            self._spool.write(lines)
            self._spool.flush()  # in the kernel's hands: a killed process keeps it
        except OSError as exc:
            LOG.error("prediction log: spool write failed (%s)", type(exc).__name__)

    def _empty_spool(self) -> None:
        if self._spool is not None:
            try:
                self._spool.seek(0)
                self._spool.truncate()
            except OSError as exc:
                LOG.error("prediction log: spool not emptied (%s)", type(exc).__name__)

    def _close_spool(self, remove: bool) -> None:
        if self._spool is not None:
            self._spool.close()
            if remove:
                Path(self._spool.name).unlink(missing_ok=True)
            self._spool = None

    def _recover(self) -> None:
        """Write out the spools of processes that are gone (claimed by renaming, so that
        two workers starting together do not both write one)."""
        for spool in sorted(self.folder.glob(_spool_name("*"))):
            pid = spool.name.split("-")[1]
            if not pid.isdigit() or alive(int(pid)):
                continue
            mine = self.folder / _spool_name(os.getpid())
            try:
                spool.rename(mine)
            except OSError:
                continue  # claimed by another worker, or the folder went away
            data = mine.read_bytes()
            data = data[: data.rfind(b"\n") + 1]  # a line cut by the kill is dropped
            rows = data.count(b"\n")
            if rows == 0 or self._write([data], rows, recovered=True):
                mine.unlink(missing_ok=True)
                if rows:
                    LOG.warning("prediction log: %d rows recovered from a stopped worker", rows)

    def _write(self, lines: list[bytes], rows: int, recovered: bool = False) -> bool:
        """Write the `rows` rows of `lines` as one file; False (and the failure recorded)
        when it fails. `recovered` rows come from a stopped worker's spool, not the queue."""
        try:
            table = lines_table(b"".join(lines))
            now = datetime.now(UTC)
            folder = log_partition(self.folder, now.date())
            folder.mkdir(parents=True, exist_ok=True)
            name = f"part-{now.strftime('%H%M%S')}-{uuid.uuid4().hex[:8]}.parquet"
            tmp = folder / f".{name}.tmp"
            try:
                pq.write_table(table, tmp)
                tmp.replace(folder / name)
            finally:
                tmp.unlink(missing_ok=True)
        except Exception as exc:  # the log must never take the service down
            with self._lock:
                self._failed_writes += 1
                self._last_error = f"could not write to the prediction log ({type(exc).__name__})"
            LOG.error("prediction log: %d rows not written yet: %s", rows, exc)
            return False
        with self._lock:
            self._written += rows
            if recovered:
                self._recovered += rows
            else:
                self._held -= rows
            self._last_error = None
        return True


def _spool_name(pid: int | str) -> str:
    """A process's spool file name (`*` for every process's)."""
    return f".spool-{pid}-*.jsonl" if pid == "*" else f".spool-{pid}-{uuid.uuid4().hex[:8]}.jsonl"
