"""Real-time scoring: features from the online store, the three models, one answer per customer.

The same `Scorer` answers the BentoML service and the plain FastAPI app of the benchmark, so
both do identical work. It is built once per model load; a reload builds a new one and swaps
it in, so requests in flight finish on the models they started with."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

import numpy as np

from features.feast_repo import AFFINITY_VIEW, CUSTOMER_VIEW, OFFER_VIEW
from features.names import (
    CUSTOMER_OFFER_AFFINITY,
    HISTORY_OFFERS,
    HISTORY_OFFERS_SEPARATOR,
    OFFER_STATS,
)
from features.online import OnlineFeatures
from serving.models import (
    BundleModel,
    Row,
    churn_band,
    churn_probability,
    clv_percentile,
    clv_reason_booster,
    clv_tier,
    clv_value,
)

SEGMENT_FEATURES = ("rfm_segment", "value_tier", "lifecycle_stage")
OFFER_FEATURES = tuple(f.name for f in OFFER_STATS)
AFFINITY_FEATURES = tuple(f.name for f in CUSTOMER_OFFER_AFFINITY)
PAIR_FEATURES = OFFER_FEATURES + AFFINITY_FEATURES  # what the offer model reads per pair
COLD_START_WARNING = (
    "unknown customer: cold-start answer from population priors (no features in the store)"
)


@dataclass(frozen=True)
class Models:
    """The three models one answer is computed with."""

    churn: BundleModel
    clv: BundleModel
    nbo: BundleModel

    @cached_property
    def versions(self) -> dict[str, str]:
        """`{"churn": "3@champion", ...}`."""
        return {m.kind: m.version for m in (self.churn, self.clv, self.nbo)}

    @cached_property
    def customer_features(self) -> list[str]:
        """Every customer-level feature any of the models reads (computed once: every answer
        logs them)."""
        names = dict.fromkeys([*self.churn.columns, *self.clv.columns])
        names.update(dict.fromkeys(c for c in self.nbo.columns if c not in PAIR_FEATURES))
        return list(names)


@dataclass(frozen=True)
class Customer:
    """What one answer is computed from: the customer's features (None: unknown customer),
    their snapshot time and their customer x offer rows by offer."""

    customer_id: str
    features: Row | None
    as_of: datetime | None = None
    affinity: dict[str, Row] = field(default_factory=dict)


@dataclass
class OfferCatalog:
    """Every offer's features (as rows of the offer model's input, unknown offers last) and
    the most popular offers (candidates for everybody)."""

    ids: list[str]
    position: dict[str, int]
    matrix: np.ndarray
    value: np.ndarray  # offer_value, 0 where unknown
    popular: list[str]
    loaded_at: float


class Scorer:
    """Scores customers with `models` and features from `online`."""

    def __init__(self, models: Models, online: OnlineFeatures, explain_top: int = 3) -> None:
        self.models = models
        self.online = online
        self.explain_top = explain_top
        self._customer_names = [*models.customer_features, *SEGMENT_FEATURES, HISTORY_OFFERS]
        self._lock = threading.Lock()
        columns = models.nbo.columns
        self._customer_cols = [j for j, c in enumerate(columns) if c not in PAIR_FEATURES]
        self._affinity_cols = [j for j, c in enumerate(columns) if c in AFFINITY_FEATURES]
        recency = "affinity_recency_days"
        self._recency_col = columns.index(recency) if recency in columns else None
        self.catalog = self._read_catalog()

    def _read_catalog(self) -> OfferCatalog:
        rows = self.online.scan(OFFER_VIEW, OFFER_FEATURES)
        ids = sorted(rows)
        values = [rows[i].values for i in ids]
        ranked = sorted(ids, key=lambda o: (-float(rows[o].values.get("offer_buyers_30d") or 0), o))
        n = int(self.models.nbo.meta["popular_candidates"])
        offer_value = np.asarray([float(v.get("offer_value") or 0.0) for v in values] + [0.0])
        return OfferCatalog(
            ids,
            {o: i for i, o in enumerate(ids)},
            self.models.nbo.matrix([*values, {}]),
            np.nan_to_num(offer_value),
            ranked[:n],
            time.monotonic(),
        )

    def refresh_catalog(self, max_age_seconds: float) -> None:
        """Re-read the offers when the cached ones are older than `max_age_seconds`."""
        if time.monotonic() - self.catalog.loaded_at >= max_age_seconds:
            with self._lock:
                self.catalog = self._read_catalog()

    def lookup(self, customer_ids: list[str]) -> list[Customer]:
        """Customers' features and customer x offer rows from the online store."""
        rows = self.online.read(CUSTOMER_VIEW, [(c,) for c in customer_ids], self._customer_names)
        # Every candidate pair is looked up, popular offers included: like Feast's
        # point-in-time join in training, a pair the customer bought before the latest
        # snapshot's year keeps its last values until they expire (the views' ttl).
        popular = self.catalog.popular
        affinity: dict[str, dict[str, Row]] = {}
        keys: list[tuple[str, str]] = []
        for cid, row in zip(customer_ids, rows, strict=True):
            if row is None:
                continue
            history = str(row.values.get(HISTORY_OFFERS) or "")
            offers = dict.fromkeys([*history.split(HISTORY_OFFERS_SEPARATOR), *popular])
            offers.pop("", None)
            if self.online.can_read_by_prefix:
                held = self.online.read_by_first_key(AFFINITY_VIEW, cid, AFFINITY_FEATURES)
                affinity[cid] = {o: held[o].values for o in offers if o in held}
            else:
                keys += [(cid, o) for o in offers]
        for (cid, offer), pair in zip(
            keys, self.online.read(AFFINITY_VIEW, keys, AFFINITY_FEATURES), strict=True
        ):
            if pair is not None:
                affinity.setdefault(cid, {})[offer] = pair.values
        return [
            Customer(cid, row.values, row.event_timestamp, affinity.get(cid, {}))
            if row is not None
            else Customer(cid, None)
            for cid, row in zip(customer_ids, rows, strict=True)
        ]

    def score(
        self, customers: list[Customer], explain: bool = False, top_k: int | None = None
    ) -> list[dict[str, Any]]:
        """One answer per customer (see serving/schemas.py `CustomerScore`), plus the model
        inputs under "_features" for the prediction log."""
        models = self.models
        known = [c for c in customers if c.features is not None]
        feats = [c.features or {} for c in known]
        x_churn, x_clv = models.churn.matrix(feats), models.clv.matrix(feats)
        p_churn = churn_probability(models.churn, x_churn) if known else np.empty(0)
        clv = clv_value(models.clv, x_clv) if known else np.empty(0)
        reasons: dict[str, list[dict[str, list[str]]]] = {}
        if explain and known:
            top = self.explain_top
            reasons["churn"] = models.churn.reasons(x_churn, feats, "churn", "the churn risk", top)
            reasons["clv"] = models.clv.reasons(
                x_clv, feats, clv_reason_booster(models.clv), "the expected value", top
            )
        offers = self._offers(customers, top_k or int(models.nbo.meta["top_k"]))
        now = datetime.now(UTC)
        out, position = [], {id(c): i for i, c in enumerate(known)}
        for n, customer in enumerate(customers):
            i = position.get(id(customer))
            if i is None:
                out.append(self._cold_start(customer, offers[n]))
                continue
            answer = self._answer(customer, float(p_churn[i]), float(clv[i]), offers[n], now)
            if explain:
                answer["reasons"] = {kind: reasons[kind][i] for kind in reasons}
            out.append(answer)
        return out

    def _answer(
        self, c: Customer, p: float, clv: float, offers: list[dict[str, Any]], now: datetime
    ) -> dict[str, Any]:
        f = c.features or {}
        return {
            "customer_id": c.customer_id,
            "as_of": c.as_of.isoformat() if c.as_of else None,
            "feature_age_seconds": round((now - c.as_of).total_seconds()) if c.as_of else None,
            **self._scores(p, clv),
            "offers": offers,
            "segment": {name: f.get(name) for name in SEGMENT_FEATURES},
            "cold_start": False,
            "warnings": [],
            "_features": {name: f.get(name) for name in self.models.customer_features},
        }

    def _cold_start(self, c: Customer, offers: list[dict[str, Any]]) -> dict[str, Any]:
        meta = self.models.churn.meta, self.models.clv.meta
        return {
            "customer_id": c.customer_id,
            "as_of": None,
            "feature_age_seconds": None,
            **self._scores(float(meta[0]["prior"]), float(meta[1]["prior"])),
            "offers": offers,
            "segment": {"rfm_segment": None, "value_tier": None, "lifecycle_stage": "new"},
            "cold_start": True,
            "warnings": [COLD_START_WARNING],
            "_features": {},
        }

    def _scores(self, p: float, clv: float) -> dict[str, Any]:
        """Churn and CLV answers, retention priority and model versions."""
        models = self.models
        percentile = clv_percentile(models.clv, clv)
        return {
            "churn": {
                "probability": round(p, 6),
                "band": churn_band(models.churn, p),
                "flag": p >= models.churn.meta["threshold"],
            },
            "clv": {
                "value": round(clv, 2),
                "percentile": round(percentile, 1),
                "tier": clv_tier(models.clv, percentile),
            },
            "retention_priority": round(p * clv, 2),
            "model_versions": models.versions,
        }

    def _offers(self, customers: list[Customer], k: int) -> list[list[dict[str, Any]]]:
        """Top-k offers per customer: the customer's history candidates (most bought first,
        as in training) plus the popular offers, scored as pairs, with the rules applied."""
        nbo, catalog = self.models.nbo, self.catalog
        history_n = int(nbo.meta["history_candidates"])
        exclude_days = nbo.meta.get("exclude_bought_within_days")
        blocks, offer_ids = [], []
        for c in customers:
            # Store customers list their history offers; a caller's what-if rows all are.
            f = c.features or {}
            listed = (
                str(f[HISTORY_OFFERS] or "").split(HISTORY_OFFERS_SEPARATOR)
                if HISTORY_OFFERS in f
                else list(c.affinity)
            )
            listed = [o for o in listed if o in c.affinity]
            history = sorted(
                listed,
                key=lambda o: (
                    -float(c.affinity[o].get("affinity_orders_365d") or 0),
                    _or_inf(c.affinity[o].get("affinity_recency_days")),
                    o,
                ),
            )[:history_n]
            ids = sorted({*history, *catalog.popular})
            x = catalog.matrix[[catalog.position.get(o, -1) for o in ids]]
            x[:, self._customer_cols] = nbo.matrix([f], self._customer_cols)[0, self._customer_cols]
            pairs = [c.affinity.get(o, {}) for o in ids]
            x[:, self._affinity_cols] = nbo.matrix(pairs, self._affinity_cols)[
                :, self._affinity_cols
            ]
            blocks.append(x)
            offer_ids.append(ids)
        out: list[list[dict[str, Any]]] = [[] for _ in customers]
        if not any(len(ids) for ids in offer_ids):
            return out
        p_all = nbo.raw(np.vstack(blocks))
        start = 0
        for n, (x, ids) in enumerate(zip(blocks, offer_ids, strict=True)):
            p = p_all[start : start + len(ids)]
            start += len(ids)
            keep = np.ones(len(ids), dtype=bool)
            if exclude_days is not None and self._recency_col is not None:
                recency = x[:, self._recency_col]
                keep = ~(recency < exclude_days)  # NaN (never bought) is kept
            value = catalog.value[[catalog.position.get(o, -1) for o in ids]]
            ranked = sorted(np.flatnonzero(keep).tolist(), key=lambda i: (-p[i], ids[i]))[:k]
            out[n] = [
                {
                    "rank": r + 1,
                    "offer_id": ids[i],
                    "probability": round(float(p[i]), 6),
                    "expected_value": round(float(p[i] * value[i]), 4),
                }
                for r, i in enumerate(ranked)
            ]
        return out


def _or_inf(value: Any) -> float:
    return float("inf") if value is None else float(value)
