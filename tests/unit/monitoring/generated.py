"""Generated customer features with known properties, for the monitoring unit tests.

Four numerical features (declared in features.names, so their kind is fixed), two
categorical ones and a prediction that follows recency: draws with different seeds come
from the same distribution, so any difference between them is sampling noise."""

from __future__ import annotations

import numpy as np
import pandas as pd

NUMERICAL = ["recency_days", "frequency_365d", "monetary_365d", "gap_mean_days"]
CATEGORICAL = ["country", "value_tier"]
FEATURES = NUMERICAL + CATEGORICAL
COUNTRIES = ["United Kingdom", "France", "Germany", "Netherlands"]
TIERS = ["low", "mid", "high"]
RECENCY_MEAN, RECENCY_SD = 60.0, 20.0
ROWS = 5000


def prediction(recency: pd.Series | np.ndarray) -> np.ndarray:
    """A stand-in churn score: rises with recency."""
    return np.asarray(1 / (1 + np.exp(-(np.asarray(recency) - RECENCY_MEAN) / RECENCY_SD)))


def customers(seed: int, rows: int = ROWS) -> pd.DataFrame:
    """`rows` customers drawn from one fixed distribution with `seed`."""
    rng = np.random.default_rng(seed)
    recency = rng.normal(RECENCY_MEAN, RECENCY_SD, rows)
    return pd.DataFrame(
        {
            "row": np.arange(rows),
            "recency_days": recency,
            "frequency_365d": rng.poisson(5, rows).astype(float),
            "monetary_365d": rng.gamma(2.0, 100.0, rows),
            "gap_mean_days": rng.normal(40.0, 10.0, rows),
            "country": rng.choice(COUNTRIES, rows, p=[0.6, 0.2, 0.1, 0.1]),
            "value_tier": rng.choice(TIERS, rows, p=[0.5, 0.3, 0.2]),
            "prediction": prediction(recency),
        }
    )


def reference_and_current(seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two independent draws of the same distribution (the current one a copy to edit)."""
    return customers(seed), customers(seed + 1000).copy()
