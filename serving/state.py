"""What a running API holds: the current scorer, keys, limits and the prediction log.

Settings are read when the service starts, never at import."""

from __future__ import annotations

import gc
import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from feast import FeatureStore

from features.online import OnlineFeatures
from serving.auth import ApiKeys
from serving.config import ServingParams
from serving.models import ModelNotFound
from serving.predlog import PredictionLog
from serving.registry import load_registered, served_version
from serving.scoring import Models, Scorer

LOG = logging.getLogger("crmscore.serving")
MODEL_KINDS = ("churn", "clv", "nbo")  # in the order of `Models`


def load_scorer(client: Any, store: FeatureStore, explain_top: int) -> Scorer:
    """The three registered models (champions) with the online store."""
    models = Models(*(load_registered(kind, client) for kind in MODEL_KINDS))
    return Scorer(models, OnlineFeatures(store), explain_top)


@dataclass
class ServingState:
    """The API's state. `scorer` is replaced whole on reload: a request keeps the scorer it
    started with, so a reload never fails a request in flight."""

    params: ServingParams
    keys: ApiKeys
    client: Any
    store: FeatureStore
    id_salt: str = ""
    prediction_log: PredictionLog | None = None
    scorer: Scorer | None = None
    loaded_at: datetime | None = None
    load_error: str | None = None
    # Touched by a reload; every worker process watches it and reloads too.
    reload_stamp: Path | None = None
    _reload_lock: threading.Lock = field(default_factory=threading.Lock)
    _stamp_seen: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def load(self, announce: bool = False) -> None:
        """Load (or re-load) the champions; on failure keep serving the models in use.
        With `announce`, the other worker processes are told to reload too."""
        with self._reload_lock:
            try:
                scorer = load_scorer(self.client, self.store, self.params.explain_top)
            except Exception as exc:
                self.load_error = str(exc)
                LOG.error("models could not be loaded: %s", exc)
                raise
            self.scorer, self.loaded_at, self.load_error = scorer, datetime.now(UTC), None
            if announce and self.reload_stamp is not None:
                self.reload_stamp.parent.mkdir(parents=True, exist_ok=True)
                self.reload_stamp.write_text(str(time.time_ns()))
            self._stamp_seen = self._stamp()
            LOG.info("models loaded: %s", scorer.models.versions)
        # Long-lived objects (models, caches) out of the cyclic GC's scans: full collections
        # over them paused every request in flight for 100+ ms.
        gc.collect()
        gc.freeze()

    def _stamp(self) -> int:
        try:
            return self.reload_stamp.stat().st_mtime_ns if self.reload_stamp else 0
        except FileNotFoundError:
            return 0

    def watch(self, every_seconds: float = 1.0) -> None:
        """Start a thread that reloads when another worker announced a reload and re-reads
        the offer catalog when it is older than `offer_cache_seconds`."""

        def run() -> None:
            while not self._stop.wait(every_seconds):
                try:
                    if self._stamp() != self._stamp_seen:
                        self.load()
                    if self.scorer is not None:
                        self.scorer.refresh_catalog(self.params.offer_cache_seconds)
                except Exception as exc:  # keep serving what is loaded
                    LOG.error("background refresh failed: %s", type(exc).__name__)

        threading.Thread(target=run, name="crmscore-watch", daemon=True).start()

    def close(self) -> None:
        """Stop the watcher and flush the prediction log."""
        self._stop.set()
        if self.prediction_log is not None:
            self.prediction_log.close()


def serving_problems(settings: Any, env: dict[str, str]) -> list[str]:
    """What would stop the service from starting, in words (empty when nothing): no online
    store, no registered model, unreadable API key files."""
    from serving.registry import configure, default_tracking_uri

    problems = []
    if not (settings.feast_dir / "registry.db").exists():
        problems.append(
            f"{settings.feast_dir}: no Feast registry; run `crmscore features apply` and "
            "`crmscore features materialize`"
        )
    client = configure(settings.mlflow_tracking_uri or default_tracking_uri(settings.paths))
    for kind in MODEL_KINDS:
        try:
            served_version(kind, client)
        except ModelNotFound as exc:
            problems.append(str(exc))
    try:
        ApiKeys.from_env(env)
    except (OSError, ValueError) as exc:
        problems.append(f"API keys: {exc}")
    return problems


def build_state(settings: Any, env: dict[str, str]) -> ServingState:
    """The state of a service from crmscore settings, with the models loaded."""
    from features.store import open_store
    from serving.registry import configure, default_tracking_uri

    client = configure(settings.mlflow_tracking_uri or default_tracking_uri(settings.paths))
    params: ServingParams = settings.serving
    log = (
        PredictionLog(
            Path(settings.workspace) / "predictions",
            params.prediction_log_rows,
            params.prediction_log_seconds,
        )
        if params.prediction_log
        else None
    )
    state = ServingState(
        params=params,
        keys=ApiKeys.from_env(env),
        client=client,
        store=open_store(settings.feast, settings.feast_dir),
        id_salt=settings.id_salt.get_secret_value(),
        prediction_log=log,
        reload_stamp=Path(settings.workspace) / "serving" / "reload.stamp",
    )
    state.load()
    state.watch()
    return state
