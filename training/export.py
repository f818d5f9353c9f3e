"""The reference sample a training run leaves for monitoring (`REFERENCE_ARTIFACT`): test rows
with their features, the model's prediction and the outcome, customer ids hashed; drift
reports compare current data with it. (The model itself is the registered bundle.)"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from features.model_spec import REFERENCE_ARTIFACT, model_spec
from features.names import CUSTOMER_ID, EVENT_TIMESTAMP, OFFER_ID
from features.privacy import CUSTOMER_HASH, hash_ids
from serving.models import BundleModel

# The run artifact folder and file name of the reference sample.
REFERENCE_DIR = PurePosixPath(REFERENCE_ARTIFACT).parent.as_posix()
REFERENCE_FILE = PurePosixPath(REFERENCE_ARTIFACT).name
REFERENCE_ROWS = 20_000


def write_reference(
    model: BundleModel,
    test: pd.DataFrame,
    predictions: np.ndarray,
    folder: Path,
    salt: str,
    seed: int = 0,
) -> Path:
    """Write a sample (at most 20,000 rows, drawn with `seed`) of the test rows with the
    model's features, its prediction and the outcome to `folder/reference.parquet`; returns
    the file."""
    out = pd.DataFrame(
        {
            CUSTOMER_HASH: hash_ids(test[CUSTOMER_ID], salt),
            EVENT_TIMESTAMP: pd.to_datetime(test[EVENT_TIMESTAMP], utc=True).to_numpy(),
        }
    )
    if model.kind == "nbo":
        out[OFFER_ID] = test[OFFER_ID].astype(str).to_numpy()
    for c in model.columns:
        out[c] = test[c].to_numpy()
    out["prediction"] = np.asarray(predictions, dtype=float)
    out["target"] = test[model_spec(model.kind).target].to_numpy()
    if len(out) > REFERENCE_ROWS:
        out = out.sample(REFERENCE_ROWS, random_state=seed).sort_index()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / REFERENCE_FILE
    out.reset_index(drop=True).to_parquet(path, index=False)
    return path
