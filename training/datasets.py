"""Training sets: labels joined to point-in-time features from Feast, split by time."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from feast import FeatureStore

from features.feast_repo import SERVICE_FEATURES
from features.names import EVENT_TIMESTAMP
from training.config import SplitParams


@dataclass(frozen=True)
class TimeSplit:
    """Cutoffs of each part; label windows of one part end before the next part starts."""

    train: tuple[pd.Timestamp, ...]
    valid: tuple[pd.Timestamp, ...]
    test: pd.Timestamp

    def part(self, stamps: pd.Series) -> pd.Series:
        """'train', 'valid', 'test' or '' for each timestamp."""
        out = pd.Series("", index=stamps.index, dtype=object)
        out[stamps.isin(self.train)] = "train"
        out[stamps.isin(self.valid)] = "valid"
        out[stamps == self.test] = "test"
        return out

    def as_dict(self) -> dict[str, list[str]]:
        """JSON-ready cutoffs, for MLflow and reports."""
        return {
            "train": [c.date().isoformat() for c in self.train],
            "valid": [c.date().isoformat() for c in self.valid],
            "test": [self.test.date().isoformat()],
        }


def time_split(
    labelled_cutoffs: list[pd.Timestamp], horizon_days: int, params: SplitParams
) -> TimeSplit:
    """Test on the latest labelled cutoff (or the configured one), validate on the cutoffs
    before it whose horizon ends by the test cutoff, train on those whose horizon ends by the
    first validation cutoff."""
    cutoffs = sorted(set(labelled_cutoffs))
    if not cutoffs:
        raise ValueError("no labelled cutoffs: the data is shorter than the label horizon")
    horizon = pd.Timedelta(days=horizon_days)
    if params.test_cutoff is not None:
        test = pd.Timestamp(params.test_cutoff, tz="UTC")
        if test not in cutoffs:
            raise ValueError(
                f"test cutoff {test.date()} has no labels; labelled cutoffs: "
                f"{[c.date().isoformat() for c in cutoffs]}"
            )
    else:
        test = cutoffs[-1]
    valid = [c for c in cutoffs if c + horizon <= test][-params.valid_cutoffs :]
    if not valid:
        raise ValueError(
            f"no validation cutoff ends its {horizon_days}-day horizon before the "
            f"test cutoff {test.date()}"
        )
    train = [c for c in cutoffs if c + horizon <= valid[0]][-params.max_train_cutoffs :]
    if not train:
        raise ValueError(
            f"no training cutoff ends its {horizon_days}-day horizon before the "
            f"first validation cutoff {valid[0].date()}"
        )
    return TimeSplit(tuple(train), tuple(valid), test)


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
