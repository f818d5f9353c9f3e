"""Is the data enough to train? The readiness report, from the canonical tables and the
feature snapshots, before any model is fitted.

It states what the data holds (customers, history length, purchases per customer, the share
of rows rejected and of values missing) and, for each model, the horizon it can be trained
at, how many labelled customers each part of the time split has, and, when that is below
the minimums (`training.min_customers`; both outcomes present for churn), why
the model cannot be trained. `crmscore train` refuses what the report refuses."""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from features.catalog import Workspace
from features.config import LabelParams
from features.contract import TABLES
from features.labels import trainable_horizon
from features.model_spec import MODEL_KINDS, model_spec
from features.names import CUSTOMER_ID, EVENT_TIMESTAMP
from features.partitions import part_files
from features.snapshots import offers_skipped, snapshots_meta, trained_horizon
from training.config import TrainingParams
from training.datasets import time_split

PARTS = ("train", "valid", "test")
# Models whose label rows are yes/no: each part needs both outcomes (an AUC needs them).
# The offer labels list accepted pairs only (every other candidate pair is a negative).
BINARY = {"churn"}


def data_summary(paths: Workspace) -> dict[str, Any]:
    """Customers, history, purchases per customer and missing shares of the ingested data."""
    file = paths.pinned(paths.data_versions).table("transactions")
    if not file.exists():
        raise FileNotFoundError(f"{file}: not found; run `crmscore ingest`")
    # One customer partition at a time: orders per customer, bounds and missing counts.
    counts: list[pd.Series] = []
    stamps: list[pd.Timestamp] = []
    missing: Counter[str] = Counter()
    rows = 0
    for part in part_files(file):
        tx = pd.read_parquet(part)
        if tx.empty:
            continue
        rows += len(tx)
        counts.append(tx.groupby(CUSTOMER_ID, observed=True)["order_id"].nunique())
        optional = [c for c in TABLES["transactions"].optional if c in tx]
        missing.update({c: int(tx[c].isna().sum()) for c in optional})
        stamps += [tx["timestamp"].min(), tx["timestamp"].max()]
    if not rows:
        raise ValueError(f"{paths.data_dir}: no accepted transactions; check the rejects file")
    orders = pd.concat(counts)
    first, last = min(stamps), max(stamps)
    report = _ingest_report(paths)
    input_rows = int(report.get("input_rows") or rows)
    return {
        "customers": len(orders),
        "transactions": rows,
        "first": first.date().isoformat(),
        "last": last.date().isoformat(),
        "history_days": int((last - first).days) + 1,
        "purchases_per_customer": {
            "mean": round(float(orders.mean()), 2),
            "median": float(orders.median()),
            "one_purchase_share": round(float((orders == 1).mean()), 4),
        },
        "rejected_share": round(1 - rows / input_rows, 4) if input_rows else 0.0,
        "missing_share": {c: round(n / rows, 4) for c, n in missing.items()},
        **({"derived": report["derived"]} if report.get("derived") else {}),
    }


def _ingest_report(paths: Workspace) -> dict[str, Any]:
    file = paths.pinned(paths.data_versions).ingest_report
    if not file.exists():
        return {}
    tables: dict[str, Any] = json.loads(file.read_text()).get("tables", {})
    return dict(tables.get("transactions", {}))


def part_counts(rows: pd.DataFrame, target: str, part: pd.Series) -> dict[str, dict[str, int]]:
    """Per part of the split: distinct labelled customers and, for a yes/no target, the
    positive and negative rows."""
    out = {}
    for name in PARTS:
        chosen = rows.loc[part == name]
        positives = int((chosen[target] > 0).sum())
        out[name] = {
            "customers": int(chosen[CUSTOMER_ID].nunique()),
            "positive": positives,
            "negative": len(chosen) - positives,
        }
    return out


def model_readiness(
    kind: str, paths: Workspace, labels: LabelParams, params: TrainingParams
) -> dict[str, Any]:
    """One model: the horizon asked and trainable, the labelled customers per part, and
    `ready` with the reason when it is not."""
    spec = model_spec(kind)
    asked = int(getattr(labels, spec.horizon_setting))
    meta = snapshots_meta(paths)
    cutoffs = [pd.Timestamp(c) for c in meta["cutoffs"]]
    fits = trainable_horizon(asked, cutoffs, pd.Timestamp(meta["observed_until"]))
    horizon = trained_horizon(paths, spec.horizon_setting, asked)
    out: dict[str, Any] = {"model": kind, "horizon_days": asked, "trainable_horizon_days": fits}
    skipped = offers_skipped(paths) if kind == "nbo" else None
    if skipped:
        return {**out, "ready": False, "reason": skipped}
    pinned = paths.pinned(paths.snapshot_versions)
    rows = pd.read_parquet(
        pinned.snapshot(spec.label_output), columns=[CUSTOMER_ID, EVENT_TIMESTAMP, spec.target]
    )
    rows[EVENT_TIMESTAMP] = pd.to_datetime(rows[EVENT_TIMESTAMP], utc=True)
    split_params = params.split
    if kind == "nbo":
        split_params = split_params.model_copy(
            update={"max_train_cutoffs": params.nbo.max_train_cutoffs}
        )
    try:
        split = time_split(sorted(rows[EVENT_TIMESTAMP].unique()), horizon, split_params)
    except ValueError as exc:
        history = _history_days(meta)
        return {
            **out,
            "ready": False,
            "reason": f"{exc} ({history} days of history; training, validation and test "
            f"need three {horizon}-day label windows one after the other)",
        }
    counts = part_counts(rows, spec.target, split.part(rows[EVENT_TIMESTAMP]))
    out.update(trained_at_days=horizon, split=split.as_dict(), parts=counts)
    reason = _too_small(kind, counts, params.min_customers)
    return {**out, "ready": reason is None, **({"reason": reason} if reason else {})}


def _history_days(meta: dict[str, Any]) -> int:
    return (pd.Timestamp(meta["observed_until"]) - pd.Timestamp(meta["observed_from"])).days


def _too_small(kind: str, counts: dict[str, dict[str, int]], minimum: int) -> str | None:
    short = {p: c["customers"] for p, c in counts.items() if c["customers"] < minimum}
    if short:
        found = ", ".join(f"{counts[p]['customers']} in {p}" for p in PARTS)
        return (
            f"too few customers with a label: {found}; each part needs at least {minimum} "
            "(training.min_customers)"
        )
    if kind in BINARY:
        one_sided = [p for p, c in counts.items() if not (c["positive"] and c["negative"])]
        if one_sided:
            return f"only one outcome in {', '.join(one_sided)}: nothing to learn or to test"
    return None


def readiness(
    paths: Workspace,
    labels: LabelParams,
    params: TrainingParams,
    kinds: Sequence[str] = MODEL_KINDS,
) -> dict[str, Any]:
    """The readiness report: the data summary and one entry per model kind."""
    return {
        "data": data_summary(paths),
        "minimums": {"customers_per_part": params.min_customers},
        "models": [model_readiness(k, paths, labels, params) for k in kinds],
    }


def write_readiness(report: dict[str, Any], path: Path) -> Path:
    """The report as JSON at `path`, replaced whole (never half written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(report, indent=2))
    os.replace(tmp, path)
    return path


def readiness_lines(report: dict[str, Any]) -> list[str]:
    """The report in a few lines of words, for the terminal."""
    d = report["data"]
    per = d["purchases_per_customer"]
    missing = ", ".join(f"{c} {s:.0%}" for c, s in d["missing_share"].items() if s) or "none"
    lines = [
        f"data: {d['customers']} customers, {d['history_days']} days of history "
        f"({d['first']} to {d['last']}), {per['mean']} purchases per customer "
        f"(median {per['median']:g}, {per['one_purchase_share']:.0%} bought once); "
        f"{d['rejected_share']:.1%} of rows rejected; missing: {missing}"
    ]
    for derived, how in d.get("derived", {}).items():
        lines.append(f"data: {derived} derived: {how}")
    for m in report["models"]:
        horizon = f"{m['horizon_days']}-day horizon"
        trained = m.get("trained_at_days")
        if trained is not None and trained != m["horizon_days"]:
            horizon += f", trained at {trained} days"
        if m["ready"]:
            sizes = "/".join(str(m["parts"][p]["customers"]) for p in PARTS)
            lines.append(f"{m['model']} ({horizon}): ready, customers train/valid/test {sizes}")
        else:
            lines.append(f"{m['model']} ({horizon}): cannot be trained: {m['reason']}")
    return lines
