"""What a trained model leaves for serving and monitoring, beside the MLflow pyfunc.

- The serving bundle (`serving/` artifact): each LightGBM booster as LightGBM's own text file
  and one `model.json` with the feature columns, the categories of string columns, the
  calibrator and the rules. The API rebuilds the model from these with LightGBM and numpy
  only, so serving never unpickles training classes.
- The reference sample (`reference/reference.parquet`): test rows with their features,
  prediction and outcome, customer ids hashed; monitoring compares current data with it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.labels import ACCEPTED, CHURN, CLV
from features.names import CUSTOMER_ID, EVENT_TIMESTAMP, OFFER_ID
from features.privacy import CUSTOMER_HASH, hash_ids
from serving.models import BUNDLE_FILE
from training.churn import ChurnModel
from training.clv import ClvModel
from training.config import TrainingParams
from training.nbo import NboModel

REFERENCE_FILE = "reference.parquet"
REFERENCE_ROWS = 20_000
TARGETS = {"churn": CHURN, "clv": CLV, "nbo": ACCEPTED}


def _calibrator(model: ChurnModel) -> dict[str, Any]:
    cal = model.calibrator
    if cal.method == "isotonic":
        return {
            "method": "isotonic",
            "x": cal.model.X_thresholds_.tolist(),
            "y": cal.model.y_thresholds_.tolist(),
        }
    return {
        "method": "platt",
        "coef": float(cal.model.coef_[0][0]),
        "intercept": float(cal.model.intercept_[0]),
    }


def write_bundle(
    kind: str, model: Any, test_predictions: np.ndarray, params: TrainingParams, folder: Path
) -> Path:
    """Write the serving bundle of a trained model to `folder`; returns the folder.

    `test_predictions` are the model's predictions on its test rows: their mean is the
    population prior of a cold-start answer, their quantiles place a CLV in the population."""
    folder.mkdir(parents=True, exist_ok=True)
    boosters: dict[str, Any] = (
        dict(model.boosters) if isinstance(model, ClvModel) else {kind: model.booster}
    )
    for name, booster in boosters.items():
        booster.save_model(str(folder / f"booster_{name}.txt"))
    spec = model.spec
    bundle: dict[str, Any] = {
        "kind": kind,
        "columns": list(spec.columns),
        "categories": {c: list(v) for c, v in spec.categories.items()},
        "boosters": sorted(boosters),
        "prior": float(np.mean(test_predictions)) if len(test_predictions) else 0.0,
    }
    if isinstance(model, ChurnModel):
        bundle |= {
            "calibrator": _calibrator(model),
            "threshold": model.threshold,
            "band_edges": list(model.band_edges),
        }
    elif isinstance(model, ClvModel):
        bundle |= {
            "formulation": model.formulation,
            "quantiles": np.quantile(test_predictions, np.linspace(0, 1, 101)).tolist(),
            "high_value_share": params.clv.high_value_share,
        }
    elif isinstance(model, NboModel):
        bundle |= {
            "top_k": model.top_k,
            "exclude_bought_within_days": model.exclude_bought_within_days,
            "history_candidates": params.nbo.history_candidates,
            "popular_candidates": params.nbo.popular_candidates,
        }
    (folder / BUNDLE_FILE).write_text(json.dumps(bundle, indent=1))
    return folder


def write_reference(
    kind: str,
    model: Any,
    test: pd.DataFrame,
    predictions: np.ndarray,
    folder: Path,
    salt: str = "",
    seed: int = 0,
) -> Path:
    """Write a sample (at most 20,000 rows, drawn with `seed`) of the test rows with their
    features, prediction and outcome to `folder/reference.parquet`; returns the file."""
    columns = list(model.spec.columns)
    out = pd.DataFrame(
        {
            CUSTOMER_HASH: hash_ids(test[CUSTOMER_ID], salt),
            EVENT_TIMESTAMP: pd.to_datetime(test[EVENT_TIMESTAMP], utc=True).to_numpy(),
        }
    )
    if kind == "nbo":
        out[OFFER_ID] = test[OFFER_ID].astype(str).to_numpy()
    for c in columns:
        out[c] = test[c].to_numpy()
    out["prediction"] = np.asarray(predictions, dtype=float)
    out["target"] = test[TARGETS[kind]].to_numpy()
    if len(out) > REFERENCE_ROWS:
        out = out.sample(REFERENCE_ROWS, random_state=seed).sort_index()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / REFERENCE_FILE
    out.reset_index(drop=True).to_parquet(path, index=False)
    return path
