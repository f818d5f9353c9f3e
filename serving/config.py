"""Typed serving settings: page and body limits, time-outs, caches and the prediction log."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class ServingParams(BaseModel):
    """Limits and behaviour of the scoring API (`serving:` in configs/settings.yaml)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = "127.0.0.1"
    port: int = 3000
    # Most customers one POST /v1/score may carry (422 above it).
    max_page: int = 1000
    # Largest request body in bytes (413 above it).
    max_body_bytes: int = 2_000_000
    # A request still running after this many seconds answers 504.
    request_timeout_seconds: float = 10.0
    # Offer popularity and values are re-read from the online store at most this often.
    offer_cache_seconds: float = 300.0
    # Reason codes: drivers up and down per model when a request asks `explain: true`.
    explain_top: int = 3
    # Prediction log: rows are written off the request path, in files of at most this many
    # rows or after this many seconds, whichever comes first.
    prediction_log: bool = True
    prediction_log_rows: int = 5000
    prediction_log_seconds: float = 10.0
