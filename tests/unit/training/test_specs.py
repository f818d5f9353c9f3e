"""Training reads every model kind from the model spec (features/model_spec.py)."""

from __future__ import annotations

import inspect
from functools import partial

import numpy as np
import pandas as pd
import pytest

from features.model_spec import MODEL_SPECS, model_spec
from features.retrieval import service_features
from serving.models import recommend
from tests.unit.training.data import NBO_FEATURES, pairs_frame
from training.config import GateParams, NboParams
from training.evaluate import grade, paired_differences, score_with_intervals
from training.metrics import ranking_metrics
from training.pipeline import runner
from training.tracking import RunRecord, gate_passes


@pytest.mark.parametrize("kind", list(MODEL_SPECS))
def test_every_spec_names_a_trainer_that_resolves(kind: str) -> None:
    train = runner(kind)
    assert callable(train) and train.__name__ == model_spec(kind).trainer.split(":")[1]
    assert list(inspect.signature(train).parameters) == [
        "store", "paths", "labels", "params", "out_dir",
    ]  # fmt: skip


@pytest.mark.parametrize("kind", list(MODEL_SPECS))
def test_every_spec_has_its_gate_margin_and_feature_service(kind: str) -> None:
    spec = model_spec(kind)
    assert isinstance(getattr(GateParams(), spec.gate_margin_setting), float)
    assert service_features(spec.feature_service)


def test_nbo_trains_grades_and_gates_with_top_3() -> None:
    """The primary metric follows `training.nbo.top_k` (hit@3 here, not a fixed hit@5)."""
    from training.nbo import train_nbo

    spec = model_spec("nbo")
    train, valid, test = pairs_frame(300, 20, 1), pairs_frame(150, 20, 2), pairs_frame(80, 20, 3)
    assert service_features(spec.feature_service) == NBO_FEATURES
    model, _ = train_nbo(
        train, train["accepted"].to_numpy(), valid, valid["accepted"].to_numpy(),
        NBO_FEATURES, NboParams(top_k=3), 4,
    )  # fmt: skip
    key = spec.primary_key(3)
    assert key == "hit@3" and model.meta["top_k"] == 3
    top = recommend(model, test)
    assert (top.groupby("customer_id").size() == 3).all()
    ranked = {str(c): list(g["offer_id"]) for c, g in top.groupby("customer_id")}
    bought = test[test["accepted"] == 1]
    actual = {str(c): set(g["offer_id"]) for c, g in bought.groupby("customer_id")}
    found = ranking_metrics(ranked, actual, 3, 20)
    popular = {c: ["o00", "o01", "o02"] for c in actual}
    customers = sorted(actual)

    def on(recs: dict[str, list[str]], idx: np.ndarray) -> dict[str, float]:
        chosen = {f"{j}:{customers[i]}": i for j, i in enumerate(idx)}
        return ranking_metrics(
            {k: recs.get(customers[i], []) for k, i in chosen.items()},
            {k: actual[customers[i]] for k, i in chosen.items()},
            3,
            20,
        )

    scored = [
        score_with_intervals(name, partial(on, recs), len(customers), 50, 0, [key])
        for name, recs in (("lightgbm", ranked), ("popularity", popular))
    ]
    paired = paired_differences(scored[0], scored[1:], spec.primary, key, 50, 0)
    letter, best, text = grade(scored[0], paired, key)
    assert letter in "ABC" and best == "popularity" and text.startswith("hit@3")
    assert scored[0].metrics[key] == pytest.approx(found[key])
    record = RunRecord(key, found[key], scored[1].metrics[key], None)
    passed, reason = gate_passes("nbo", record, GateParams())
    assert passed == (found[key] >= scored[1].metrics[key]) and "hit@3" in reason
    assert np.isfinite(found[key])


def test_too_little_data_is_refused_with_the_minimum_named() -> None:
    from training.datasets import TimeSplit
    from training.pipeline import check_enough

    cutoffs = [pd.Timestamp(f"2021-0{m}-01", tz="UTC") for m in (1, 4, 7)]
    split = TimeSplit((cutoffs[0],), (cutoffs[1],), cutoffs[2], 30)
    rows = pd.DataFrame(
        {
            "customer_id": [f"c{i}" for i in range(20)] * 3,
            "event_timestamp": np.repeat(cutoffs, 20),
        }
    )
    with pytest.raises(ValueError, match=r"20 in train, 20 in valid, 20 in test.*at least 100"):
        check_enough(model_spec("churn"), rows, split, 100)
    check_enough(model_spec("churn"), rows, split, 20)  # enough: no error
