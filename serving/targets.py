"""Campaign target lists: the customers that maximise an objective within a budget, with a
random control group held out so the campaign's effect can be measured."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from features.catalog import Workspace
from features.names import CUSTOMER_ID
from features.publish import write_atomic, write_json_atomic
from serving.contract import data_dictionary, rounded

Objective = Literal["retention", "value", "offer"]
OBJECTIVE_COLUMNS: dict[str, str] = {
    "retention": "retention_priority",  # P(churn) x CLV: value at risk
    "value": "clv",
    "offer": "offer_1_expected_value",
}


def target_list(
    scores: pd.DataFrame, objective: Objective, budget: int, control: float, seed: int
) -> pd.DataFrame:
    """The `budget` customers with the highest objective (ties: customer id), each flagged
    `control` (held out, not contacted) with probability `control`, exactly round(budget *
    control) of them, drawn with `seed`."""
    if not 0 <= control < 1:
        raise ValueError(f"--control {control}: expected a share in [0, 1)")
    if budget <= 0:
        raise ValueError(f"--budget {budget}: expected a positive number of customers")
    column = OBJECTIVE_COLUMNS[objective]
    if column not in scores:
        raise ValueError(f"objective '{objective}' needs the column '{column}' in the scores")
    ranked = scores.assign(_score=scores[column].fillna(-np.inf)).sort_values(
        ["_score", CUSTOMER_ID], ascending=[False, True], kind="stable"
    )
    chosen = ranked.head(budget).drop(columns="_score").reset_index(drop=True)
    held_out = np.zeros(len(chosen), dtype=bool)
    rng = np.random.default_rng(seed)
    held_out[rng.choice(len(chosen), size=round(len(chosen) * control), replace=False)] = True
    chosen.insert(0, "priority_rank", np.arange(1, len(chosen) + 1))
    chosen.insert(1, "group", np.where(held_out, "control", "treatment"))
    chosen.insert(2, "objective", objective)
    chosen.insert(3, "objective_value", chosen[column])
    return chosen


def budget_warnings(budget: int, base: int, date: str) -> list[str]:
    """What to know about a budget: more than the customers scored (the list holds them
    all, and the campaign is smaller than planned)."""
    if budget <= base:
        return []
    return [
        f"--budget {budget} is more than the {base} customers scored on {date}: "
        f"the list holds all {base}"
    ]


def publish_target_list(
    listed: pd.DataFrame, path: Path, scores_file: Path, about: dict[str, Any], force: bool
) -> None:
    """Write a target list (numbers rounded like the scores) and its data dictionary beside
    it, each atomically. The dictionary takes the horizons, currency and model versions from
    the scores' own dictionary, and `about` (objective, budget, ...). An existing list is
    kept, with its control group (FileExistsError), unless `force`: the list is linked
    into place, which fails when the name exists."""
    source = Workspace.dictionary_file(scores_file)
    scores_about = json.loads(source.read_text()) if source.exists() else {}
    versions = scores_about.get("model_versions") or {
        c.removesuffix("_model_version"): str(listed[c].iloc[0])
        for c in listed.columns
        if c.endswith("_model_version") and len(listed)
    }
    dictionary = data_dictionary(
        list(listed.columns),
        scores_about.get("horizons_days", {}),
        versions,
        scores_about.get("currency"),
        file=path.name,
        scores=scores_file.name,
        as_of=Workspace.scores_date(scores_file),
        rows=len(listed),
        **about,
    )
    try:
        write_atomic(rounded(listed), path, replace=force)
    except FileExistsError:
        raise FileExistsError(
            f"{path}: a target list with this objective, budget, control share, seed and date "
            "exists (its control group measures the campaign): kept. Choose another "
            "--budget, --control or --seed, or replace it with --force"
        ) from None
    write_json_atomic(dictionary, Workspace.dictionary_file(path))
