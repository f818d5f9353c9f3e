"""Batch scoring: every customer as of a date, with all the answers the API gives.

`score_frame` is a pure function over a partition of customers (features in, scores out);
`score_batch` gathers the features from Feast, applies it and writes parquet + CSV atomically.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from feast import FeatureStore

from features.names import CUSTOMER_ID, EVENT_TIMESTAMP, OFFER_ID
from training.config import TrainingParams
from training.datasets import historical_features
from training.nbo import candidates
from training.pipeline import SERVICES


@dataclass(frozen=True)
class Champions:
    """The three champion models and their registry versions."""

    churn: Any
    clv: Any
    nbo: Any
    versions: dict[str, str]


def score_frame(
    customers: pd.DataFrame,
    churn_features: pd.DataFrame,
    clv_features: pd.DataFrame,
    offers: pd.DataFrame,
    models: Champions,
    high_value_share: float,
) -> pd.DataFrame:
    """Scores of one partition: churn, CLV, top offers, segments and retention priority.

    `customers` holds customer_id, rfm_segment, value_tier, lifecycle_stage; the feature frames are
    aligned with it row by row; `offers` is the ranked top-k (customer_id, rank, offer_id,
    probability, expected_value)."""
    p_churn = models.churn.predict(churn_features)
    clv = models.clv.predict(clv_features)
    out = pd.DataFrame(
        {
            CUSTOMER_ID: customers[CUSTOMER_ID].to_numpy(),
            "churn_probability": np.round(p_churn, 6),
            "churn_band": models.churn.band(p_churn),
            "churn_flag": models.churn.flag(p_churn),
            "clv": np.round(clv, 2),
            "clv_percentile": np.round(
                pd.Series(clv).rank(pct=True, method="average").to_numpy() * 100, 2
            ),
            "rfm_segment": customers["rfm_segment"].to_numpy(),
            "value_tier": customers["value_tier"].to_numpy(),
            "lifecycle_stage": customers["lifecycle_stage"].to_numpy(),
            "retention_priority": np.round(p_churn * clv, 2),
        }
    )
    rank = pd.Series(clv).rank(ascending=False, method="first").to_numpy()
    out["clv_tier"] = np.where(
        rank <= max(1, round(len(out) * high_value_share)),
        "high",
        np.where(rank <= len(out) / 2, "medium", "low"),
    )
    wide = offers.pivot(
        index=CUSTOMER_ID, columns="rank", values=[OFFER_ID, "probability", "expected_value"]
    )
    wide.columns = [_offer_column(str(pair[0]), int(pair[1])) for pair in wide.columns]
    out = out.merge(wide.reset_index(), on=CUSTOMER_ID, how="left")
    for kind, version in models.versions.items():
        out[f"{kind}_model_version"] = version
    return out


def _offer_column(name: str, rank: int) -> str:
    return f"offer_{rank}" if name == OFFER_ID else f"offer_{rank}_{name}"


def write_atomic(frame: pd.DataFrame, path: Path) -> None:
    """Write parquet or CSV to a temporary file and rename it into place: readers see the old
    file or the new one, never half of one; a failed write leaves no temporary file."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        if path.suffix == ".csv":
            frame.to_csv(tmp, index=False)
        else:
            frame.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def score_batch(
    as_of: pd.Timestamp,
    store: FeatureStore,
    snapshot_dir: Path,
    models: Champions,
    out_dir: Path,
    params: TrainingParams,
) -> tuple[Path, Path, int]:
    """Score every customer in the snapshot at `as_of`; returns (parquet, csv, rows)."""
    as_of = (
        pd.Timestamp(as_of).tz_localize("UTC")
        if pd.Timestamp(as_of).tzinfo is None
        else pd.Timestamp(as_of).tz_convert("UTC")
    )
    filters = [(EVENT_TIMESTAMP, "==", as_of)]
    customers = pd.read_parquet(
        snapshot_dir / "customer_features.parquet",
        columns=[CUSTOMER_ID, EVENT_TIMESTAMP, "rfm_segment", "value_tier", "lifecycle_stage"],
        filters=filters,
    )
    if customers.empty:
        raise ValueError(
            f"no feature snapshot at {as_of.date()}: run `crmscore features build "
            f"--cutoffs {as_of.date()}` first"
        )
    customers = customers.sort_values(CUSTOMER_ID, kind="stable").reset_index(drop=True)
    customers[EVENT_TIMESTAMP] = pd.to_datetime(customers[EVENT_TIMESTAMP], utc=True)
    entities = customers[[CUSTOMER_ID, EVENT_TIMESTAMP]]
    churn_features = historical_features(store, SERVICES["churn"], entities)
    clv_features = historical_features(store, SERVICES["clv"], entities)
    affinity = pd.read_parquet(snapshot_dir / "customer_offer_features.parquet", filters=filters)
    offer_stats = pd.read_parquet(snapshot_dir / "offer_features.parquet", filters=filters)
    for frame in (affinity, offer_stats):
        frame[EVENT_TIMESTAMP] = pd.to_datetime(frame[EVENT_TIMESTAMP], utc=True)
    pairs = candidates(affinity, offer_stats, entities, params.nbo)
    pairs = historical_features(store, SERVICES["nbo"], pairs)
    offers = models.nbo.recommend(pairs)
    scores = score_frame(
        customers, churn_features, clv_features, offers, models, params.clv.high_value_share
    )
    scores.insert(1, "as_of", as_of)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"scores_{as_of.date().isoformat()}"
    parquet, csv = out_dir / f"{stem}.parquet", out_dir / f"{stem}.csv"
    write_atomic(scores, parquet)
    write_atomic(scores, csv)
    return parquet, csv, len(scores)


def load_champions(client: Any) -> Champions:
    """The served version of each model (`serving.models.served_version`: the @champion, else
    the @challenger), with its version ("3@challenger")."""
    from serving.models import ModelNotFound
    from serving.registry import served_version
    from training.tracking import load_alias

    loaded, versions = {}, {}
    for kind in ("churn", "clv", "nbo"):
        try:
            version, alias = served_version(kind, client)
        except ModelNotFound as exc:
            raise ValueError(str(exc)) from exc
        loaded[kind] = load_alias(kind, alias, client)
        versions[kind] = f"{version.version}@{alias}"
    return Champions(loaded["churn"], loaded["clv"], loaded["nbo"], versions)
