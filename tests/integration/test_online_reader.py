"""The serving reader of the SQLite online store returns what Feast's get_online_features
returns, for every view, known and unknown keys."""

from __future__ import annotations

import math

import pandas as pd

from crmscore.settings import load_settings
from features.feast_repo import AFFINITY_VIEW, CUSTOMER_VIEW, OFFER_VIEW
from features.names import ALL_FEATURES
from features.online import OnlineFeatures
from features.store import open_store
from tests.integration.conftest import Trained


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    return a == b


def test_reader_equals_feast_get_online_features(trained: Trained) -> None:
    settings = load_settings(trained.workspace, dataset=str(trained.dataset))
    store = open_store(settings.feast, settings.paths)
    reader = OnlineFeatures(store)
    affinity = pd.read_parquet(settings.paths.snapshot(AFFINITY_VIEW))
    pairs = list(affinity[["customer_id", "offer_id"]].astype(str).itertuples(index=False))[:40]
    customers = sorted({c for c, _ in pairs})[:20]
    offers = sorted(reader.scan(OFFER_VIEW, []))
    cases = {
        CUSTOMER_VIEW: ([(c,) for c in customers] + [("no-such-customer",)], ["customer_id"]),
        OFFER_VIEW: ([(o,) for o in offers], ["offer_id"]),
        AFFINITY_VIEW: ([tuple(p) for p in pairs] + [("x", "y")], ["customer_id", "offer_id"]),
    }
    assert len(offers) > 3
    for view, (keys, join_keys) in cases.items():
        names = [f.name for f in store.get_feature_view(view).features]
        ours = reader.read(view, keys, names)
        theirs = store.get_online_features(
            features=[f"{view}:{n}" for n in names],
            entity_rows=[dict(zip(join_keys, k, strict=True)) for k in keys],
        ).to_dict()
        found = 0
        for i, row in enumerate(ours):
            if row is None:
                assert all(theirs[n][i] is None for n in names), (view, keys[i])
                continue
            found += 1
            assert row.event_timestamp is not None
            for n in names:
                expected = theirs[n][i]
                if ALL_FEATURES[n].dtype == "float" and expected is not None:
                    expected = float(expected)
                assert _same(row.values[n], expected), (view, keys[i], n)
        assert found == len(keys) - (view != OFFER_VIEW), view

    # A customer's rows by one range scan equal the rows read key by key.
    names = [f.name for f in store.get_feature_view(AFFINITY_VIEW).features]
    for customer in customers[:5]:
        by_prefix = reader.read_by_first_key(AFFINITY_VIEW, customer, names)
        by_key = reader.read(AFFINITY_VIEW, [(customer, o) for o in offers], names)
        expected = {o: r.values for o, r in zip(offers, by_key, strict=True) if r is not None}
        assert {o: r.values for o, r in by_prefix.items()} == expected
        assert expected
