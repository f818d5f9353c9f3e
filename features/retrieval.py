"""Reading a model's features from Feast's offline store, for training sets and batch scoring."""

from __future__ import annotations

import pandas as pd
from feast import FeatureStore

from features.feast_repo import SERVICE_FEATURES
from features.names import EVENT_TIMESTAMP


def service_features(service: str) -> list[str]:
    """Feature names of a feature service, in the service's order."""
    return [name for names in SERVICE_FEATURES[service].values() for name in names]


def historical_features(store: FeatureStore, service: str, entities: pd.DataFrame) -> pd.DataFrame:
    """`entities` (join keys + event_timestamp + anything else) with the service's features.

    Each feature view of the service is fetched with its own de-duplicated entity rows and
    merged back onto `entities` by its keys: Feast's file offline store, asked for views with
    different join keys in one call, returns only a fraction of the rows, and it keeps
    neither the row order nor rows without a value inside the ttl."""
    out = entities.copy()
    out[EVENT_TIMESTAMP] = pd.to_datetime(out[EVENT_TIMESTAMP], utc=True)
    for view_name, names in SERVICE_FEATURES[service].items():
        view = store.get_feature_view(view_name)
        keys = [store.get_entity(e).join_key for e in view.entities] + [EVENT_TIMESTAMP]
        request = out[keys].drop_duplicates().reset_index(drop=True)
        fetched = store.get_historical_features(
            entity_df=request, features=[f"{view_name}:{n}" for n in names]
        ).to_df()
        fetched[EVENT_TIMESTAMP] = pd.to_datetime(fetched[EVENT_TIMESTAMP], utc=True)
        out = out.merge(fetched[keys + names], on=keys, how="left")
    return out
