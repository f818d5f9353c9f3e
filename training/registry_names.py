"""Names in the MLflow registry and run artifacts that serving and monitoring read.

Kept free of heavy imports so that readers of the registry need no training code."""

from __future__ import annotations

MODEL_NAMES = {"churn": "crmscore-churn", "clv": "crmscore-clv", "nbo": "crmscore-nbo"}
CHALLENGER, CHAMPION = "challenger", "champion"
# Run artifacts: the serving bundle (LightGBM text files + model.json) and the reference sample.
SERVING_ARTIFACTS = "serving"
BUNDLE_FILE = "model.json"
REFERENCE_ARTIFACT = "reference/reference.parquet"
