"""The BentoML service: the crmscore API (serving/api.py) mounted on BentoML's server.

Run with `crmscore serve`, which writes the service's settings (serving/config.py) and starts
`bentoml serve serving.service:CrmscoreService` with CRMSCORE_SERVICE_SETTINGS and the API key
variables set. The service reads those settings only: it imports neither `crmscore` nor
`training`. The API answers `/v1/*`, `/healthz` (alive) and `/readyz` (ready) in JSON
(not BentoML's routes, which answer plain text), and its OpenAPI document is at
`/openapi.json`, browsable at `/docs`.

`ApiFirst` is the outermost layer of the app BentoML builds (`ApiOutermost`), so the API's
requests skip BentoML's own ASGI middlewares: its time-out timer (a task and a future per
request), tracing and request context cost CPU on every request and did nothing the API does
not do itself (its 504 time-out, its JSON errors); BENCHMARKS.md has the figures. BentoML
still runs the server: its processes, the socket, the service's start-up and shutdown,
`/livez` and `/metrics`."""

from __future__ import annotations

import os

import bentoml

from serving.api import ApiFirst, create_app

app = create_app()


class ApiOutermost(bentoml.Service):
    """BentoML's service whose ASGI app hands every API request to the API first."""

    def to_asgi(self, is_main: bool = True) -> ApiFirst:
        """BentoML's app (its routes, middlewares and lifespan) behind `ApiFirst`."""
        return ApiFirst(super().to_asgi(is_main), api=app)


@bentoml.service(
    name="crmscore",
    # One process per core; a reload in one is announced to the other (serving/state.py).
    workers=2,
    # BentoML keeps every request's context alive until its timeout, whether it answered or
    # not: a long timeout filled the heap and lengthened the GC pauses (BENCHMARKS.md).
    # `crmscore serve` sets it from `serving.request_timeout_seconds` (serving/bootstrap.py).
    traffic={"timeout": 10},
    # LightGBM's OpenMP pool costs milliseconds per call for one row; one thread is fastest.
    envs=[{"name": "OMP_NUM_THREADS", "value": "1"}],
    # Per-request access lines and Prometheus metrics cost CPU on every call; switch them on
    # here when an operator wants them (BENCHMARKS.md has the figures with and without).
    logging={"access": {"enabled": False}},
    metrics={"enabled": False},
    service_class=ApiOutermost,
)
@bentoml.asgi_app(app, path="/")
class CrmscoreService:
    """Loads the champion models and the online store when the worker starts."""

    def __init__(self) -> None:
        from serving.config import load_service_settings
        from serving.state import build_state

        env = dict(os.environ)
        self.state = build_state(load_service_settings(env), env)
        app.state.serving = self.state

    def __is_ready__(self) -> bool:
        """Ready when the models are loaded and the online store answers."""
        scorer = self.state.scorer
        return scorer is not None and scorer.online.reachable()

    @bentoml.on_shutdown
    def flush(self) -> None:
        """Write the prediction log's last rows."""
        self.state.close()
