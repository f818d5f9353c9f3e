"""Next-best-offer: wider candidates (trending, co-purchase neighbours) and their recall
ceiling, ranking by expected value, and the LambdaRank objective."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from serving.models import (
    COPURCHASE,
    HISTORY_WEIGHT,
    BundleModel,
    candidates,
    customer_candidates,
    neighbour_frame,
    neighbour_table,
    rank_offers,
    recommend,
)
from tests.unit.features.test_engineering import (
    CUTOFFS,
    LABELS,
    _at,
    _build,
    _random_transactions,
    changed_future,
)
from tests.unit.training.data import CUTOFF, NBO_FEATURES, pairs_frame
from training.config import NboParams
from training.nbo import (
    fit_neighbours,
    hit_rate,
    neighbours_meta,
    refit_nbo,
    sample_negatives,
    train_nbo,
)
from training.nbo_pipeline import buyer_segments, candidate_recall, cutoff_pairs

KEYS = ["customer_id", "event_timestamp"]


def _offers() -> pd.DataFrame:
    """p1, p2 popular; t1 rising fast, t2 rising slowly, f1 falling; n1, n2 niche."""
    return pd.DataFrame(
        {
            "offer_id": ["p1", "p2", "t1", "t2", "f1", "n1", "n2"],
            "offer_buyers_30d": [100.0, 90, 30, 20, 40, 1, 1],
            "offer_trend_30d": [0.0, 0.1, 0.8, 0.5, -0.5, 0.0, 0.0],
            "offer_value": [10.0, 5, 20, 20, 3, 50, 1],
            "event_timestamp": CUTOFF,
        }
    )


def _affinity() -> pd.DataFrame:
    """Customer a bought h1 (twice) and h2; b bought h2; c bought nothing."""
    return pd.DataFrame(
        {
            "customer_id": ["a", "a", "b"],
            "event_timestamp": CUTOFF,
            "offer_id": ["h1", "h2", "h2"],
            "affinity_orders_365d": [2.0, 1, 1],
            "affinity_recency_days": [10.0, 40, 5],
            HISTORY_WEIGHT: [0.8, 0.4, 1.0],
        }
    )


NEIGHBOURS = pd.DataFrame(
    {
        "offer_id": ["h1", "h1", "h1", "h2", "h2"],
        "neighbour_id": ["n1", "h2", "p1", "n1", "n2"],
        "similarity": [0.5, 0.4, 0.3, 0.25, 0.2],
    }
)


def test_candidates_add_trending_and_co_purchase_neighbours() -> None:
    customers = pd.DataFrame({"customer_id": ["a", "b", "c"], "event_timestamp": CUTOFF})
    pairs = candidates(_affinity(), _offers(), customers, 10, 2, 1, 1, NEIGHBOURS)
    got = {c: list(g["offer_id"]) for c, g in pairs.groupby("customer_id")}
    # History + the 2 popular + the fastest-rising other offer (t1, not the falling f1) +
    # the best neighbour not bought: for a n1 (0.5 + 0.25) beats n2; b only links to n1.
    assert got == {
        "a": ["h1", "h2", "n1", "p1", "p2", "t1"],
        "b": ["h2", "n1", "p1", "p2", "t1"],
        "c": ["p1", "p2", "t1"],
    }
    a = pairs[pairs["customer_id"] == "a"].set_index("offer_id")
    # Sum, max, links, and the sum weighted by each history offer's share of a's weighted
    # orders (h1 0.8, h2 0.4): n1 0.5 x 0.8 + 0.25 x 0.4.
    assert a.loc["n1", list(COPURCHASE)].tolist() == [0.75, 0.5, 2, 0.5]
    assert a.loc["p1", list(COPURCHASE)].tolist() == [0.3, 0.3, 1, 0.24]
    assert a.loc["h2", list(COPURCHASE)].tolist() == [0.4, 0.4, 1, 0.32]  # bought, still linked
    assert a.loc["t1", list(COPURCHASE)].tolist() == [0, 0, 0, 0]
    b = pairs[pairs["customer_id"] == "b"].set_index("offer_id")
    assert b.loc["n1", "copurchase_weighted_score"] == 0.25
    # Without neighbours: the narrow set, no co-purchase columns.
    narrow = candidates(_affinity(), _offers(), customers, 10, 2)
    assert not set(COPURCHASE) & set(narrow) and set(narrow["offer_id"]) == {"h1", "h2", "p1", "p2"}
    # The API's per-customer version gives the same candidates and features.
    ids, features = customer_candidates(
        ["h1", "h2"],
        ["h1", "h2"],
        ["p1", "p2", "t1"],
        neighbour_table_of(NEIGHBOURS),
        1,
        {"h1": 0.8, "h2": 0.4},
    )
    assert ids == got["a"]
    assert features["n1"] == (0.75, 0.5, 2, 0.5) and "t1" not in features
    assert features["p1"] == tuple(a.loc["p1", list(COPURCHASE)])


def neighbour_table_of(frame: pd.DataFrame) -> dict[str, list[tuple[str, float]]]:
    model = BundleModel("nbo", [], {}, {}, {"neighbours": neighbours_meta(frame)})
    table = neighbour_table(model)
    assert table is not None
    pd.testing.assert_frame_equal(
        neighbour_frame(table).sort_values(["offer_id", "neighbour_id"]).reset_index(drop=True),
        frame.sort_values(["offer_id", "neighbour_id"]).reset_index(drop=True),
    )
    return table


def test_candidate_recall_counts_purchases_among_candidates() -> None:
    customers = pd.DataFrame({"customer_id": ["a", "b", "c"], "event_timestamp": CUTOFF})
    wide = candidates(_affinity(), _offers(), customers, 10, 2, 1, 1, NEIGHBOURS)
    narrow = candidates(_affinity(), _offers(), customers, 10, 2)
    bought = pd.DataFrame(
        {
            "customer_id": ["a", "a", "b", "c", "c"],
            "offer_id": ["h1", "n1", "t1", "p2", "zz"],
            "event_timestamp": CUTOFF,
        }
    )
    # Wide: h1, n1, t1 and p2 are candidates, zz is not: 4 of 5. Narrow: h1 and p2 only.
    assert candidate_recall(wide, bought) == pytest.approx(4 / 5)
    assert candidate_recall(narrow, bought) == pytest.approx(2 / 5)
    assert candidate_recall(wide, bought.iloc[:0]) == 0.0


def _queries(n: int = 40, per: int = 30) -> tuple[pd.DataFrame, np.ndarray]:
    """n customers x `per` pairs at two cutoffs; pair j of a query is accepted when
    j % 7 == 0 (5 of 30)."""
    j = np.tile(np.arange(per), 2 * n)
    pairs = pd.DataFrame(
        {
            "customer_id": np.repeat([f"c{i}" for i in range(n)] * 2, per),
            "event_timestamp": np.repeat([CUTOFF, CUTOFF + pd.Timedelta(days=30)], n * per),
            "offer_id": [f"o{x}" for x in j],
        }
    )
    return pairs, (j % 7 == 0).astype(int)


def test_sample_negatives_keeps_every_positive_and_a_seeded_uniform_sample() -> None:
    pairs, y = _queries()
    kept = sample_negatives(pairs, y, 8, seed=3)
    assert np.array_equal(kept, np.unique(kept))
    # Every accepted pair; 8 of the 25 others in each of the 80 queries.
    assert set(np.flatnonzero(y)) <= set(kept)
    negatives = pairs.iloc[kept][y[kept] == 0]
    per_query = negatives.groupby(["customer_id", "event_timestamp"]).size()
    assert len(per_query) == 80 and set(per_query) == {8}
    # Uniform: each offer's share of the kept negatives near 8 / 25, not the same offers
    # for everybody.
    share = negatives["offer_id"].value_counts() / 80
    assert len(share) == 25 and share.between(0.15, 0.5).all()
    assert sample_negatives(pairs, y, 8, seed=3).tolist() == kept.tolist()
    assert sample_negatives(pairs, y, 8, seed=4).tolist() != kept.tolist()
    # A cap above the query size, or None: every pair.
    assert sample_negatives(pairs, y, 30, seed=3).tolist() == list(range(len(pairs)))
    assert sample_negatives(pairs, y, None, seed=3).tolist() == list(range(len(pairs)))


def test_only_a_training_cutoff_is_sampled() -> None:
    customers = pd.DataFrame({"customer_id": ["a", "b", "c"], "event_timestamp": CUTOFF})
    labels = pd.DataFrame(
        {
            "customer_id": ["a", "c"],
            "offer_id": ["t1", "p2"],
            "event_timestamp": CUTOFF,
            "accepted": 1,
        }
    )
    nbo = NboParams(
        history_candidates=10,
        popular_candidates=3,
        trending_candidates=2,
        neighbour_candidates=0,
        train_negatives_per_query=1,
    )
    full, near = cutoff_pairs(_affinity(), _offers(), customers, labels, nbo, 1, sample=False)
    assert near is None
    pd.testing.assert_frame_equal(full, candidates(_affinity(), _offers(), customers, 10, 3, 2))
    sampled, _ = cutoff_pairs(_affinity(), _offers(), customers, labels, nbo, 1, sample=True)
    got = {c: set(g["offer_id"]) for c, g in sampled.groupby("customer_id")}
    every = {c: set(g["offer_id"]) for c, g in full.groupby("customer_id")}
    # Each customer: the accepted offer (a: t1, c: p2; b has none) and one other candidate.
    assert {c: len(o) for c, o in got.items()} == {"a": 2, "b": 1, "c": 2}
    assert "t1" in got["a"] and "p2" in got["c"]
    assert all(got[c] <= every[c] for c in got)


def test_fit_neighbours_is_cosine_over_customers() -> None:
    # x and y are bought together by 3 of their 3 and 4 buyers; z with x by 2 only.
    rows = [(c, o) for c in "abc" for o in "xy"] + [("d", "y"), ("a", "z"), ("b", "z")]
    affinity = pd.DataFrame(rows, columns=["customer_id", "offer_id"])
    near = fit_neighbours(affinity, per_offer=1)
    top = dict(
        zip(
            near["offer_id"],
            zip(near["neighbour_id"], near["similarity"], strict=True),
            strict=True,
        )
    )
    assert top["x"] == ("y", pytest.approx(round(3 / np.sqrt(3 * 4), 6)))
    assert top["z"] == ("x", pytest.approx(round(2 / np.sqrt(2 * 3), 6)))
    assert fit_neighbours(affinity, per_offer=5, min_common=3)["offer_id"].tolist() == ["x", "y"]


def test_rank_offers_by_expected_value() -> None:
    groups = np.array([0, 0, 0, 1, 1])
    ids = np.array(["a", "b", "c", "a", "b"], dtype=object)
    p = np.array([0.6, 0.3, 0.1, 0.2, 0.4])
    value = np.array([1.0, 10.0, np.nan, 5.0, 1.0])
    recency = np.full(5, np.nan)
    chosen, _, expected = rank_offers(groups, ids, p, value, recency, 1)
    assert ids[chosen].tolist() == ["a", "b"]  # by probability
    chosen, rank, expected = rank_offers(groups, ids, p, value, recency, 2, by="expected_value")
    assert ids[chosen].tolist() == ["b", "a", "a", "b"] and rank.tolist() == [1, 2, 1, 2]
    np.testing.assert_allclose(expected, [3.0, 0.6, 1.0, 0.4])
    with pytest.raises(ValueError, match="expected_value"):
        rank_offers(groups, ids, p, value, recency, 2, by="value")


def _fit(params: NboParams) -> tuple[BundleModel, dict[str, object]]:
    train, valid = pairs_frame(300, 20, 1), pairs_frame(150, 20, 2)
    return train_nbo(
        train, train["accepted"].to_numpy(), valid, valid["accepted"].to_numpy(),
        NBO_FEATURES, params.model_copy(update={"lgbm": {"learning_rate": 0.2}}), 4,
    )  # fmt: skip


def test_recommend_follows_the_rank_by_setting() -> None:
    model, _ = _fit(NboParams(top_k=3, objectives=["binary"], rank_by="expected_value"))
    assert model.meta["rank_by"] == "expected_value"
    test = pairs_frame(40, 20, 3)
    top = recommend(model, test)
    assert (top.groupby("customer_id")["expected_value"].diff().dropna() <= 0).all()
    model.meta["rank_by"] = "probability"
    by_p = recommend(model, test)
    assert (by_p.groupby("customer_id")["probability"].diff().dropna() <= 0).all()
    assert not top["offer_id"].equals(by_p["offer_id"])


def test_lambdarank_trains_ranks_and_maps_scores_to_probabilities() -> None:
    model, info = _fit(NboParams(top_k=3, objectives=["lambdarank"]))
    assert model.meta["objective"] == info["objective"] == "lambdarank"
    assert model.boosters["nbo"].params["objective"] == "lambdarank"
    test = pairs_frame(120, 20, 3)
    p = model.predict(test)
    assert ((p > 0) & (p < 1)).all()
    # Higher scores are likelier purchases: the probability map is increasing.
    assert model.meta["probability"]["coef"] > 0
    y = test["accepted"].to_numpy()
    # Far better than chance: 3 offers of 20 drawn at random for the same customers.
    bought = test[y == 1].groupby("customer_id")["offer_id"].agg(set)
    rng = np.random.default_rng(0)
    offers = sorted(test["offer_id"].unique())
    chance = np.mean([bool(set(rng.choice(offers, 3, replace=False)) & b) for b in bought])
    assert hit_rate(model, test, y, 3) > chance + 0.1
    # Both objectives: the one with the better validation hit rate is kept.
    both, info = _fit(NboParams(top_k=3, objectives=["binary", "lambdarank"]))
    hits = info["valid_hit"]
    assert isinstance(hits, dict) and set(hits) == {"binary", "lambdarank"}
    assert both.meta["objective"] == max(hits, key=lambda o: (hits[o], o == "binary"))


@pytest.mark.parametrize("cutoff", CUTOFFS[:2])
def test_changing_the_future_does_not_move_candidate_features(cutoff: date) -> None:
    """Candidates and their co-purchase features at a cutoff, from the affinity and offer
    views and the neighbours fitted on them, are the same whatever happens after it."""
    base = _random_transactions(1)
    got = []
    for frame in (base, changed_future(base, pd.Timestamp(cutoff, tz="UTC"))):
        out = _build(frame, CUTOFFS, LABELS)
        affinity = _at(out["customer_offer_features"], cutoff)
        offers = _at(out["offer_features"], cutoff)
        near = fit_neighbours(affinity, 3)
        got.append(candidates(affinity, offers, affinity[KEYS].drop_duplicates(), 5, 2, 1, 2, near))
    pd.testing.assert_frame_equal(got[0], got[1])
    assert (got[0]["copurchase_weighted_score"] > 0).mean() > 0.5  # not vacuous


@pytest.mark.parametrize("objective", ["binary", "lambdarank"])
def test_refit_learns_from_training_and_validation_cutoffs(objective: str) -> None:
    train = pairs_frame(300, 20, 1)
    valid = pairs_frame(150, 20, 2).assign(event_timestamp=CUTOFF + pd.Timedelta(days=31))
    params = NboParams(top_k=3, objectives=[objective], lgbm={"learning_rate": 0.2})
    model, info = train_nbo(
        train, train["accepted"].to_numpy(), valid, valid["accepted"].to_numpy(),
        NBO_FEATURES, params, 4,
    )  # fmt: skip
    observed = pd.concat([train, valid], ignore_index=True)
    refitted = refit_nbo(model, info["lgbm_params"], observed, observed["accepted"].to_numpy(), 4)
    # As many rounds as validation chose, with the same objective, settings and map.
    booster = refitted.boosters["nbo"]
    assert booster.num_trees() == model.boosters["nbo"].best_iteration
    assert booster.params["objective"] == objective
    assert refitted.meta == model.meta and refitted.boosters["nbo"] is not model.boosters["nbo"]
    test = pairs_frame(120, 20, 3)
    y = test["accepted"].to_numpy()
    assert not np.allclose(refitted.predict(test), model.predict(test))
    bought = test[y == 1].groupby("customer_id")["offer_id"].agg(set)
    rng = np.random.default_rng(0)
    offers = sorted(test["offer_id"].unique())
    chance = np.mean([bool(set(rng.choice(offers, 3, replace=False)) & b) for b in bought])
    assert hit_rate(refitted, test, y, 3) > chance + 0.1


def test_buyer_segments_split_at_three_orders_in_the_year() -> None:
    pairs = pd.DataFrame(
        {
            "customer_id": ["a", "a", "b", "c", "d", "d"],
            "offer_id": ["o1", "o2", "o1", "o1", "o1", "o2"],
            "frequency_365d": [3.0, 3.0, 4.0, np.nan, 0.0, 0.0],
        }
    )
    segments = buyer_segments(pairs)
    # At most 3 orders is light; c's orders are unknown: none.
    assert segments == {"light_buyers": {"a", "c", "d"}, "heavy_buyers": {"b"}}
    assert buyer_segments(pairs.drop(columns="frequency_365d")) == {}
