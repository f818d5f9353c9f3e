"""The API's ASGI middlewares on tiny apps: time limit, body limit, unexpected errors."""

from __future__ import annotations

import asyncio
import json
import threading

import httpx
from fastapi.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send

from serving.api import BodyLimit, CatchAll, Timeout


async def _ok(scope: Scope, receive: Receive, send: Send) -> None:
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def _slow(scope: Scope, receive: Receive, send: Send) -> None:
    await asyncio.sleep(5)
    await _ok(scope, receive, send)


async def _broken(scope: Scope, receive: Receive, send: Send) -> None:
    raise KeyError("customer 12345")


def _post(app: object, body: bytes = b"{}") -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.post("/v1/score", content=body)

    return asyncio.run(go())


def test_timeout_answers_504_json_and_lets_fast_requests_through() -> None:
    slow = _post(Timeout(_slow, lambda: 0.05))
    assert slow.status_code == 504 and slow.json()["error"]["code"] == "timeout"
    assert _post(Timeout(_ok, lambda: 5.0)).status_code == 200


def test_body_limit_by_header() -> None:
    app = BodyLimit(_ok, lambda: 10)
    assert _post(app, b"x" * 11).status_code == 413
    assert _post(app, b"x" * 10).status_code == 200


def test_unexpected_errors_answer_500_json_without_the_message() -> None:
    answer = _post(CatchAll(_broken))
    assert answer.status_code == 500
    error = answer.json()["error"]
    assert error["code"] == "internal_error" and "reference" in error["message"]
    assert "12345" not in answer.text


def test_timeout_answers_at_the_limit_while_work_in_a_thread_goes_on() -> None:
    """The 504 leaves before the thread's work ends (anyio waits for a thread when its
    caller is cancelled: waiting for the cancelled request would answer only then)."""
    finished = threading.Event()

    def work() -> None:
        finished.wait(timeout=3)
        finished.set()

    async def in_thread(scope: Scope, receive: Receive, send: Send) -> None:
        await run_in_threadpool(work)
        await _ok(scope, receive, send)

    answer = _post(Timeout(in_thread, lambda: 0.05))
    assert answer.status_code == 504 and not finished.is_set()
    finished.set()


def test_the_openapi_document_follows_the_workers_models() -> None:
    """The document lists the what-if features of the models in use: a worker whose
    models were replaced (a reload here or one announced by another worker) gives the new
    list, and the replaced models are not kept alive by the cached document."""
    import gc
    import weakref
    from types import SimpleNamespace

    from serving.api import create_app

    class Scorer:  # what the document reads of serving.scoring.Scorer
        def __init__(self, features: list[str]) -> None:
            self.models = SimpleNamespace(customer_features=features, loaded=[])

    scorer = Scorer

    def what_if_features(app: object) -> str:
        return json.dumps(app.openapi())  # type: ignore[attr-defined]

    app = create_app()
    first = scorer(["gap_ratio"])
    app.state.serving = SimpleNamespace(
        scorer=first, params=SimpleNamespace(max_page=1000), currency="GBP"
    )
    assert '"gap_ratio"' in what_if_features(app)
    app.state.serving.scorer = scorer(["tenure_days"])
    names = what_if_features(app)
    assert '"tenure_days"' in names and '"gap_ratio"' not in names
    replaced = weakref.ref(first)
    del first
    gc.collect()
    assert replaced() is None
