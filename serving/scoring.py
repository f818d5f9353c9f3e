"""Real-time scoring: features from the online store, the three models, one answer per customer.

The same `Scorer` answers the BentoML service and the plain FastAPI app of the benchmark, so
both do identical work. It is built once per model load; a reload builds a new one and swaps
it in, so requests in flight finish on the models they started with.

An answer only changes when the models or the online store change, so the scorer computes
every stored customer's answer once (`Scorer.precompute`: at load, and again after each
materialize) and answers from that table while the store is the version it was computed
from (`OnlineFeatures.version`, checked on every request); otherwise, and for reason codes,
another `top_k` or a what-if, it computes the answer on demand, the same way."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from features.feast_repo import AFFINITY_VIEW, BTYD_VIEW, CUSTOMER_VIEW, OFFER_VIEW
from features.names import (
    CUSTOMER_BTYD,
    CUSTOMER_OFFER_AFFINITY,
    HISTORY_OFFERS,
    HISTORY_OFFERS_SEPARATOR,
    NBO_CANDIDATE_FEATURES,
    OFFER_ID,
    OFFER_STATS,
)
from features.online import OnlineFeatures
from serving.contract import DECIMALS
from serving.models import (
    COPURCHASE,
    HISTORY_WEIGHT,
    RECENCY,
    BundleModel,
    CandidateSettings,
    Row,
    as_number,
    churn_band,
    churn_flag,
    churn_probability,
    clv_percentile,
    clv_tier,
    clv_value,
    customer_candidates,
    neighbour_table,
    offer_probability,
    popular_offers,
    rank_offers,
    reason_codes,
    trending_offers,
)

SEGMENT_FEATURES = ("rfm_segment", "value_tier", "lifecycle_stage")
OFFER_FEATURES = tuple(f.name for f in OFFER_STATS)
AFFINITY_FEATURES = tuple(f.name for f in CUSTOMER_OFFER_AFFINITY)
BTYD_FEATURES = frozenset(f.name for f in CUSTOMER_BTYD)
CANDIDATE_FEATURES = tuple(f.name for f in NBO_CANDIDATE_FEATURES)
# What the offer model reads per pair.
PAIR_FEATURES = OFFER_FEATURES + AFFINITY_FEATURES + CANDIDATE_FEATURES
COLD_START_WARNING = (
    "unknown customer: cold-start answer from population priors (no features in the store); "
    "no retention priority (null): rank known customers first"
)


@dataclass(frozen=True)
class Models:
    """The models one answer is computed with. The offer model is optional (data without
    products has none): without it answers have no offers and a warning saying why
    (`no_offers`)."""

    churn: BundleModel
    clv: BundleModel
    nbo: BundleModel | None
    no_offers: str | None = None

    @property
    def loaded(self) -> list[BundleModel]:
        """The models present, in the spec's order."""
        return [m for m in (self.churn, self.clv, self.nbo) if m is not None]

    @cached_property
    def versions(self) -> dict[str, str]:
        """`{"churn": "3@champion", ...}`."""
        return {m.kind: m.version for m in self.loaded}

    @cached_property
    def warnings(self) -> list[str]:
        """What every answer says about the models: no offers, and why."""
        if self.nbo is not None:
            return []
        return [f"no offers: {self.no_offers or 'no offer model is registered'}"]

    @cached_property
    def customer_features(self) -> list[str]:
        """Every customer-level feature any of the models reads (computed once: every answer
        logs them)."""
        names = dict.fromkeys([*self.churn.columns, *self.clv.columns])
        offer_columns = self.nbo.columns if self.nbo is not None else []
        names.update(dict.fromkeys(c for c in offer_columns if c not in PAIR_FEATURES))
        return list(names)


@dataclass(frozen=True)
class Customer:
    """What one answer is computed from: the customer's features (None: unknown customer),
    their snapshot time and their customer x offer rows by offer."""

    customer_id: str
    features: Row | None
    as_of: datetime | None = None
    affinity: dict[str, Row] = field(default_factory=dict)


@dataclass(frozen=True)
class Precomputed:
    """Answers (default top-k, no reasons) computed from one version of the online store,
    by customer id, each with its snapshot time (for `feature_age_seconds`)."""

    store_version: tuple[int, ...]
    answers: dict[str, tuple[dict[str, Any], datetime | None]]


@dataclass
class OfferCatalog:
    """Every offer's features (as rows of the offer model's input, unknown offers last) and
    the popular and trending offers (candidates for everybody, `popular`)."""

    ids: list[str]
    position: dict[str, int]
    matrix: np.ndarray
    value: np.ndarray  # offer_value, 0 where unknown
    popular: list[str]
    loaded_at: float


class Scorer:
    """Scores customers with `models` and features from `online`. Answers from features
    older than `stale_after_days` carry a warning (`freshness`); reason codes name the
    categories of the `category_share_N` features (`category_slots`: the feature build's)."""

    def __init__(
        self,
        models: Models,
        online: OnlineFeatures,
        explain_top: int = 3,
        stale_after_days: float | None = None,
        category_slots: tuple[str, ...] = (),
    ) -> None:
        self.models = models
        self.online = online
        self.explain_top = explain_top
        self.stale_after_days = stale_after_days
        self.category_slots = category_slots
        wanted = [*models.customer_features, *SEGMENT_FEATURES, HISTORY_OFFERS]
        # Customer features come from two views: activity and segments, and the BTYD signals.
        self._btyd_names = [n for n in wanted if n in BTYD_FEATURES]
        self._customer_names = [n for n in wanted if n not in BTYD_FEATURES]
        self._lock = threading.Lock()
        if models.nbo is not None:  # else no offers (`Models.warnings`)
            columns = models.nbo.columns
            self._customer_cols = [j for j, c in enumerate(columns) if c not in PAIR_FEATURES]
            self._affinity_cols = [j for j, c in enumerate(columns) if c in AFFINITY_FEATURES]
            self._copurchase_cols = [
                (j, COPURCHASE.index(c)) for j, c in enumerate(columns) if c in COPURCHASE
            ]
            self._candidates = CandidateSettings.of(models.nbo)
            self._neighbours = neighbour_table(models.nbo)
        self.catalog = self._read_catalog()
        self.precomputed: Precomputed | None = None
        self._precomputed_at: tuple[int, ...] | None = None
        # A cold-start answer: the population priors, scored like any customer.
        self._prior_scores = self._scores(
            np.array([float(models.churn.meta["prior"])]),
            np.array([float(models.clv.meta["prior"])]),
        )[0]

    def _read_catalog(self) -> OfferCatalog:
        if self.models.nbo is None:
            return OfferCatalog([], {}, np.empty((1, 0)), np.zeros(1), [], time.monotonic())
        rows = self.online.scan(OFFER_VIEW, OFFER_FEATURES)
        ids = sorted(rows)
        values = [rows[i].values for i in ids]
        stats = pd.DataFrame(
            {
                OFFER_ID: ids,
                **{
                    name: [as_number(v.get(name)) for v in values]
                    for name in ("offer_buyers_30d", "offer_trend_30d")
                },
            }
        ).fillna({"offer_buyers_30d": 0.0})
        popular = popular_offers(stats, self._candidates.popular)
        fixed = popular + trending_offers(stats, self._candidates.trending, popular)
        offer_value = np.asarray([float(v.get("offer_value") or 0.0) for v in values] + [0.0])
        return OfferCatalog(
            ids,
            {o: i for i, o in enumerate(ids)},
            self.models.nbo.matrix([*values, {}]),
            np.nan_to_num(offer_value),
            fixed,
            time.monotonic(),
        )

    def refresh_catalog(self, max_age_seconds: float) -> None:
        """Re-read the offers when the cached ones are older than `max_age_seconds`."""
        if time.monotonic() - self.catalog.loaded_at >= max_age_seconds:
            with self._lock:
                self.catalog = self._read_catalog()

    def answers(
        self, customer_ids: list[str], explain: bool = False, top_k: int | None = None
    ) -> list[dict[str, Any]]:
        """The answers of customers in the online store: `from_table` when it can give them
        all, else computed (`score` of `lookup`)."""
        found = self.from_table(customer_ids, explain, top_k)
        if found is not None:
            return found
        return self.score(self.lookup(customer_ids), explain, top_k)

    def from_table(
        self, customer_ids: list[str], explain: bool = False, top_k: int | None = None
    ) -> list[dict[str, Any]] | None:
        """The precomputed answers of these customers, without reading the store; None when
        they cannot all come from the table: reasons or another `top_k` asked, no table, the
        store written since the table was made, or a customer the table does not hold."""
        table = self.precomputed
        default_k = top_k is None or top_k == self._default_top_k()
        if explain or not default_k or table is None:
            return None
        if table.store_version != self.online.version():
            return None
        now = datetime.now(UTC)
        out: list[dict[str, Any]] = []
        for cid in customer_ids:
            found = table.answers.get(cid)
            if found is None:  # not in the store: a cold start, computed
                return None
            answer, as_of = found
            answer = dict(answer)  # the caller removes "_features"
            if as_of is not None:
                age, stale = freshness(as_of, now, self.stale_after_days)
                answer["feature_age_seconds"] = age
                if stale:
                    answer["warnings"] = [*answer["warnings"], *stale]
            out.append(answer)
        return out

    def precomputed_customers(self) -> int | None:
        """How many customers' answers the table of the store as it is now holds; None when
        there is no such table (answers are computed per request)."""
        table = self.precomputed
        if table is None or table.store_version != self.online.version():
            return None
        return len(table.answers)

    def precompute(self, max_customers: int, chunk: int = 1000) -> bool:
        """Compute every stored customer's answer from the online store as it is now and
        keep them (`answers` uses them while the store stays at this version). Does
        nothing when the store cannot tell its version or holds more than `max_customers`
        customers (answers are then computed per request). True when a table was made."""
        version = self.online.version()
        self._precomputed_at = version
        if version is None:
            return False
        ids = sorted(self.online.scan(CUSTOMER_VIEW, ()))
        if len(ids) > max_customers:
            self.precomputed = None
            return False
        with self._lock:  # the offers' values and popularity of this store version
            self.catalog = self._read_catalog()
        table: dict[str, tuple[dict[str, Any], datetime | None]] = {}
        for start in range(0, len(ids), chunk):
            customers = self.lookup(ids[start : start + chunk])
            answers = self.score(customers, at_request=False)
            for customer, answer in zip(customers, answers, strict=True):
                if customer.features is not None:
                    table[customer.customer_id] = (answer, customer.as_of)
        self.precomputed = Precomputed(version, table)
        return True

    def store_changed(self) -> bool:
        """True when the online store was written since the last `precompute`."""
        version = self.online.version()
        return version is not None and version != self._precomputed_at

    def _default_top_k(self) -> int:
        return int(self.models.nbo.meta["top_k"]) if self.models.nbo is not None else 0

    def lookup(self, customer_ids: list[str]) -> list[Customer]:
        """Customers' features and customer x offer rows from the online store."""
        keys_1 = [(c,) for c in customer_ids]
        rows = self.online.read(CUSTOMER_VIEW, keys_1, self._customer_names)
        if self._btyd_names:
            btyd = self.online.read(BTYD_VIEW, keys_1, self._btyd_names)
            for row, extra in zip(rows, btyd, strict=True):
                if row is not None:
                    row.values.update(
                        extra.values if extra is not None else dict.fromkeys(self._btyd_names)
                    )
        # Every candidate pair is looked up, popular offers included: like Feast's
        # point-in-time join in training, a pair the customer bought before the latest
        # snapshot's year keeps its last values until they expire (the views' ttl).
        popular = self.catalog.popular
        affinity: dict[str, dict[str, Row]] = {}
        keys: list[tuple[str, str]] = []
        for cid, row in zip(customer_ids, rows, strict=True):
            if row is None or self.models.nbo is None:
                continue
            history = str(row.values.get(HISTORY_OFFERS) or "").split(HISTORY_OFFERS_SEPARATOR)
            history = [o for o in history if o]
            wide, _ = customer_candidates(
                history, history, popular, self._neighbours, self._candidates.neighbours
            )
            offers = dict.fromkeys([*history, *wide])
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
        self,
        customers: list[Customer],
        explain: bool = False,
        top_k: int | None = None,
        at_request: bool = True,
    ) -> list[dict[str, Any]]:
        """One answer per customer (see serving/schemas.py `CustomerScore`), plus the model
        inputs under "_features" for the prediction log. Answers kept for later requests
        (not `at_request`) have no stale-feature warning: `from_table` adds it when due."""
        models = self.models
        known = [c for c in customers if c.features is not None]
        feats = [c.features or {} for c in known]
        x_churn, x_clv = models.churn.matrix(feats), models.clv.matrix(feats)
        p_churn = churn_probability(models.churn, x_churn) if known else np.empty(0)
        clv = clv_value(models.clv, x_clv) if known else np.empty(0)
        scores = self._scores(p_churn, clv)
        reasons: dict[str, list[dict[str, list[str]]]] = {}
        if explain and known:
            for kind, model, x in (("churn", models.churn, x_churn), ("clv", models.clv, x_clv)):
                reasons[kind] = [
                    {d: [r.text for r in found[d]] for d in ("up", "down")}
                    for found in reason_codes(
                        model, x, feats, self.explain_top, self.category_slots
                    )
                ]
        top_k = top_k or self._default_top_k()
        offers = self._offers(customers, top_k)
        now = datetime.now(UTC)
        out, position = [], {id(c): i for i, c in enumerate(known)}
        for n, customer in enumerate(customers):
            i = position.get(id(customer))
            if i is None:
                out.append(self._cold_start(customer, offers[n]))
                continue
            answer = self._answer(customer, scores[i], offers[n], now, at_request)
            if explain:
                answer["reasons"] = {kind: reasons[kind][i] for kind in reasons}
            out.append(answer)
        return out

    def _answer(
        self,
        c: Customer,
        scores: dict[str, Any],
        offers: list[dict[str, Any]],
        now: datetime,
        at_request: bool,
    ) -> dict[str, Any]:
        f = c.features or {}
        limit = self.stale_after_days if at_request else None
        age, stale = freshness(c.as_of, now, limit) if c.as_of else (None, [])
        return _in_schema_order(
            {
                "customer_id": c.customer_id,
                "as_of": c.as_of.isoformat() if c.as_of else None,
                "feature_age_seconds": age,
                **scores,
                "offers": offers,
                "segment": {name: f.get(name) for name in SEGMENT_FEATURES},
                "cold_start": False,
                "warnings": [*self.models.warnings, *stale],
                "_features": {name: f.get(name) for name in self.models.customer_features},
            }
        )

    def _cold_start(self, c: Customer, offers: list[dict[str, Any]]) -> dict[str, Any]:
        return _in_schema_order(
            {
                "customer_id": c.customer_id,
                "as_of": None,
                "feature_age_seconds": None,
                **self._prior_scores,
                # Population averages, not this customer's: no place in a priority ranking.
                "retention_priority": None,
                "offers": offers,
                "segment": {"rfm_segment": None, "value_tier": None, "lifecycle_stage": "new"},
                "cold_start": True,
                "warnings": [COLD_START_WARNING, *self.models.warnings],
                "_features": {},
            }
        )

    def _scores(self, p: np.ndarray, clv: np.ndarray) -> list[dict[str, Any]]:
        """Churn and CLV answers, retention priority and model versions of each customer
        (`serving.models` gives bands, flags, percentiles and tiers, as in batch scoring)."""
        models = self.models
        band, flag = churn_band(models.churn, p), churn_flag(models.churn, p)
        percentile = clv_percentile(models.clv, clv)
        tier = clv_tier(models.clv, percentile)
        return [
            {
                "churn": {
                    "probability": round(float(p[i]), DECIMALS["probability"]),
                    "band": str(band[i]),
                    "flag": bool(flag[i]),
                },
                "clv": {
                    "value": round(float(clv[i]), DECIMALS["money"]),
                    "percentile": round(float(percentile[i]), DECIMALS["percentile"]),
                    "tier": str(tier[i]),
                },
                "retention_priority": round(float(p[i] * clv[i]), DECIMALS["money"]),
                "model_versions": models.versions,
            }
            for i in range(len(p))
        ]

    def _offers(self, customers: list[Customer], k: int) -> list[list[dict[str, Any]]]:
        """`ranked_offers`, rounded for the answer."""
        return [
            [
                {
                    **offer,
                    "probability": round(offer["probability"], DECIMALS["probability"]),
                    "expected_value": round(offer["expected_value"], DECIMALS["money"]),
                }
                for offer in offers
            ]
            for offers in self.ranked_offers(customers, k)
        ]

    def ranked_offers(self, customers: list[Customer], k: int) -> list[list[dict[str, Any]]]:
        """Top-k offers per customer (rank, offer_id, probability, expected_value): the
        customer's history candidates (most bought first, as in training), the popular and
        trending offers and the co-purchase neighbours (`serving.models.customer_candidates`,
        what `candidates` makes in batch scoring and training), scored as pairs and ranked
        with the rules by `serving.models.rank_offers`."""
        nbo, catalog = self.models.nbo, self.catalog
        if nbo is None:  # no offer model: no offers (`Models.warnings` says why)
            return [[] for _ in customers]
        history_n = self._candidates.history
        blocks, offer_ids, recency = [], [], []
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
                    _or_inf(c.affinity[o].get(RECENCY)),
                    o,
                ),
            )[:history_n]
            ids, copurchase = customer_candidates(
                listed,
                history,
                catalog.popular,
                self._neighbours,
                self._candidates.neighbours,
                {o: c.affinity[o].get(HISTORY_WEIGHT) for o in listed},
            )
            x = catalog.matrix[[catalog.position.get(o, -1) for o in ids]]
            x[:, self._customer_cols] = nbo.matrix([f], self._customer_cols)[0, self._customer_cols]
            pairs = [c.affinity.get(o, {}) for o in ids]
            x[:, self._affinity_cols] = nbo.matrix(pairs, self._affinity_cols)[
                :, self._affinity_cols
            ]
            for j, at in self._copurchase_cols:
                x[:, j] = [copurchase.get(o, (0.0, 0.0, 0, 0.0))[at] for o in ids]
            blocks.append(x)
            offer_ids += ids
            recency += [as_number(pair.get(RECENCY)) for pair in pairs]
        out: list[list[dict[str, Any]]] = [[] for _ in customers]
        if not offer_ids:
            return out
        groups = np.repeat(np.arange(len(customers)), [len(b) for b in blocks])
        p = offer_probability(nbo, np.vstack(blocks))
        chosen, rank, expected = rank_offers(
            groups,
            np.asarray(offer_ids, dtype=object),
            p,
            catalog.value[[catalog.position.get(o, -1) for o in offer_ids]],
            np.asarray(recency, dtype=float),
            k,
            nbo.meta.get("exclude_bought_within_days"),
            None,
            nbo.meta.get("rank_by", "probability"),
        )
        for i, r, ev in zip(chosen.tolist(), rank.tolist(), expected.tolist(), strict=True):
            out[int(groups[i])].append(
                {
                    "rank": r,
                    "offer_id": offer_ids[i],
                    "probability": float(p[i]),
                    "expected_value": ev,
                }
            )
        return out


# The fields of an answer in the order of `serving.schemas.CustomerScore` (the JSON the API
# writes without re-validating), then the prediction log's inputs.
ANSWER_FIELDS = (
    "customer_id",
    "as_of",
    "feature_age_seconds",
    "churn",
    "clv",
    "offers",
    "segment",
    "retention_priority",
    "model_versions",
    "cold_start",
    "warnings",
    "reasons",
    "_features",
)


def freshness(
    as_of: datetime, now: datetime, stale_after_days: float | None
) -> tuple[int, list[str]]:
    """The age in seconds of features as of `as_of`, and a warning naming it in days when
    it is over `stale_after_days` (none when None)."""
    age = round((now - as_of).total_seconds())
    if stale_after_days is None or age <= stale_after_days * 86_400:
        return age, []
    return age, [
        f"stale features: {age // 86_400:,} days old (as of {as_of.date()}), over "
        f"serving.stale_feature_days ({stale_after_days:g}); run `crmscore features build` "
        "and `crmscore features materialize` for fresh scores"
    ]


def _in_schema_order(answer: dict[str, Any]) -> dict[str, Any]:
    return {name: answer.get(name) for name in ANSWER_FIELDS}


def _or_inf(value: Any) -> float:
    return float("inf") if value is None else float(value)
