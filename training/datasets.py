"""Training sets split by time (features come from Feast through `features.retrieval`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from training.config import SplitParams


@dataclass(frozen=True)
class TimeSplit:
    """Cutoffs of each part; label windows of one part end before the next part starts.

    `gap`: the cutoffs between the last training and the first validation cutoff whose
    outcome is observed before the test cutoff. Their label windows overlap validation, so
    they neither train nor validate the choices; the refit learns from them (empty when the
    caller does not refit)."""

    train: tuple[pd.Timestamp, ...]
    valid: tuple[pd.Timestamp, ...]
    test: pd.Timestamp
    horizon_days: int  # the label horizon the parts are kept apart by
    gap: tuple[pd.Timestamp, ...] = ()

    def part(self, stamps: pd.Series) -> pd.Series:
        """'train', 'gap', 'valid', 'test' or '' for each timestamp."""
        out = pd.Series("", index=stamps.index, dtype=object)
        out[stamps.isin(self.train)] = "train"
        out[stamps.isin(self.gap)] = "gap"
        out[stamps.isin(self.valid)] = "valid"
        out[stamps == self.test] = "test"
        return out

    def as_dict(self) -> dict[str, list[str]]:
        """JSON-ready cutoffs, for MLflow and reports (the gap only when there is one)."""
        out = {
            "train": [c.date().isoformat() for c in self.train],
            "valid": [c.date().isoformat() for c in self.valid],
            "test": [self.test.date().isoformat()],
        }
        if self.gap:
            out["gap"] = [c.date().isoformat() for c in self.gap]
        return out


def time_split(
    labelled_cutoffs: list[pd.Timestamp], horizon_days: int, params: SplitParams
) -> TimeSplit:
    """Test on the latest labelled cutoff (or the configured one), validate on the cutoffs
    before it whose horizon ends by the test cutoff (fewer than `valid_cutoffs` when no
    training cutoff would be left), train on those whose horizon ends by the first
    validation cutoff; the gap holds every cutoff between them whose horizon ends by the
    test cutoff."""
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
    gap = [c for c in cutoffs if train[-1] < c < valid[0] and c + horizon <= test]
    return TimeSplit(tuple(train), tuple(valid), test, horizon_days, tuple(gap))


def sample_customers(
    rows: pd.DataFrame, target: str, max_rows: int, seed: int
) -> tuple[pd.DataFrame, dict[str, object] | None]:
    """At most about `max_rows` label rows (customer x cutoff): all of them when there are
    no more, else every row of a seeded sample of customers, stratified on the label (the
    same share of customers with a positive label at some cutoff as of the others). Returns
    the rows and what was done (None: no sample), for the training report."""
    if len(rows) <= max_rows:
        return rows, None
    share = max_rows / len(rows)
    positive = (
        (pd.to_numeric(rows[target], errors="coerce").fillna(0) > 0)
        .groupby(rows["customer_id"], sort=True)
        .any()
    )
    rng = np.random.default_rng(seed)
    chosen: list[np.ndarray] = []
    for flag in (True, False):
        ids = positive.index[positive == flag].to_numpy()
        take = round(share * len(ids))
        chosen.append(rng.permutation(ids)[:take])
    keep = rows["customer_id"].isin(np.concatenate(chosen))
    sampled = rows[keep.to_numpy()].reset_index(drop=True)
    return sampled, {
        "rows_before": len(rows),
        "rows": len(sampled),
        "customers_before": len(positive),
        "customers": int(sum(len(c) for c in chosen)),
        "customer_share": round(share, 6),
        "stratified_on": f"{target} > 0 at some cutoff",
        "seed": seed,
    }
