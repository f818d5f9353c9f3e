"""The models as serving sees them: LightGBM boosters and a JSON bundle per model.

Rebuilt from the `serving/` artifact that training logs with every registered version
(training/export.py), with LightGBM and numpy only: no training class is unpickled, and
predictions equal the training objects' (tested)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np

from features.model_spec import model_spec
from features.names import ALL_FEATURES, reason_text

# The bundle's description of the model beside its booster files.
BUNDLE_FILE = "model.json"

Row = dict[str, Any]


class ModelNotFound(LookupError):
    """No usable registered version of a model."""


@dataclass
class BundleModel:
    """One model: its boosters, its input columns and the rest of its bundle."""

    kind: str
    columns: list[str]
    codes: dict[str, dict[str, int]]  # category -> code, per string column
    boosters: dict[str, lgb.Booster]
    meta: dict[str, Any]
    version: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_folder(cls, folder: Path, version: str = "") -> BundleModel:
        """Read `model.json` and the booster files of a bundle."""
        meta = json.loads((folder / BUNDLE_FILE).read_text())
        boosters = {
            name: lgb.Booster(model_file=str(folder / f"booster_{name}.txt"))
            for name in meta["boosters"]
        }
        codes = {c: {v: i for i, v in enumerate(cats)} for c, cats in meta["categories"].items()}
        return cls(meta["kind"], list(meta["columns"]), codes, boosters, meta, version)

    def matrix(self, rows: list[Row], only: list[int] | None = None) -> np.ndarray:
        """Model input from feature dicts: numbers as float64, categories as their training
        codes, anything missing or unknown as NaN (what LightGBM saw for missing). With
        `only`, just those column positions are filled (the rest stay NaN)."""
        x = np.full((len(rows), len(self.columns)), np.nan)
        for j in range(len(self.columns)) if only is None else only:
            name = self.columns[j]
            values = [row.get(name) for row in rows]
            codes = self.codes.get(name)
            if codes is not None:
                x[:, j] = [codes.get(str(v), np.nan) if v is not None else np.nan for v in values]
            else:
                x[:, j] = [_number(v) for v in values]
        return x

    def raw(self, x: np.ndarray, booster: str | None = None) -> np.ndarray:
        """A booster's prediction (the model's only booster by default)."""
        b = self.boosters[booster or self.kind]
        return np.asarray(b.predict(x, num_threads=1), dtype=float)

    def reasons(
        self, x: np.ndarray, rows: list[Row], booster: str, target: str, top: int
    ) -> list[dict[str, list[str]]]:
        """Each row's top drivers up and down of `target`, in words, from LightGBM
        contributions."""
        contrib = np.asarray(
            self.boosters[booster].predict(x, pred_contrib=True, num_threads=1), dtype=float
        )[:, :-1]
        out = []
        for i, row in enumerate(rows):
            order = np.argsort(contrib[i], kind="stable")
            up = [j for j in order[::-1][:top] if contrib[i, j] > 0]
            down = [j for j in order[:top] if contrib[i, j] < 0]
            out.append(
                {
                    direction: [
                        reason_text(
                            self.columns[j], row.get(self.columns[j]), contrib[i, j], target
                        )
                        for j in picked
                    ]
                    for direction, picked in (("up", up), ("down", down))
                }
            )
        return out


def _number(value: Any) -> float:
    if value is None or isinstance(value, str):
        return np.nan
    return float(value)


def churn_probability(model: BundleModel, x: np.ndarray) -> np.ndarray:
    """Calibrated P(churn)."""
    raw = model.raw(x)
    cal = model.meta["calibrator"]
    if cal["method"] == "isotonic":
        return np.interp(raw, cal["x"], cal["y"])
    p = np.clip(raw, 1e-6, 1 - 1e-6)
    z = cal["coef"] * np.log(p / (1 - p)) + cal["intercept"]
    return np.asarray(1 / (1 + np.exp(-z)), dtype=float)


def churn_band(model: BundleModel, p: float) -> str:
    """low / medium / high risk."""
    low, high = model.meta["band_edges"]
    return "high" if p >= high else "medium" if p >= low else "low"


def clv_value(model: BundleModel, x: np.ndarray) -> np.ndarray:
    """Expected net revenue in the horizon (never negative)."""
    if model.meta["formulation"] == "two_part":
        return np.clip(model.raw(x, "buy") * np.expm1(model.raw(x, "spend")), 0, None)
    return np.clip(model.raw(x, "value"), 0, None)


def clv_reason_booster(model: BundleModel) -> str:
    """The booster whose contributions explain a CLV (the spend part of a two-part model)."""
    return "spend" if model.meta["formulation"] == "two_part" else "value"


def clv_percentile(model: BundleModel, value: float) -> float:
    """Where a CLV falls among the test population's predicted CLVs at training (0-100)."""
    q = np.asarray(model.meta["quantiles"])
    below = np.searchsorted(q, value, side="left")
    at_or_below = np.searchsorted(q, value, side="right")
    return float(np.clip((below + at_or_below) / 2 / (len(q) - 1) * 100, 0, 100))


def clv_tier(model: BundleModel, percentile: float) -> str:
    """high (top `high_value_share`), medium (top half) or low."""
    high = 100 * (1 - model.meta["high_value_share"])
    return "high" if percentile >= high else "medium" if percentile >= 50 else "low"


def _ensure_features_known(model: BundleModel) -> None:
    unknown = [c for c in model.columns if c not in ALL_FEATURES]
    if unknown:
        raise ModelNotFound(
            f"{model_spec(model.kind).registry_name} v{model.version} reads features "
            f"{unknown} this version of crmscore does not define: retrain it"
        )
