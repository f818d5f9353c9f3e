"""The HTTP API: routes, authentication, limits and JSON errors.

`create_app()` builds the ASGI app without reading any settings; the process that serves it
(the BentoML service, or uvicorn in the benchmark) puts a `ServingState` on `app.state.serving`
when it starts. Every error is JSON (`ErrorResponse`); no stack trace reaches a caller."""

from __future__ import annotations

import asyncio
import logging
import math
import uuid
import weakref
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from features.names import ALL_FEATURES, HISTORY_OFFERS
from features.online import StoreUnavailable
from serving.contract import horizon, model_terms
from serving.docs import ASSETS, ASSETS_PATH, asset_folder, redoc_page, swagger_page
from serving.openapi import describe_units, tighten
from serving.predlog import log_rows
from serving.schemas import (
    ErrorResponse,
    FeaturesRequest,
    ModelsResponse,
    ScoreRequest,
    ScoreResponse,
    Status,
)
from serving.scoring import AFFINITY_FEATURES, SEGMENT_FEATURES, Customer, Scorer
from serving.state import ServingState

LOG = logging.getLogger("crmscore.serving")
T = TypeVar("T")
INLINE_CUSTOMERS = 10
# Seconds a caller is told to wait (Retry-After) when shed, and when the store is down.
OVERLOAD_RETRY_SECONDS = 1
STORE_RETRY_SECONDS = 5
# A client that closed its connection before its answer (nginx's code; never sent).
CLIENT_GONE = 499
RETRY_AFTER = {
    "Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "integer"}}
}
ERRORS: dict[int, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in {
        400: "the request body could not be read",
        401: "missing or unknown API key",
        403: "the key may not do this",
        409: "the new models could not be loaded; the models in use keep answering",
        413: "request body too large",
        422: "invalid request: the fields named are wrong",
        429: "too many failed authentications from this client; retry after `Retry-After`",
        503: "not ready (models not loaded, online store not answering) or overloaded; "
        "retry after `Retry-After`",
        504: "request timed out",
    }.items()
}
for _code in (429, 503):
    ERRORS[_code]["headers"] = RETRY_AFTER
# Security schemes, for the document: the key is checked by `require_key`.
BEARER = HTTPBearer(auto_error=False, description="`Authorization: Bearer <API key>`")
KEY_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False, description="the API key")


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The documented error answers of a route."""
    return {code: ERRORS[code] for code in codes}


def _error(
    status: int,
    code: str,
    message: str,
    fields: list[dict[str, Any]] | None = None,
    retry_after: float | None = None,
) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "fields": fields or []}}
    headers = {"Retry-After": str(max(1, math.ceil(retry_after)))} if retry_after else None
    return JSONResponse(body, status_code=status, headers=headers)


class ApiError(HTTPException):
    """An HTTP error with a machine-readable code, the fields at fault and, for a refusal
    the caller should retry, the seconds to wait (`Retry-After`)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        fields: list[dict[str, Any]] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(status, message)
        self.code, self.fields, self.retry_after = code, fields or [], retry_after


class BodyLimit:
    """ASGI middleware: 413 for a body larger than the limit, counted as it streams (a
    Content-Length header alone is not trusted)."""

    def __init__(self, app: ASGIApp, limit: Callable[[], int]) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit()
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            await _error(413, "body_too_large", f"request body over {limit} bytes")(
                scope, receive, send
            )
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                # An HTTPException, so that FastAPI's body reader passes it on unchanged.
                raise ApiError(413, "body_too_large", f"request body over {limit} bytes")
            return message

        await self.app(scope, limited, send)


class CatchAll:
    """ASGI middleware: an unexpected error answers 500 with a JSON body and a reference, and
    is logged by its type only (its message could hold a customer's data); it is not
    re-raised, so no server logs a stack trace with request data in it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = message["type"] == "http.response.start" or started
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception as exc:
            reference = uuid.uuid4().hex[:12]
            LOG.error("internal error %s: %s", reference, type(exc).__name__)
            if scope["type"] == "http" and not started:
                await _error(500, "internal_error", f"internal error (reference {reference})")(
                    scope, receive, send
                )


class Timeout:
    """ASGI middleware: 504 when no answer has started within the time limit. It answers at
    the limit, without waiting for the request's work: the work is cancelled, and work
    already in a thread ends at the end of its step (a store read, a page's scoring)."""

    def __init__(self, app: ASGIApp, seconds: Callable[[], float]) -> None:
        self.app, self.seconds = app, seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        seconds = self.seconds()
        task = asyncio.ensure_future(self.app(scope, receive, tracked))
        try:
            done, _ = await asyncio.wait({task}, timeout=seconds)
        except asyncio.CancelledError:
            task.cancel()
            raise
        if done or started:
            await task
            return
        task.cancel()
        await _error(504, "timeout", f"no answer within {seconds} s")(scope, receive, send)


class ApiFirst:
    """ASGI middleware for the server the API is mounted on (BentoML): every request goes to
    the API but the server's own liveness and metrics (`/livez`, `/metrics`). So `/healthz`,
    `/readyz` and an unknown path answer JSON, as documented, not the server's plain text."""

    SERVER_PATHS = frozenset({"/livez", "/metrics"})

    def __init__(self, app: ASGIApp, api: ASGIApp) -> None:
        self.app, self.api = app, api

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in self.SERVER_PATHS:
            await self.api(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def _state(request: Request) -> ServingState:
    state: ServingState | None = getattr(request.app.state, "serving", None)
    if state is None:
        raise ApiError(503, "not_ready", "the service is starting", retry_after=STORE_RETRY_SECONDS)
    return state


def _presented_key(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return request.headers.get("x-api-key")


async def require_key(
    request: Request,
    _bearer: HTTPAuthorizationCredentials | None = Depends(BEARER),
    _header: str | None = Depends(KEY_HEADER),
) -> str:
    """Dependency: the caller's role; 401 without a valid key, and 429 for a client with too
    many failed authentications in the last minute (its key is then not even checked)."""
    state = _state(request)
    client = request.client.host if request.client else "unknown"
    wait = state.auth_failures.retry_after(client)
    if wait is not None:
        raise ApiError(
            429, "too_many_failures", "too many failed authentications", retry_after=wait
        )
    presented = _presented_key(request)
    role = state.keys.role(presented)
    if role is None:
        state.auth_failures.record(client, presented)
        raise ApiError(401, "unauthorized", "missing or unknown API key")
    return role


async def require_admin(role: str = Depends(require_key)) -> str:
    """Dependency: 403 unless the key is an admin key."""
    if role != "admin":
        raise ApiError(403, "forbidden", "this endpoint needs an admin key")
    return role


def _scorer(state: ServingState) -> Scorer:
    if state.scorer is None:
        # Why is in the server log: an error's text can hold paths and internals.
        raise ApiError(503, "not_ready", "models not loaded", retry_after=STORE_RETRY_SECONDS)
    return state.scorer


def _respond(
    state: ServingState, answers: list[dict[str, Any]], request_id: str, live: bool = True
) -> dict[str, Any]:
    """The answer body; `live` answers (customers as the feature store has them) go to the
    prediction log, what-if answers (features the caller made up) do not: monitoring reads
    the log as the customers being served."""
    if live and state.prediction_log is not None:
        state.prediction_log.put(log_rows(answers, request_id, state.id_salt, datetime.now(UTC)))
    for a in answers:
        a.pop("_features", None)
    return {"request_id": request_id, "scores": answers}


async def _read_store(read: Callable[[], T]) -> T:
    """Run an online store read in the thread pool (never on the event loop: a locked
    SQLite file would freeze every request of the worker); 503 when the store does not
    answer within `serving.store_timeout_seconds`."""
    try:
        return await run_in_threadpool(read)
    except StoreUnavailable as exc:
        LOG.error("online store unavailable: %s", exc)
        raise ApiError(
            503,
            "store_unavailable",
            "the online store did not answer; retry later",
            retry_after=STORE_RETRY_SECONDS,
        ) from None


class _Admitted:
    """Holds `n` customers of the worker's admission budget for a request (serving/limits.py);
    503 with Retry-After at once when they do not fit."""

    def __init__(self, state: ServingState, n: int) -> None:
        self.admission, self.n = state.admission, n

    async def __aenter__(self) -> None:
        if not self.admission.try_admit(self.n):
            raise ApiError(
                503,
                "overloaded",
                "the service is at capacity; retry later",
                retry_after=OVERLOAD_RETRY_SECONDS,
            )

    async def __aexit__(self, *_: object) -> None:
        self.admission.release(self.n)


def _json(body: dict[str, Any]) -> Response:
    """A score answer as JSON, written by orjson: the scorer builds it in the order and
    types of `ScoreResponse` (tests check it validates), so FastAPI's re-validation of the
    response model, which cost more than the scoring of a precomputed answer, is skipped."""
    return Response(orjson.dumps(body), media_type="application/json")


async def _off_loop_if_large(n: int, work: Callable[[], T]) -> T:
    """Score a few customers on the event loop (a millisecond or two: a thread hop would cost
    more than it frees), a larger page in the thread pool so other requests go on."""
    if n <= INLINE_CUSTOMERS:
        return work()
    return await run_in_threadpool(work)


def _check_page(state: ServingState, n: int, field: str) -> None:
    if n > state.params.max_page:
        raise ApiError(
            422,
            "page_too_large",
            f"{n} customers in one request; at most {state.params.max_page}",
            [{"field": field, "expected": f"at most {state.params.max_page} items"}],
        )


def _validate_features(
    values: dict[str, Any], allowed: set[str], where: str
) -> list[dict[str, Any]]:
    problems = []
    for name, value in values.items():
        if name not in allowed:
            problems.append({"field": f"{where}.{name}", "expected": "a feature the models read"})
            continue
        dtype = ALL_FEATURES[name].dtype
        if value is None:
            continue
        if dtype == "string" and not isinstance(value, str):
            problems.append({"field": f"{where}.{name}", "expected": "a string"})
        elif dtype != "string" and not is_finite_number(value):
            problems.append({"field": f"{where}.{name}", "expected": "a finite number"})
    return problems


def is_finite_number(value: Any) -> bool:
    """True for an int or float that is a finite float64 (not NaN, not ±Infinity, not an
    integer or literal like 1e309 beyond float range); False for anything else."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


# The page at `/`: links only, no script (BentoML's own index page loads a third-party one).
INDEX_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>crmscore</title></head>
<body><h1>crmscore</h1>
<p>Churn, customer lifetime value and next-best-offer scores for CRM systems.</p>
<ul><li><a href="openapi.json">OpenAPI document</a></li>
<li><a href="docs">API reference (Swagger UI: try the API with your key)</a></li>
<li><a href="redoc">API reference (ReDoc)</a></li></ul>
</body></html>
"""


def create_app() -> FastAPI:
    """The API, with no state yet (see the module docstring)."""
    app = FastAPI(
        title="crmscore",
        version="1",
        # Served below from the service's own files (serving/docs.py), not from a CDN.
        docs_url=None,
        redoc_url=None,
        summary="Churn, customer lifetime value and next-best-offer scores for CRM systems.",
        description=(
            "Authenticate with `Authorization: Bearer <key>` (or `X-API-Key`). Every error, "
            "an unknown path (404) included, answers a JSON body naming the field at fault; "
            "a refusal worth retrying (429, 503) says when in `Retry-After`. Horizons, the "
            "currency and the meaning of bands and tiers: `GET /v1/models`."
        ),
    )
    base_document = app.openapi
    # The models the document was made for (a weak reference: a replaced scorer must be
    # freed). Their features and horizons are in it, so it is made again when this worker's
    # models change, by a reload here, one announced by another worker or the registry.
    made_for: list[Callable[[], Any]] = [lambda: None]

    def document() -> dict[str, Any]:
        """FastAPI's document with the running service's rules (serving/openapi.py)."""
        state: ServingState | None = getattr(app.state, "serving", None)
        scorer = state.scorer if state else None
        if app.openapi_schema is not None and made_for[0]() is scorer:
            return app.openapi_schema
        made_for[0] = weakref.ref(scorer) if scorer is not None else (lambda: None)
        customer = (
            [*scorer.models.customer_features, *SEGMENT_FEATURES, HISTORY_OFFERS] if scorer else []
        )
        max_page = state.params.max_page if state else 1000
        document = tighten(base_document(), max_page, customer, AFFINITY_FEATURES)
        if scorer is not None:
            horizons = {m.kind: horizon(m) for m in scorer.models.loaded}
            describe_units(document, horizons, state.currency if state else None)
        app.openapi_schema = document
        return app.openapi_schema

    app.openapi = document  # type: ignore[method-assign]
    app.add_middleware(BodyLimit, limit=lambda: _limit(app))
    app.add_middleware(Timeout, seconds=lambda: _timeout(app))
    app.add_middleware(CatchAll)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status_code, exc.code, str(exc.detail), exc.fields, exc.retry_after)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {400: "bad_request", 404: "not_found", 405: "method_not_allowed"}.get(
            exc.status_code, "http_error"
        )
        answer = _error(exc.status_code, code, str(exc.detail))
        answer.headers.update(exc.headers or {})  # e.g. Allow on a 405
        return answer

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        fields = [
            {
                "field": ".".join(str(p) for p in err["loc"] if p != "body") or "body",
                "expected": err["msg"],
            }
            for err in exc.errors()
        ]
        return _error(422, "invalid_request", "the request does not match the schema", fields)

    @app.post(
        "/v1/score",
        response_model=ScoreResponse,
        summary="Score one customer or a page of customers from the feature store",
        responses=_errors(400, 401, 413, 422, 429, 503, 504),
    )
    async def score(body: ScoreRequest, request: Request, _: str = Depends(require_key)) -> Any:
        state = _state(request)
        ids = body.ids()
        _check_page(state, len(ids), "customer_ids")
        scorer = _scorer(state)
        async with _Admitted(state, len(ids)):
            # Precomputed answers need no store read; the others read it off the event loop.
            answers = scorer.from_table(ids, body.explain, body.top_k)
            if answers is None:
                customers = await _read_store(lambda: scorer.lookup(ids))
                if len(ids) > INLINE_CUSTOMERS and await request.is_disconnected():
                    raise ApiError(CLIENT_GONE, "client_gone", "the client closed the connection")

                def work() -> list[dict[str, Any]]:
                    return scorer.score(customers, body.explain, body.top_k)

                answers = await _off_loop_if_large(len(ids), work)
        return _json(_respond(state, answers, uuid.uuid4().hex))

    @app.post(
        "/v1/score/features",
        response_model=ScoreResponse,
        summary="Score customers from features the caller sends (what-if)",
        responses=_errors(400, 401, 413, 422, 429, 503, 504),
    )
    async def score_features(
        body: FeaturesRequest, request: Request, _: str = Depends(require_key)
    ) -> Any:
        state = _state(request)
        _check_page(state, len(body.customers), "customers")
        scorer = _scorer(state)
        allowed = {*scorer.models.customer_features, *SEGMENT_FEATURES, HISTORY_OFFERS}
        problems: list[dict[str, Any]] = []
        customers = []
        for i, c in enumerate(body.customers):
            problems += _validate_features(c.features, allowed, f"customers.{i}.features")
            affinity = {}
            for j, offer in enumerate(c.offers):
                problems += _validate_features(
                    offer.features, set(AFFINITY_FEATURES), f"customers.{i}.offers.{j}.features"
                )
                affinity[offer.offer_id] = offer.features
            customers.append(Customer(c.customer_id, dict(c.features), None, affinity))
        if problems:
            raise ApiError(422, "invalid_features", "unknown or mistyped features", problems)
        async with _Admitted(state, len(customers)):
            answers = await _off_loop_if_large(
                len(customers), lambda: scorer.score(customers, body.explain, body.top_k)
            )
        return _json(_respond(state, answers, uuid.uuid4().hex, live=False))

    @app.get("/v1/models", response_model=ModelsResponse, responses=_errors(401, 429, 503, 504))
    def models(request: Request, _: str = Depends(require_key)) -> Any:
        """The models answering now: registry versions, aliases, training windows, and what
        their outputs mean (horizon in days, currency, unit, bands and tiers)."""
        state = _state(request)
        scorer = _scorer(state)
        m = scorer.models
        return {
            "models": {x.kind: {**x.info, **model_terms(x, state.currency)} for x in m.loaded},
            "loaded_at": state.loaded_at.isoformat() if state.loaded_at else "",
            "prediction_log": state.prediction_log.stats() if state.prediction_log else None,
            "precomputed_customers": scorer.precomputed_customers(),
        }

    @app.post(
        "/v1/admin/reload",
        response_model=ModelsResponse,
        responses=_errors(401, 403, 409, 429, 503, 504),
    )
    def reload(request: Request, _: str = Depends(require_admin)) -> Any:
        """Load the current champions; requests in flight finish on the previous models."""
        state = _state(request)
        try:
            state.load(announce=True)
        except Exception as exc:
            # The cause goes to the server log under a reference, not to the caller: an
            # error's text can hold paths and internals.
            reference = uuid.uuid4().hex[:12]
            LOG.error("reload %s refused: %s: %s", reference, type(exc).__name__, exc)
            raise ApiError(
                409,
                "reload_failed",
                "the new models could not be loaded; kept the models in use "
                f"(reference {reference} in the server log)",
            ) from None
        return models(request, "admin")

    @app.get("/", include_in_schema=False)
    def index() -> HTMLResponse:
        """A plain page linking the API's documents (BentoML's index page is not served)."""
        return HTMLResponse(INDEX_PAGE)

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        """Swagger UI: the reference, and requests tried with a key (Authorize)."""
        return swagger_page(app.openapi_url or "/openapi.json", app.title)

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        """ReDoc: the reference as one readable page."""
        return redoc_page(app.openapi_url or "/openapi.json", app.title)

    @app.get(ASSETS_PATH + "/{name}", include_in_schema=False)
    def docs_asset(name: str) -> FileResponse:
        """A script, style sheet or icon of the reference pages."""
        if name not in ASSETS:
            raise ApiError(404, "not_found", f"no file {name!r} here")
        return FileResponse(
            asset_folder() / name,
            media_type=ASSETS[name],
            headers={"Cache-Control": "public, max-age=86400"},
        )

    @app.get("/docs.json", include_in_schema=False)
    def docs_json() -> JSONResponse:
        """The API's OpenAPI document (in place of BentoML's, which names its version)."""
        return JSONResponse(app.openapi())

    @app.get("/healthz", response_model=Status)
    async def healthz() -> Any:
        """Alive: the process answers (on the event loop, touching nothing else)."""
        return {"status": "ok"}

    @app.get("/readyz", response_model=Status, responses={503: {"model": Status}})
    async def readyz(request: Request) -> Any:
        """Ready: models loaded and the online store file there and answering within
        `serving.store_timeout_seconds` (checked in a thread, not on the event loop)."""
        state = getattr(request.app.state, "serving", None)
        scorer = state.scorer if state else None
        detail = {
            "models_loaded": scorer is not None,
            "online_store": bool(scorer and await run_in_threadpool(scorer.online.reachable)),
        }
        if not all(detail.values()):
            return JSONResponse({"status": "not ready", "detail": detail}, status_code=503)
        return {"status": "ready", "detail": detail}

    return app


def _timeout(app: FastAPI) -> float:
    state = getattr(app.state, "serving", None)
    return state.params.request_timeout_seconds if state else 10.0


def _limit(app: FastAPI) -> int:
    state = getattr(app.state, "serving", None)
    return state.params.max_body_bytes if state else 2_000_000
