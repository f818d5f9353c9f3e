"""What a running API holds: the current scorer, keys, limits and the prediction log.

Settings are read when the service starts, never at import."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from feast import FeatureStore

from features.online import OnlineFeatures
from serving.auth import ApiKeys
from serving.config import ServingParams
from serving.models import load_registered
from serving.predlog import PredictionLog
from serving.scoring import Models, Scorer

LOG = logging.getLogger("crmscore.serving")


def load_scorer(client: Any, store: FeatureStore, explain_top: int) -> Scorer:
    """The three registered models (champions) with the online store."""
    models = Models(*(load_registered(kind, client) for kind in ("churn", "clv", "nbo")))
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
    _reload_lock: threading.Lock = field(default_factory=threading.Lock)

    def load(self) -> None:
        """Load (or re-load) the champions; on failure keep serving the models in use."""
        with self._reload_lock:
            try:
                scorer = load_scorer(self.client, self.store, self.params.explain_top)
            except Exception as exc:
                self.load_error = str(exc)
                LOG.error("models could not be loaded: %s", exc)
                raise
            self.scorer, self.loaded_at, self.load_error = scorer, datetime.now(UTC), None
            LOG.info("models loaded: %s", scorer.models.versions)

    def close(self) -> None:
        """Flush the prediction log."""
        if self.prediction_log is not None:
            self.prediction_log.close()


def build_state(settings: Any, env: dict[str, str]) -> ServingState:
    """The state of a service from crmscore settings, with the models loaded."""
    from features.store import open_store
    from training.tracking import configure, default_tracking_uri

    client = configure(settings.mlflow_tracking_uri or default_tracking_uri(settings.workspace))
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
    )
    state.load()
    return state
