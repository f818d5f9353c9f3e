"""Training sets split by time (features come from Feast through `features.retrieval`)."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from training.config import SplitParams


@dataclass(frozen=True)
class TimeSplit:
    """Cutoffs of each part; label windows of one part end before the next part starts."""

    train: tuple[pd.Timestamp, ...]
    valid: tuple[pd.Timestamp, ...]
    test: pd.Timestamp
    horizon_days: int  # the label horizon the parts are kept apart by

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
    before it whose horizon ends by the test cutoff (fewer than `valid_cutoffs` when no
    training cutoff would be left), train on those whose horizon ends by the first
    validation cutoff."""
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
    # A short history: fewer validation cutoffs, so that some training cutoff fits before.
    while len(valid) > 1 and not any(c + horizon <= valid[0] for c in cutoffs):
        valid = valid[1:]
    train = [c for c in cutoffs if c + horizon <= valid[0]][-params.max_train_cutoffs :]
    if not train:
        raise ValueError(
            f"no training cutoff ends its {horizon_days}-day horizon before the "
            f"first validation cutoff {valid[0].date()}"
        )
    return TimeSplit(tuple(train), tuple(valid), test, horizon_days)
