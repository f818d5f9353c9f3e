"""Campaign target lists: the customers that maximise an objective within a budget, with a
random control group held out so the campaign's effect can be measured."""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

from features.names import CUSTOMER_ID

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
