"""The BentoML service's ASGI stack: the API answers its requests before BentoML's own
middlewares (time-out timer, tracing, request context), which cost CPU on every request."""

from __future__ import annotations

from typing import cast

from starlette.testclient import TestClient

from serving import service
from serving.api import ApiFirst


def test_the_api_is_the_outermost_layer_of_the_served_app() -> None:
    served = cast(service.ApiOutermost, service.CrmscoreService).to_asgi()
    assert isinstance(served, ApiFirst) and served.api is service.app
    client = TestClient(served)  # no lifespan: the service's models are not loaded
    alive = client.get("/healthz")
    assert alive.headers["content-type"] == "application/json", alive.text
    unknown = client.get("/no-such-path")
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"
    # BentoML's own liveness route is still BentoML's.
    assert client.get("/livez").status_code == 200
