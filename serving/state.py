"""What a running API holds: the current scorer, keys, limits and the prediction log.

Built from the service's own settings (serving/config.py) when the service starts, never at
import."""

from __future__ import annotations

import gc
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from feast import FeatureStore

from features.catalog import Workspace
from features.contract import NO_PRODUCTS
from features.online import OnlineFeatures
from serving.auth import ApiKeys
from serving.config import ServiceSettings, ServingParams, id_salt
from serving.limits import Admission, AuthFailures
from serving.predlog import PredictionLog
from serving.registry import NoVersion, champion_versions, configure, load_registered
from serving.scoring import Models, Scorer

LOG = logging.getLogger("crmscore.serving")


def build_meta(paths: Workspace | None) -> dict[str, Any]:
    """The last feature build's metadata ({} when there is none or it cannot be read)."""
    if paths is None or not paths.snapshots_meta.exists():
        return {}
    try:
        meta = json.loads(paths.snapshots_meta.read_text())
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def no_offers_reason(paths: Workspace | None) -> str | None:
    """Why there are no offers to serve: the last feature build found no products (its
    metadata says so); None otherwise."""
    return None if build_meta(paths).get("products", True) else NO_PRODUCTS


def load_scorer(
    client: Any,
    store: FeatureStore,
    explain_top: int,
    paths: Workspace | None = None,
    store_timeout: float = 5.0,
    stale_after_days: float | None = None,
) -> Scorer:
    """The registered models (champions) with the online store. Churn and CLV are required;
    the offer model is left out, and the answers say why, when the data has no products
    (`paths`' feature build says so) or the registry has no champion of it. A champion that
    cannot be loaded (a damaged bundle, an unreadable registry) is an error for every
    model: nothing is served without saying so. An online store read waits at most
    `store_timeout` seconds; answers from features older than `stale_after_days` say so."""
    churn, clv = load_registered("churn", client), load_registered("clv", client)
    no_offers = no_offers_reason(paths)
    nbo = None
    if no_offers is None:
        try:
            nbo = load_registered("nbo", client)
        except NoVersion as exc:
            no_offers = str(exc)
            LOG.warning("serving without offers: %s", exc)
    models = Models(churn, clv, nbo, no_offers)
    slots = tuple(str(c) for c in build_meta(paths).get("category_slots", []))
    return Scorer(
        models, OnlineFeatures(store, store_timeout), explain_top, stale_after_days, slots
    )


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
    # Touched by a reload; every worker process of this host watches it and reloads too (the
    # fast path: other hosts follow the registry's aliases, `poll_registry`).
    reload_stamp: Path | None = None
    # The workspace: its feature build says whether the data has products (offers).
    paths: Workspace | None = None
    # The currency of the amounts, named in `GET /v1/models` and the OpenAPI document.
    currency: str | None = None
    # Load shedding and the limit on failed authentications (serving/limits.py).
    admission: Admission = field(init=False)
    auth_failures: AuthFailures = field(init=False)
    _reload_lock: threading.Lock = field(default_factory=threading.Lock)
    _stamp_seen: int = 0
    # The @champion versions the registry named when the models in use were loaded.
    _champions: dict[str, str | None] | None = None
    _polled_at: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.admission = Admission(self.params.max_inflight_customers)
        self.auth_failures = AuthFailures(self.params.auth_failures_per_minute)

    def load(self, announce: bool = False) -> None:
        """Load (or re-load) the champions; on failure keep serving the models in use.
        With `announce`, the other worker processes are told to reload too."""
        with self._reload_lock:
            try:
                # Read before loading: a promotion in between costs one more reload, never
                # a missed one.
                champions = champion_versions(self.client)
                scorer = load_scorer(
                    self.client,
                    self.store,
                    self.params.explain_top,
                    self.paths,
                    self.params.store_timeout_seconds,
                    self.params.stale_feature_days,
                )
            except Exception as exc:
                self.load_error = str(exc)
                LOG.error("models could not be loaded: %s", exc)
                raise
            self.scorer, self.loaded_at, self.load_error = scorer, datetime.now(UTC), None
            self._champions, self._polled_at = champions, time.monotonic()
            if announce and self.reload_stamp is not None:
                self.reload_stamp.parent.mkdir(parents=True, exist_ok=True)
                self.reload_stamp.write_text(str(time.time_ns()))
            self._stamp_seen = self._stamp()
            LOG.info("models loaded: %s", scorer.models.versions)
        _freeze()

    def precompute(self) -> None:
        """Compute the answers of the models in use after they were loaded or the online
        store changed (a materialize); until then answers are computed per request
        (`Scorer.answers`). Run by the watcher thread, without the reload lock: a reload
        during it is not kept waiting (the table then belongs to the replaced models and
        goes with them)."""
        scorer = self.scorer
        if scorer is None or not scorer.store_changed():
            return
        started = time.monotonic()
        if scorer.precompute(self.params.precompute_customers):
            LOG.info("answers precomputed in %.1f s", time.monotonic() - started)
        _freeze()

    def poll_registry(self) -> bool:
        """Reload when the registry's @champion versions differ from those loaded; True when
        it reloaded. A registry that cannot be read, or a champion that cannot be loaded,
        keeps the models in use (logged, and in `load_error`)."""
        self._polled_at = time.monotonic()
        try:
            champions = champion_versions(self.client)
        except Exception as exc:
            self.load_error = str(exc)
            LOG.error(
                "the model registry could not be polled; serving %s: %s",
                self._serving_versions(),
                exc,
            )
            return False
        if champions == self._champions:
            self.load_error = None
            return False
        LOG.info("the registry's champions changed to %s: reloading", champions)
        try:
            self.load()
        except Exception:
            LOG.error("kept serving %s", self._serving_versions())
            return False
        return True

    def _serving_versions(self) -> dict[str, str]:
        return self.scorer.models.versions if self.scorer is not None else {}

    def _stamp(self) -> int:
        try:
            return self.reload_stamp.stat().st_mtime_ns if self.reload_stamp else 0
        except FileNotFoundError:
            return 0

    def watch(self, every_seconds: float = 1.0) -> None:
        """Start a thread that reloads when another worker announced a reload or, every
        `reload_poll_seconds`, when the registry's champions changed (`poll_registry`),
        precomputes the answers when the online store changed and re-reads the offer
        catalog when it is older than `offer_cache_seconds`."""

        def run() -> None:
            while not self._stop.wait(every_seconds):
                try:
                    if self._stamp() != self._stamp_seen:
                        self.load()
                    elif time.monotonic() - self._polled_at >= self.params.reload_poll_seconds:
                        self.poll_registry()
                    self.precompute()
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


def _freeze() -> None:
    # Long-lived objects (models, answers) out of the cyclic GC's scans: full collections
    # over them paused every request in flight for 100+ ms. Unfrozen first, so that the
    # replaced models and tables can be collected: frozen objects never are, and every
    # reload leaked the previous ones (RSS +28% over a 10-minute soak with 10 reloads).
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def build_state(settings: ServiceSettings, env: dict[str, str]) -> ServingState:
    """The state of a service from its settings, with the models loaded; API keys and the id
    salt come from `env`."""
    from features.store import open_store

    paths = settings.paths
    params = settings.serving
    log = (
        PredictionLog(
            paths.predictions_dir,
            params.prediction_log_rows,
            params.prediction_log_seconds,
            params.prediction_log_max_rows,
        )
        if params.prediction_log
        else None
    )
    state = ServingState(
        params=params,
        keys=ApiKeys.from_env(env),
        client=configure(settings.tracking_uri),
        store=open_store(settings.feast, paths),
        id_salt=id_salt(env, paths),
        prediction_log=log,
        reload_stamp=paths.reload_stamp,
        paths=paths,
        currency=settings.currency,
    )
    state.load()
    state.watch()
    return state
