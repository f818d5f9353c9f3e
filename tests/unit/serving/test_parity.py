"""The API (serving.scoring, row dicts from the online store) and batch scoring
(serving.batch, DataFrames from Feast) give every customer the same answer: churn, CLV with
its percentile and tier, and the same top-k offers with the same probabilities and expected
values, ranked by the same rules."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import pytest

from features.feast_repo import AFFINITY_VIEW, OFFER_VIEW, SERVICE_FEATURES
from features.names import HISTORY_OFFERS, HISTORY_OFFERS_SEPARATOR
from features.online import OnlineRow
from serving.batch import Champions, score_frame
from serving.models import (
    COPURCHASE,
    BundleModel,
    candidates,
    model_candidates,
    recommend,
    set_population,
)
from serving.scoring import Customer, Models, Scorer
from tests.unit.serving.test_models import CHURN_FEATURES, CLV_FEATURES, awkward, rows
from tests.unit.training.data import (
    CUTOFF,
    NBO_FEATURES,
    affinity_frame,
    offers_frame,
    pairs_frame,
)
from tests.unit.training.test_models import _customers
from training.churn import train_churn
from training.clv import train_clv
from training.config import ChurnParams, ClvParams, NboParams
from training.nbo import fit_neighbours, neighbours_meta, train_nbo

KEYS = ["customer_id", "event_timestamp"]
AFFINITY = SERVICE_FEATURES["nbo_v1"][AFFINITY_VIEW]
OFFER_STATS = SERVICE_FEATURES["nbo_v1"][OFFER_VIEW]


class CatalogOnly:
    """An online store that only lists the offers (the scorer reads nothing else here)."""

    def __init__(self, offers: pd.DataFrame) -> None:
        self.offers = offers

    def scan(self, view: str, names: Any) -> dict[str, OnlineRow]:
        assert view == OFFER_VIEW
        return {
            str(r["offer_id"]): OnlineRow({n: r[n] for n in names}, None) for r in rows(self.offers)
        }


@pytest.fixture(scope="module")
def churn_clv() -> tuple[BundleModel, BundleModel]:
    train, y_train, c_train = _customers(2000, 1)
    valid, y_valid, c_valid = _customers(800, 2)
    population, _, _ = _customers(500, 3)
    churn, _ = train_churn(train, y_train, valid, y_valid, CHURN_FEATURES, ChurnParams(), 3)
    clv, _ = train_clv(train, c_train, valid, c_valid, CLV_FEATURES, ClvParams(), 5)
    for model in (churn, clv):
        set_population(model, model.predict(population))
    return churn, clv


@pytest.fixture(scope="module", params=[None, 30, "wide"])
def nbo(request: pytest.FixtureRequest) -> BundleModel:
    """Narrow candidates (history + popular), with and without the recency rule; and wide
    ones (trending and co-purchase neighbours too, ranked by expected value by a ranker)."""
    train, valid = pairs_frame(300, 12, 1), pairs_frame(150, 12, 2)
    wide = request.param == "wide"
    params = NboParams(
        top_k=3,
        history_candidates=3,
        popular_candidates=4,
        trending_candidates=2 if wide else 0,
        neighbour_candidates=2 if wide else 0,
        exclude_bought_within_days=None if wide else request.param,
        objectives=["lambdarank"] if wide else ["binary"],
        rank_by="expected_value" if wide else "probability",
        lgbm={"learning_rate": 0.2},
    )
    features, neighbours = NBO_FEATURES, None
    if wide:
        features = [*NBO_FEATURES, *COPURCHASE]
        customers = train[KEYS].drop_duplicates()
        neighbours = neighbours_meta(
            fit_neighbours(affinity_frame(customers, offers_frame(12, 10), 5), 4)
        )
        rng = np.random.default_rng(7)
        for frame in (train, valid):
            frame["copurchase_score"] = rng.exponential(0.3, len(frame)) * (1 + frame["accepted"])
            frame["copurchase_max"] = frame["copurchase_score"] / 2
            frame["copurchase_links"] = rng.poisson(1, len(frame))
            frame["copurchase_weighted_score"] = frame["copurchase_score"] * rng.uniform(
                0, 1, len(frame)
            )
    model, _ = train_nbo(
        train, train["accepted"].to_numpy(), valid, valid["accepted"].to_numpy(),
        features, params, 4, neighbours,
    )  # fmt: skip
    return model


def test_api_and_batch_answer_alike(
    churn_clv: tuple[BundleModel, BundleModel], nbo: BundleModel
) -> None:
    churn, clv = churn_clv
    customers = awkward(60, 9)
    rng = np.random.default_rng(9)
    customers["value_tier"] = rng.choice(["high", "medium", "low", "unheard-of"], len(customers))
    customers["event_timestamp"] = CUTOFF
    offers = offers_frame(12, 10)
    affinity = affinity_frame(customers, offers, 11)
    versions = {"churn": "1@champion", "clv": "2@champion", "nbo": "3@challenger"}
    for model in (churn, clv, nbo):
        model.version = versions[model.kind]

    # Batch: candidate pairs with their features (what Feast returns), ranked, scored.
    pairs = model_candidates(nbo, affinity, offers, customers[KEYS])
    if nbo.meta["neighbour_candidates"]:  # trending and neighbour candidates were added
        assert len(pairs) > len(candidates(affinity, offers, customers[KEYS], 3, 4))
        assert (pairs["copurchase_score"] > 0).any()
        assert (pairs["copurchase_weighted_score"] > 0).any()
    customer_columns = [c for c in NBO_FEATURES if c in customers]
    pairs = (
        pairs.merge(customers[[*KEYS, *customer_columns]], on=KEYS)
        .merge(offers[["offer_id", *OFFER_STATS]], on="offer_id")
        .merge(affinity, on=[*KEYS, "offer_id"], how="left")
    )
    assert len(customer_columns) + len(OFFER_STATS) + len(AFFINITY) == len(NBO_FEATURES)
    top = recommend(nbo, pairs)
    batch = score_frame(
        customers, customers, customers, top, Champions(churn, clv, nbo, versions)
    ).set_index("customer_id")

    # API: the same customers as the online store gives them.
    scorer = Scorer(Models(churn, clv, nbo), CatalogOnly(offers))  # type: ignore[arg-type]
    held = {
        str(c): {str(o): r for o, r in zip(g["offer_id"], rows(g[AFFINITY]), strict=True)}
        for c, g in affinity.groupby("customer_id")
    }
    api_customers = [
        Customer(
            row["customer_id"],
            {
                **row,
                HISTORY_OFFERS: HISTORY_OFFERS_SEPARATOR.join(held.get(row["customer_id"], {})),
            },
            datetime.fromisoformat("2024-01-01T00:00:00+00:00"),
            held.get(row["customer_id"], {}),
        )
        for row in rows(customers.drop(columns="event_timestamp"))
    ]
    answers = scorer.score(api_customers, explain=True)
    ranked = scorer.ranked_offers(api_customers, int(nbo.meta["top_k"]))

    assert len(answers) == len(batch) == 60
    for answer, offers_of in zip(answers, ranked, strict=True):
        b = batch.loc[answer["customer_id"]]
        assert answer["churn"] == {
            "probability": b["churn_probability"],
            "band": b["churn_band"],
            "flag": bool(b["churn_flag"]),
        }
        assert answer["clv"] == {
            "value": b["clv"],
            "percentile": b["clv_percentile"],
            "tier": b["clv_tier"],
        }
        assert answer["retention_priority"] == b["retention_priority"]
        assert answer["model_versions"] == versions
        assert answer["reasons"]["churn"]["up"] or answer["reasons"]["churn"]["down"]
        listed = [c for c in ("offer_1", "offer_2", "offer_3") if c in batch]
        assert 1 <= len(offers_of) == int(b[listed].notna().sum()) <= 3
        for offer in offers_of:
            k = offer["rank"]
            assert offer["offer_id"] == b[f"offer_{k}"]
            assert offer["probability"] == pytest.approx(b[f"offer_{k}_probability"], abs=1e-12)
            assert offer["expected_value"] == pytest.approx(
                b[f"offer_{k}_expected_value"], abs=1e-12
            )
        assert [o["offer_id"] for o in answer["offers"]] == [o["offer_id"] for o in offers_of]
    assert batch["clv_tier"].nunique() > 1 and batch["churn_band"].nunique() > 1
    if nbo.meta["exclude_bought_within_days"] is not None:  # the rule did remove offers
        recent = affinity[affinity["affinity_recency_days"] < 30]
        shown = top.merge(recent, on=[*KEYS, "offer_id"])
        assert shown.empty and not recent.empty


def test_percentile_and_tier_do_not_depend_on_who_else_is_scored(
    churn_clv: tuple[BundleModel, BundleModel], nbo: BundleModel
) -> None:
    churn, clv = churn_clv
    customers = awkward(40, 12)
    customers["event_timestamp"] = CUTOFF
    models = Champions(churn, clv, nbo, {"churn": "1", "clv": "1", "nbo": "1"})
    top = pd.DataFrame(
        columns=["customer_id", "rank", "offer_id", "probability", "expected_value"]
    ).astype({"rank": int})
    everyone = score_frame(customers, customers, customers, top, models)
    few = score_frame(customers.head(3), customers.head(3), customers.head(3), top, models)
    pd.testing.assert_frame_equal(few, everyone.head(3))
