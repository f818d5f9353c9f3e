"""The model runtime: every prediction crmscore makes goes through this module.

A registered model version is a *bundle*: each LightGBM booster as LightGBM's own text file
and one `model.json` with the input columns, the categories of string columns, the
calibrator, the rules and the test population's summary. Training builds a `BundleModel`
and evaluates through it; MLflow stores the bundle as the registered model (`_load_pyfunc`
below is its loader); the API, batch scoring and training's champion comparison load it
with `serving.registry.load_registered`. Only numpy, pandas and LightGBM are needed: no training
class is ever unpickled.

The math exists once, here:
- model input, from row dicts (`BundleModel.matrix`, the API) or a DataFrame
  (`BundleModel.frame_matrix`, batch and training), encoded identically: numbers as float64,
  categories as their training codes, missing or unknown values as NaN;
- churn: calibrated probability (isotonic or Platt), risk band and flag;
- CLV: value (two_part, tweedie or l1), percentile and tier. The percentile places a value
  among the predicted CLVs of the model's test population at training (the bundle keeps their
  101 quantiles), so the API and batch scoring give every customer the same percentile and
  tier whoever else is scored;
- next-best-offer: candidate pairs, and the ranking with the rules (`rank_offers`);
- reason codes from LightGBM contributions (`reason_codes`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import subprocess
import sys
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from features.model_spec import model_spec
from features.names import (
    ALL_FEATURES,
    BTYD_CLV,
    BTYD_HORIZON_RATIO,
    CUSTOMER_ID,
    EVENT_TIMESTAMP,
    OFFER_ID,
    reason_text,
)

# The bundle's description of the model beside its booster files.
BUNDLE_FILE = "model.json"
# The SHA-256 of every other file of the bundle, written when it is saved.
CHECKSUMS_FILE = "checksums.json"
# The pair feature the "exclude recently bought" rule reads, and the offer's value.
RECENCY = "affinity_recency_days"
OFFER_VALUE = "offer_value"
# Quantiles of the test population's predicted CLV kept in a CLV bundle (0, 1, ..., 100 %).
CLV_QUANTILES = 101

Row = dict[str, Any]


class ModelNotFound(LookupError):
    """No usable registered version of a model."""


class BundleError(ValueError):
    """A bundle's files are damaged, edited or inconsistent (the message says which);
    nothing is loaded from it."""


@dataclass(frozen=True)
class Reason:
    """One driver: the feature, its value, its contribution (in the model's raw score) and
    a sentence for people."""

    feature: str
    value: object
    contribution: float
    text: str


@dataclass
class BundleModel:
    """One model: its boosters, its input columns and the rest of its bundle (`meta`, the
    content of model.json). `threads` is LightGBM's threads per predict call: 1 where one
    row is scored at a time (the API: a thread pool costs milliseconds per call,
    BENCHMARKS.md), 0 (OpenMP's default) for training and batch scoring."""

    kind: str
    columns: list[str]
    codes: dict[str, dict[str, int]]  # category -> code, per string column
    boosters: dict[str, lgb.Booster]
    meta: dict[str, Any]
    version: str = ""
    info: dict[str, Any] = field(default_factory=dict)
    threads: int = 1

    @classmethod
    def create(
        cls,
        kind: str,
        columns: Sequence[str],
        categories: Mapping[str, Sequence[str]],
        boosters: Mapping[str, lgb.Booster],
        **meta: Any,
    ) -> BundleModel:
        """A new bundle (at training): `meta` holds the model's own settings."""
        full = {
            "kind": kind,
            "columns": list(columns),
            "categories": {c: list(v) for c, v in categories.items()},
            "boosters": sorted(boosters),
            **meta,
        }
        return cls(kind, list(columns), _codes(full["categories"]), dict(boosters), full, threads=0)

    @classmethod
    def from_folder(cls, folder: Path, version: str = "") -> BundleModel:
        """Read `model.json` and the booster files of a bundle, checked first: each file
        against its checksum (`checksums.json`), so a damaged or edited file is refused
        before LightGBM parses it (a bad booster file aborts the process, it does not
        raise); then the columns against the boosters' feature names and the settings
        against their ranges. A bundle saved before checksums existed has each booster
        parsed in a child process first. BundleError says what is wrong."""
        files, checked = _verified_files(folder)
        try:
            meta = json.loads(files[BUNDLE_FILE])
            names = [str(name) for name in meta["boosters"]]
            boosters = {name: _parse_booster(files, checked, folder, name) for name in names}
            model = cls(
                meta["kind"],
                list(meta["columns"]),
                _codes(meta["categories"]),
                boosters,
                meta,
                version,
            )
        except BundleError:
            raise
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise BundleError(f"{BUNDLE_FILE} is not a bundle description ({exc!r})") from None
        check_bundle(model)
        return model

    def save(self, folder: Path) -> Path:
        """Write the bundle (booster text files, model.json and the checksums of both, in
        checksums.json) to `folder`; returns it."""
        folder.mkdir(parents=True, exist_ok=True)
        for name, booster in self.boosters.items():
            booster.save_model(str(folder / booster_file(name)))
        meta = {**self.meta, "boosters": sorted(self.boosters)}
        (folder / BUNDLE_FILE).write_text(json.dumps(meta, indent=1))
        written = [BUNDLE_FILE, *(booster_file(name) for name in sorted(self.boosters))]
        sums = {name: sha256((folder / name).read_bytes()) for name in written}
        (folder / CHECKSUMS_FILE).write_text(json.dumps(sums, indent=1))
        return folder

    @property
    def categories(self) -> dict[str, list[str]]:
        """Categories of each string column, in code order."""
        return dict(self.meta["categories"])

    def matrix(
        self, rows: Sequence[Mapping[str, Any]], only: list[int] | None = None
    ) -> np.ndarray:
        """Model input from feature dicts: numbers as float64, categories as their training
        codes, anything missing or unknown as NaN (what LightGBM saw for missing). With
        `only`, just those column positions are filled (the rest stay NaN)."""
        x = np.full((len(rows), len(self.columns)), np.nan)
        for j in range(len(self.columns)) if only is None else only:
            name = self.columns[j]
            values = [row.get(name) for row in rows]
            codes = self.codes.get(name)
            if codes is not None:
                x[:, j] = [_code(codes, v) for v in values]
            else:
                x[:, j] = [as_number(v) for v in values]
        return x

    def frame_matrix(self, frame: pd.DataFrame) -> np.ndarray:
        """Model input from a DataFrame, vectorised, encoded exactly like `matrix`; a column
        the frame lacks is missing."""
        return encode(frame, self.columns, self.meta["categories"])

    def raw(self, x: np.ndarray, booster: str | None = None) -> np.ndarray:
        """A booster's prediction (the model's only booster by default)."""
        b = self.boosters[booster or self.kind]
        return np.asarray(b.predict(x, num_threads=self.threads), dtype=float)

    def contributions(self, x: np.ndarray, booster: str) -> np.ndarray:
        """Per-row, per-column contributions to a booster's raw score (bias left out)."""
        out = self.boosters[booster].predict(x, pred_contrib=True, num_threads=self.threads)
        return np.asarray(out, dtype=float)[:, :-1]

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """The model's prediction for each row of `frame`: P(churn), the CLV, or P(accept)
        per (customer, offer) pair. This is what the registered MLflow model predicts."""
        return predict_matrix(self, self.frame_matrix(frame))


def _codes(categories: Mapping[str, Sequence[str]]) -> dict[str, dict[str, int]]:
    return {c: {v: i for i, v in enumerate(cats)} for c, cats in categories.items()}


def _code(codes: dict[str, int], value: Any) -> float:
    if value is None:
        return np.nan
    return codes.get(str(value), np.nan)


def as_number(value: Any) -> float:
    """A feature value as a number: None, missing and text are NaN."""
    if value is None or value is pd.NA or isinstance(value, str):
        return np.nan
    return float(value)


def encode(
    frame: pd.DataFrame, columns: Sequence[str], categories: Mapping[str, Sequence[str]]
) -> np.ndarray:
    """Model input from a DataFrame (see `BundleModel.matrix` for the encoding)."""
    x = np.full((len(frame), len(columns)), np.nan)
    for j, name in enumerate(columns):
        if name not in frame:
            continue
        column = frame[name]
        if name in categories:
            # Like `str(value)` of a row dict; missing values stay missing.
            codes = pd.Categorical(column.astype("string"), categories=list(categories[name]))
            x[:, j] = np.where(codes.codes >= 0, codes.codes, np.nan)
        else:
            x[:, j] = numbers(column)
    return x


def numbers(column: pd.Series) -> np.ndarray:
    """A column as float64: numbers as they are, anything else (text, missing) as NaN."""
    if pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
        return np.asarray(column.to_numpy(dtype="float64", na_value=np.nan), dtype=float)
    return np.fromiter((as_number(v) for v in column), dtype=float, count=len(column))


def predict_matrix(model: BundleModel, x: np.ndarray) -> np.ndarray:
    """The model's prediction from its input matrix (see `BundleModel.predict`)."""
    if model.kind == "churn":
        return churn_probability(model, x)
    if model.kind == "clv":
        return clv_value(model, x)
    return offer_probability(model, x)


def set_population(model: BundleModel, predictions: np.ndarray) -> None:
    """Record the model's predictions on its test rows: their mean is the prior of a
    cold-start answer, and a CLV model keeps their quantiles to place a CLV among them."""
    p = np.asarray(predictions, dtype=float)
    model.meta["prior"] = float(np.mean(p)) if len(p) else 0.0
    if model.kind == "clv":
        grid = np.linspace(0, 1, CLV_QUANTILES)
        model.meta["quantiles"] = (np.quantile(p, grid) if len(p) else np.zeros_like(grid)).tolist()


# Churn


def calibrate(calibrator: Mapping[str, Any], raw: np.ndarray) -> np.ndarray:
    """Probabilities from raw scores with a fitted calibrator: isotonic (thresholds, clipped
    at the ends) or Platt (logistic on the logit of the raw score)."""
    if calibrator["method"] == "isotonic":
        return np.asarray(np.interp(raw, calibrator["x"], calibrator["y"]), dtype=float)
    if calibrator["method"] != "platt":
        raise ValueError(f"calibration '{calibrator['method']}': expected isotonic or platt")
    z = calibrator["coef"] * logit(raw) + calibrator["intercept"]
    return np.asarray(1 / (1 + np.exp(-z)), dtype=float)


def logit(p: np.ndarray) -> np.ndarray:
    """log(p / (1 - p)), with p clipped to [1e-6, 1 - 1e-6]."""
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.asarray(np.log(p / (1 - p)), dtype=float)


def churn_probability(model: BundleModel, x: np.ndarray) -> np.ndarray:
    """Calibrated P(churn): the bundle's scorer, then its calibrator."""
    return calibrate(model.meta["calibrator"], score(model, x))


# Churn risk bands, lowest first.
CHURN_BANDS = ("low", "medium", "high")


def churn_band(model: BundleModel, p: np.ndarray) -> np.ndarray:
    """low / medium / high risk at the bundle's band edges."""
    low, high = model.meta["band_edges"]
    lowest, middle, highest = CHURN_BANDS
    return np.where(p >= high, highest, np.where(p >= low, middle, lowest))


def churn_flag(model: BundleModel, p: np.ndarray) -> np.ndarray:
    """True where P(churn) reaches the decision threshold."""
    return np.asarray(p >= model.meta["threshold"], dtype=bool)


# CLV


def clv_value(model: BundleModel, x: np.ndarray) -> np.ndarray:
    """Expected net revenue in the horizon (never negative): the bundle's scorer times its
    `value_scale` (the correction that brought the total predicted value on the observed
    cutoffs to the actual total at training; 1 when it was already within the allowed
    bias, and for a classical model, served as it is), times `horizon_factor`."""
    scale = float(model.meta.get("value_scale", 1.0)) * horizon_factor(model, x)
    return np.asarray(np.clip(score(model, x) * scale, 0, None), dtype=float)


def horizon_factor(model: BundleModel, x: np.ndarray) -> np.ndarray:
    """1 for a CLV trained at the horizon it serves; for one trained at a shorter horizon
    (`trained_horizon_days`, a short history) each row's BG/NBD ratio of expected purchases
    in the served over the trained horizon (missing as `horizon_ratio_fill`)."""
    if "trained_horizon_days" not in model.meta:
        return np.ones(len(x))
    ratio = x[:, model.columns.index(BTYD_HORIZON_RATIO)]
    return np.where(np.isfinite(ratio), ratio, float(model.meta["horizon_ratio_fill"]))


def at_trained_horizon(model: BundleModel) -> BundleModel:
    """The bundle predicting at the horizon it was trained and tested at (no extrapolation):
    what is compared with labels."""
    if "trained_horizon_days" not in model.meta:
        return model
    meta = {k: v for k, v in model.meta.items() if k != "trained_horizon_days"}
    return dataclasses.replace(model, meta=meta)


def lightgbm_clv(model: BundleModel, x: np.ndarray) -> np.ndarray:
    """The LightGBM CLV: P(buy) x E[spend | buy] for the two-part model (spend fitted on
    log(1 + revenue) with residual variance `spend_variance`, so the mean spend is
    exp(mu + variance / 2) - 1; bundles without it use exp(mu) - 1); for btyd_tweedie the
    classical expected spend (`clv_base`) times the boosters' correction exp(raw score);
    the booster's value otherwise."""
    formulation = model.meta["formulation"]
    if formulation == "two_part":
        half_variance = float(model.meta.get("spend_variance", 0.0)) / 2
        spend = np.expm1(model.raw(x, "spend") + half_variance)
        return np.asarray(model.raw(x, "buy") * spend, dtype=float)
    if formulation == "btyd_tweedie":
        margin = model.boosters["value"].predict(x, raw_score=True, num_threads=model.threads)
        return np.asarray(clv_base(model, x) * np.exp(margin), dtype=float)
    return model.raw(x, "value")


def clv_base(model: BundleModel, x: np.ndarray) -> np.ndarray:
    """The BG/NBD x Gamma-Gamma expected spend a btyd_tweedie CLV starts from: missing as
    the bundle's `base_fill`, raised to at least `base_floor` (its log is the offset)."""
    column = x[:, model.columns.index(BTYD_CLV)]
    filled = np.where(np.isnan(column), float(model.meta["base_fill"]), column)
    return np.asarray(np.maximum(filled, float(model.meta["base_floor"])), dtype=float)


def clv_percentile(model: BundleModel, values: np.ndarray) -> np.ndarray:
    """Where each CLV falls among the test population's predicted CLVs at training (0-100):
    the mid-rank of the value among the bundle's quantiles, so ties sit in the middle."""
    q = np.asarray(model.meta["quantiles"], dtype=float)
    v = np.asarray(values, dtype=float)
    below = np.searchsorted(q, v, side="left")
    at_or_below = np.searchsorted(q, v, side="right")
    return np.asarray(np.clip((below + at_or_below) / 2 / (len(q) - 1) * 100, 0, 100), dtype=float)


def clv_tier(model: BundleModel, percentile: np.ndarray) -> np.ndarray:
    """high (top `high_value_share` of the test population), medium (the rest of the top
    half) or low, from the percentile."""
    high = 100 * (1 - model.meta["high_value_share"])
    return np.where(percentile >= high, "high", np.where(percentile >= 50, "medium", "low"))


# Scorers: what a bundle's score is computed from

# The scorer of a bundle without one (every bundle before classical contenders existed).
LIGHTGBM_SCORER: dict[str, Any] = {"kind": "lightgbm"}


def scorer(model: BundleModel) -> dict[str, Any]:
    """The bundle's scorer (`meta["scorer"]`): the contender training chose on validation.

    - {"kind": "lightgbm"}: the boosters (P(churn) before calibration, the LightGBM CLV);
    - {"kind": "feature", "column": c, "fill": v}: one input column as it is, a missing value
      as `fill` (a classical model computed as a point-in-time feature, e.g. the BG/NBD
      P(no purchase) or BG/NBD x Gamma-Gamma expected spend);
    - {"kind": "linear", "columns", "center", "scale", "coef", "intercept", "link"}: a
      regression on sign(x) log(1 + |x|) of its columns (missing as 0), standardised by
      `center` and `scale`; link "logistic" or "identity" (e.g. logistic regression on RFM);
    - {"kind": "blend", "parts": [scorer, ...], "weights": [w, ...]}: a weighted mean."""
    found: dict[str, Any] = model.meta.get("scorer", LIGHTGBM_SCORER)
    return found


def score(model: BundleModel, x: np.ndarray, spec: Mapping[str, Any] | None = None) -> np.ndarray:
    """The score of `spec` (by default the bundle's scorer) on model input `x`."""
    spec = scorer(model) if spec is None else spec
    kind = spec["kind"]
    if kind == "lightgbm":
        return lightgbm_clv(model, x) if model.kind == "clv" else model.raw(x)
    if kind == "feature":
        column = x[:, model.columns.index(spec["column"])]
        return np.asarray(np.where(np.isnan(column), spec["fill"], column), dtype=float)
    if kind == "linear":
        z = spec["intercept"] + _standardised(model, x, spec) @ np.asarray(spec["coef"])
        if spec["link"] == "logistic":
            return np.asarray(1 / (1 + np.exp(-z)), dtype=float)
        return np.asarray(z, dtype=float)
    if kind == "blend":
        parts = [score(model, x, part) for part in spec["parts"]]
        return np.asarray(sum(w * p for w, p in zip(spec["weights"], parts, strict=True)))
    raise ValueError(f"scorer '{kind}': expected lightgbm, feature, linear or blend")


def signed_log(x: np.ndarray) -> np.ndarray:
    """sign(x) log(1 + |x|), missing values as 0: the input of a linear scorer."""
    x = np.nan_to_num(np.asarray(x, dtype=float), nan=0.0)
    return np.asarray(np.sign(x) * np.log1p(np.abs(x)), dtype=float)


def _standardised(model: BundleModel, x: np.ndarray, spec: Mapping[str, Any]) -> np.ndarray:
    idx = [model.columns.index(c) for c in spec["columns"]]
    return np.asarray((signed_log(x[:, idx]) - spec["center"]) / spec["scale"], dtype=float)


def scorer_contributions(
    model: BundleModel, x: np.ndarray, spec: Mapping[str, Any] | None = None
) -> np.ndarray:
    """Per-row, per-column contributions to the score, for reason codes: LightGBM's own
    (in its raw score), a linear scorer's terms, a feature scorer's distance from its
    fill value; a blend is explained by its heaviest part."""
    spec = scorer(model) if spec is None else spec
    out = np.zeros((len(x), len(model.columns)))
    if spec["kind"] == "lightgbm":
        return model.contributions(x, reason_booster(model))
    if spec["kind"] == "feature":
        j = model.columns.index(spec["column"])
        out[:, j] = score(model, x, spec) - spec["fill"]
    elif spec["kind"] == "linear":
        idx = [model.columns.index(c) for c in spec["columns"]]
        out[:, idx] = _standardised(model, x, spec) * np.asarray(spec["coef"])
    elif spec["kind"] == "blend":
        heaviest = int(np.argmax(spec["weights"]))
        return scorer_contributions(model, x, spec["parts"][heaviest])
    return out


# Reason codes


def reason_booster(model: BundleModel) -> str:
    """The booster whose contributions explain the model (for a two-part CLV: the spend)."""
    if model.kind == "clv":
        return "spend" if model.meta["formulation"] == "two_part" else "value"
    return model.kind


def reason_codes(
    model: BundleModel,
    x: np.ndarray,
    rows: Sequence[Mapping[str, Any]],
    top: int,
    category_slots: Sequence[str] = (),
) -> list[dict[str, list[Reason]]]:
    """Each row's `top` drivers up and down of the model's score, in words, from LightGBM
    contributions. `rows` give the values shown in the words (row dicts of `x`);
    `category_slots` name the categories of the `category_share_N` features."""
    contrib = scorer_contributions(model, x)
    target = model_spec(model.kind).explains
    out = []
    for i, row in enumerate(rows):
        order = np.argsort(contrib[i], kind="stable")
        up = [j for j in order[::-1][:top] if contrib[i, j] > 0]
        down = [j for j in order[:top] if contrib[i, j] < 0]
        reasons: dict[str, list[Reason]] = {}
        for direction, picked in (("up", up), ("down", down)):
            reasons[direction] = []
            for j in picked:
                name, c = model.columns[j], float(contrib[i, j])
                value = row.get(name)
                text = reason_text(name, value, c, target, category_slots)
                reasons[direction].append(Reason(name, value, c, text))
        out.append(reasons)
    return out


# Next-best-offer

# Pair features computed with the candidates (`features.names.NBO_CANDIDATE_FEATURES`).
COPURCHASE_SCORE, COPURCHASE_MAX, COPURCHASE_LINKS, COPURCHASE_WEIGHTED = (
    "copurchase_score",
    "copurchase_max",
    "copurchase_links",
    "copurchase_weighted_score",
)
COPURCHASE = (COPURCHASE_SCORE, COPURCHASE_MAX, COPURCHASE_LINKS, COPURCHASE_WEIGHTED)
NEIGHBOUR = "neighbour_id"
SIMILARITY = "similarity"
# The weight of a history offer in the weighted co-purchase score (an affinity feature).
HISTORY_WEIGHT = "affinity_intensity_share_90d"
# Co-purchase scores are rounded so the API (a Python sum per customer) and batch scoring
# and training (a pandas sum) give the very same value.
COPURCHASE_DIGITS = 6


@dataclass(frozen=True)
class CandidateSettings:
    """How many candidates of each source a customer gets (a bundle's `meta`)."""

    history: int
    popular: int
    trending: int = 0
    neighbours: int = 0

    @classmethod
    def of(cls, model: BundleModel) -> CandidateSettings:
        meta = model.meta
        return cls(
            int(meta["history_candidates"]),
            int(meta["popular_candidates"]),
            int(meta.get("trending_candidates", 0)),
            int(meta.get("neighbour_candidates", 0)),
        )


def popular_offers(offers: pd.DataFrame, n: int) -> list[str]:
    """The `n` offers most bought in the last 30 days (ties: offer id) of one cutoff."""
    if n <= 0 or offers.empty:
        return []
    order = offers.assign(_id=offers[OFFER_ID].astype(str)).sort_values(
        ["offer_buyers_30d", "_id"], ascending=[False, True], kind="stable"
    )
    return list(order["_id"].head(n))


def trending_offers(offers: pd.DataFrame, n: int, exclude: Collection[str] = ()) -> list[str]:
    """The `n` fastest-rising offers of one cutoff besides `exclude` (the popular ones):
    buyers in the last 30 days x their trend against the 30 days before, rising ones only
    (ties: offer id)."""
    if n <= 0 or offers.empty:
        return []
    rise = numbers(offers["offer_buyers_30d"]) * numbers(offers["offer_trend_30d"])
    frame = pd.DataFrame({"_id": offers[OFFER_ID].astype(str).to_numpy(), "rise": rise})
    frame = frame[(frame["rise"] > 0) & ~frame["_id"].isin(list(exclude))]
    frame = frame.sort_values(["rise", "_id"], ascending=[False, True], kind="stable")
    return list(frame["_id"].head(n))


def fixed_candidates(
    offers: pd.DataFrame, settings: CandidateSettings
) -> dict[pd.Timestamp, list[str]]:
    """Popular then trending offers of each cutoff (candidates for every customer)."""
    out = {}
    for stamp, group in offers.groupby(EVENT_TIMESTAMP, sort=True):
        popular = popular_offers(group, settings.popular)
        out[pd.Timestamp(str(stamp))] = popular + trending_offers(group, settings.trending, popular)
    return out


def neighbour_table(model: BundleModel) -> dict[str, list[tuple[str, float]]] | None:
    """The bundle's co-purchase neighbours: offer -> [(neighbour, similarity), ...]."""
    table = model.meta.get("neighbours")
    if table is None:
        return None
    return {str(o): [(str(n), float(s)) for n, s in near] for o, near in table.items()}


def neighbour_frame(table: Mapping[str, Sequence[tuple[str, float]]]) -> pd.DataFrame:
    """A neighbour table as rows: offer_id, neighbour_id, similarity."""
    rows = [(o, n, s) for o, near in table.items() for n, s in near]
    return pd.DataFrame(rows, columns=[OFFER_ID, NEIGHBOUR, SIMILARITY])


def customer_candidates(
    history: Sequence[str],
    top_history: Sequence[str],
    fixed: Sequence[str],
    neighbours: Mapping[str, Sequence[tuple[str, float]]] | None,
    n_neighbours: int,
    weights: Mapping[str, Any] | None = None,
) -> tuple[list[str], dict[str, tuple[float, float, int, float]]]:
    """One customer's candidates (sorted) and co-purchase features, as `candidates` makes
    them for many: `top_history` (the customer's most bought), the `fixed` offers, and the
    `n_neighbours` offers not bought in the year with the highest co-purchase score with
    the `history` offers. Offers without a link score 0. The weighted score weighs each
    history offer by `weights` (its `HISTORY_WEIGHT`; missing: 0)."""
    scores: dict[str, list[tuple[float, float]]] = {}
    for h in dict.fromkeys(history):
        weight = as_number((weights or {}).get(h))
        weight = 0.0 if math.isnan(weight) else weight
        for o, s in (neighbours or {}).get(h, ()):
            scores.setdefault(o, []).append((s, s * weight))
    features = {
        o: (
            round(sum(s for s, _ in links), COPURCHASE_DIGITS),
            round(max(s for s, _ in links), COPURCHASE_DIGITS),
            len(links),
            round(sum(w for _, w in links), COPURCHASE_DIGITS),
        )
        for o, links in scores.items()
    }
    taken = {*history, *fixed}
    near = sorted(((-f[0], o) for o, f in features.items() if o not in taken))
    chosen = [o for _, o in near[: max(n_neighbours, 0)]]
    return sorted({*top_history, *fixed, *chosen}), features


def _copurchase(history: pd.DataFrame, neighbours: pd.DataFrame) -> pd.DataFrame:
    """(customer, cutoff, offer) co-purchase features of the offers linked to the history
    rows (customer, cutoff, history offer), with `neighbours` per cutoff or for all."""
    keys = [CUSTOMER_ID, EVENT_TIMESTAMP]
    on = [EVENT_TIMESTAMP, OFFER_ID] if EVENT_TIMESTAMP in neighbours else [OFFER_ID]
    weight = (
        numbers(history[HISTORY_WEIGHT]) if HISTORY_WEIGHT in history else np.zeros(len(history))
    )
    rows = history[[*keys, OFFER_ID]].assign(_w=np.nan_to_num(weight, nan=0.0))
    linked = rows.merge(neighbours, on=on)
    if linked.empty:
        return pd.DataFrame(columns=[*keys, OFFER_ID, *COPURCHASE])
    linked["_ws"] = linked[SIMILARITY].to_numpy(float) * linked["_w"].to_numpy(float)
    grouped = linked.groupby([*keys, NEIGHBOUR], sort=True)
    out = grouped[SIMILARITY].agg(["sum", "max", "size"])
    out["weighted"] = grouped["_ws"].sum()
    out = out.reset_index()
    return pd.DataFrame(
        {
            CUSTOMER_ID: out[CUSTOMER_ID].to_numpy(),
            EVENT_TIMESTAMP: out[EVENT_TIMESTAMP].to_numpy(),
            OFFER_ID: out[NEIGHBOUR].astype(str).to_numpy(),
            COPURCHASE_SCORE: np.round(out["sum"].to_numpy(float), COPURCHASE_DIGITS),
            COPURCHASE_MAX: np.round(out["max"].to_numpy(float), COPURCHASE_DIGITS),
            COPURCHASE_LINKS: out["size"].to_numpy(np.int64),
            COPURCHASE_WEIGHTED: np.round(out["weighted"].to_numpy(float), COPURCHASE_DIGITS),
        }
    )


def candidates(
    affinity: pd.DataFrame,
    offers: pd.DataFrame,
    customers: pd.DataFrame,
    history_candidates: int,
    popular_candidates: int,
    trending_candidates: int = 0,
    neighbour_candidates: int = 0,
    neighbours: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """(customer, offer, cutoff) pairs to rank. `customers` has customer_id, event_timestamp.

    Each customer gets: their `history_candidates` most bought offers of the last year (the
    affinity rows; ties: most recent, then offer id); the cutoff's `popular_candidates` most
    popular offers and `trending_candidates` fastest-rising others (`fixed_candidates`);
    with `neighbours` (offer_id, neighbour_id, similarity, and event_timestamp when they
    differ per cutoff), the `neighbour_candidates` offers not bought in the year most bought
    with the customer's history offers, and every pair's co-purchase features (0 where no
    history offer links to the offer). The API builds the same with `customer_candidates`."""
    keys = [CUSTOMER_ID, EVENT_TIMESTAMP]
    settings = CandidateSettings(
        history_candidates, popular_candidates, trending_candidates, neighbour_candidates
    )
    bought = affinity.merge(customers[keys], on=keys)
    bought = bought.assign(**{OFFER_ID: bought[OFFER_ID].astype(str)})
    history = bought.sort_values(
        [*keys, "affinity_orders_365d", RECENCY, OFFER_ID],
        ascending=[True, True, False, True, True],
        kind="stable",
    )
    history = history.groupby(keys, sort=False).head(history_candidates)[[*keys, OFFER_ID]]
    fixed_rows = [
        (stamp, o) for stamp, ids in fixed_candidates(offers, settings).items() for o in ids
    ]
    fixed = pd.DataFrame(fixed_rows, columns=[EVENT_TIMESTAMP, OFFER_ID])
    fixed[EVENT_TIMESTAMP] = pd.to_datetime(fixed[EVENT_TIMESTAMP], utc=True)
    stamps = customers[keys].assign(
        **{EVENT_TIMESTAMP: pd.to_datetime(customers[EVENT_TIMESTAMP], utc=True)}
    )
    fixed = stamps.merge(fixed, on=EVENT_TIMESTAMP)
    parts = [history, fixed]
    links = None
    if neighbours is not None:
        links = _copurchase(bought, neighbours)
        taken = pd.concat([bought[[*keys, OFFER_ID]], fixed], ignore_index=True)
        fresh = links.merge(
            taken.drop_duplicates(), on=[*keys, OFFER_ID], how="left", indicator=True
        )
        fresh = fresh[fresh["_merge"] == "left_only"].sort_values(
            [*keys, COPURCHASE_SCORE, OFFER_ID],
            ascending=[True, True, False, True],
            kind="stable",
        )
        parts.append(fresh.groupby(keys, sort=False).head(neighbour_candidates)[[*keys, OFFER_ID]])
    pairs = pd.concat(parts, ignore_index=True).drop_duplicates()
    if links is not None:
        pairs = pairs.merge(links, on=[*keys, OFFER_ID], how="left")
        for name in COPURCHASE:
            pairs[name] = pairs[name].fillna(0)
        pairs[COPURCHASE_LINKS] = pairs[COPURCHASE_LINKS].astype(np.int64)
    return pairs.sort_values([*keys, OFFER_ID], kind="stable").reset_index(drop=True)


def model_candidates(
    model: BundleModel, affinity: pd.DataFrame, offers: pd.DataFrame, customers: pd.DataFrame
) -> pd.DataFrame:
    """`candidates` with the bundle's settings and co-purchase neighbours (batch scoring)."""
    s = CandidateSettings.of(model)
    table = neighbour_table(model)
    return candidates(
        affinity,
        offers,
        customers,
        s.history,
        s.popular,
        s.trending,
        s.neighbours,
        None if table is None else neighbour_frame(table),
    )


def offer_probability(model: BundleModel, x: np.ndarray) -> np.ndarray:
    """P(accept) of each pair: the binary booster's output, or a ranker's score through the
    bundle's logistic map (`meta["probability"]`: coef, intercept, fitted on validation)."""
    raw = model.raw(x)
    fit = model.meta.get("probability")
    if fit is None:
        return raw
    return np.asarray(1 / (1 + np.exp(-(fit["coef"] * raw + fit["intercept"]))), dtype=float)


def rank_offers(
    groups: np.ndarray,
    offer_ids: np.ndarray,
    probability: np.ndarray,
    value: np.ndarray,
    recency: np.ndarray,
    k: int,
    exclude_bought_within_days: int | None = None,
    allowed: Collection[str] | None = None,
    by: str = "probability",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The offer ranking with its rules, over candidate pairs of many customers at once.

    Pair i belongs to customer `groups[i]` (integers; the output is ordered by them). Rules:
    only `allowed` offers when given (catalog filter, eligibility); no offer bought within
    `exclude_bought_within_days` days (`recency`; NaN = never bought, kept). The top `k` per
    customer by probability, or by expected value with `by="expected_value"`; ties by
    offer id. Returns the chosen pairs' positions, their ranks (1..k) and expected values
    (probability x offer value, a missing value as 0)."""
    if by not in ("probability", "expected_value"):
        raise ValueError(f"rank offers by '{by}': expected probability or expected_value")
    keep = np.ones(len(offer_ids), dtype=bool)
    if allowed is not None:
        keep &= np.isin(offer_ids, list(allowed))
    if exclude_bought_within_days is not None:
        keep &= ~(recency < exclude_bought_within_days)
    idx = np.flatnonzero(keep)
    if not len(idx):
        empty = np.empty(0, dtype=int)
        return empty, empty, np.empty(0)
    expected_all = probability * np.nan_to_num(np.asarray(value, dtype=float), nan=0.0)
    key = probability if by == "probability" else expected_all
    _, offer_order = np.unique(offer_ids[idx], return_inverse=True)
    order = idx[np.lexsort((offer_order, -key[idx], groups[idx]))]
    g = groups[order]
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    rank = np.arange(len(g)) - np.repeat(starts, np.diff(np.r_[starts, len(g)])) + 1
    chosen = order[rank <= k]
    return chosen, rank[rank <= k], expected_all[chosen]


def recommend(
    model: BundleModel,
    pairs: pd.DataFrame,
    k: int | None = None,
    allowed: Collection[str] | None = None,
) -> pd.DataFrame:
    """Top-k offers (default: the bundle's top_k) per customer and cutoff of candidate
    `pairs` with their features: customer_id, event_timestamp, rank, offer_id, probability
    and expected value, with the bundle's rules (`rank_offers`)."""
    probability = offer_probability(model, model.frame_matrix(pairs))
    keys = [CUSTOMER_ID, EVENT_TIMESTAMP]
    groups = pairs.groupby(keys, sort=True).ngroup().to_numpy()
    missing = np.full(len(pairs), np.nan)
    chosen, rank, expected = rank_offers(
        groups,
        pairs[OFFER_ID].astype(str).to_numpy(dtype=object),
        probability,
        numbers(pairs[OFFER_VALUE]) if OFFER_VALUE in pairs else missing,
        numbers(pairs[RECENCY]) if RECENCY in pairs else missing,
        int(k or model.meta["top_k"]),
        model.meta.get("exclude_bought_within_days"),
        allowed,
        model.meta.get("rank_by", "probability"),
    )
    out = pairs.iloc[chosen][keys].reset_index(drop=True)
    out["rank"] = rank
    out[OFFER_ID] = pairs[OFFER_ID].iloc[chosen].to_numpy()
    out["probability"] = probability[chosen]
    out["expected_value"] = expected
    return out


def _ensure_features_known(model: BundleModel) -> None:
    unknown = [c for c in model.columns if c not in ALL_FEATURES]
    if unknown:
        raise ModelNotFound(
            f"{model_spec(model.kind).registry_name} v{model.version} reads features "
            f"{unknown} this version of crmscore does not define: retrain it"
        )


def _load_pyfunc(data_path: str) -> BundleModel:
    """MLflow's loader of the registered model (`loader_module="serving.models"`): the
    bundle in the model's data folder; its `predict(DataFrame)` is the model's prediction."""
    model = BundleModel.from_folder(Path(data_path))
    model.threads = 0
    return model


# Bundle files: integrity and consistency


def booster_file(name: str) -> str:
    """The file name of a bundle's booster."""
    return f"booster_{name}.txt"


def sha256(data: bytes) -> str:
    """The SHA-256 of `data`, as hex."""
    return hashlib.sha256(data).hexdigest()


def _read(folder: Path, name: str) -> bytes:
    try:
        return (folder / name).read_bytes()
    except OSError:
        raise BundleError(f"{name} is missing or unreadable") from None


def _verified_files(folder: Path) -> tuple[dict[str, bytes], bool]:
    """The bundle's files by name, each checked against `checksums.json` (a listed file
    that differs is a BundleError), and whether they were checked. Without checksums.json
    (a bundle saved before them) only model.json is read, unchecked; `_parse_booster`
    then tries each booster in a child process."""
    if not (folder / CHECKSUMS_FILE).exists():
        return {BUNDLE_FILE: _read(folder, BUNDLE_FILE)}, False
    try:
        sums = json.loads(_read(folder, CHECKSUMS_FILE))
    except ValueError:
        raise BundleError(f"{CHECKSUMS_FILE} is not JSON") from None
    if not isinstance(sums, dict) or BUNDLE_FILE not in sums:
        raise BundleError(f"{CHECKSUMS_FILE} does not list {BUNDLE_FILE}")
    files = {}
    for name, expected in sums.items():
        data = _read(folder, str(name))
        if sha256(data) != expected:
            raise BundleError(f"{name} does not match its checksum: damaged or edited")
        files[str(name)] = data
    return files, True


def _parse_booster(
    files: Mapping[str, bytes], checked: bool, folder: Path, name: str
) -> lgb.Booster:
    """A booster from its checksum-verified text (`checked`: a booster without a checksum
    is a BundleError); in a bundle without checksums, from its file once a child process
    parsed it without dying."""
    file = booster_file(name)
    if not checked:
        _check_parses(folder / file)
        return lgb.Booster(model_file=str(folder / file))
    if file not in files:
        raise BundleError(f"{file} has no checksum in {CHECKSUMS_FILE}")
    return lgb.Booster(model_str=files[file].decode())


# LightGBM aborts the process on a malformed model file: it is tried in a child first.
_PARSE = "import sys, lightgbm; lightgbm.Booster(model_file=sys.argv[1])"


def _check_parses(path: Path) -> None:
    """BundleError unless LightGBM parses the booster file at `path` in a child process."""
    if not path.is_file():
        raise BundleError(f"{path.name} is missing")
    try:
        done = subprocess.run(
            [sys.executable, "-c", _PARSE, str(path)], capture_output=True, timeout=300
        )
    except (OSError, subprocess.TimeoutExpired):
        raise BundleError(f"{path.name} could not be checked") from None
    if done.returncode != 0:
        raise BundleError(f"{path.name} is not a LightGBM model: damaged or edited")


def check_bundle(model: BundleModel) -> None:
    """BundleError unless the bundle is consistent: every booster reads the bundle's
    columns in the same order, and the settings are in range (churn threshold in (0, 1),
    band edges ordered within (0, 1); CLV high-value share in (0, 1) and percentile
    quantiles ascending; at least one offer per customer)."""
    for name, booster in model.boosters.items():
        if list(booster.feature_name()) != model.columns:
            raise BundleError(f"the columns of {BUNDLE_FILE} are not those booster {name} reads")
    meta = model.meta
    if model.kind == "churn":
        threshold = _number(meta, "threshold")
        edges = meta.get("band_edges")
        if not 0 < threshold < 1:
            raise BundleError(f"threshold {threshold}: expected a probability in (0, 1)")
        if not isinstance(edges, list) or len(edges) != 2:
            raise BundleError("band_edges: expected two probabilities")
        low, high = (_number({"edge": e}, "edge") for e in edges)
        if not 0 < low <= high < 1:
            raise BundleError(f"band_edges {edges}: expected 0 < low <= high < 1")
    if model.kind == "clv":
        share = _number(meta, "high_value_share")
        if not 0 < share < 1:
            raise BundleError(f"high_value_share {share}: expected a share in (0, 1)")
        quantiles = np.asarray(meta.get("quantiles", []), dtype=float)
        if not (np.isfinite(quantiles).all() and (np.diff(quantiles) >= 0).all()):
            raise BundleError("quantiles: expected ascending finite values")
    if model.kind == "nbo" and "top_k" in meta and _number(meta, "top_k") < 1:
        raise BundleError(f"top_k {meta['top_k']}: expected at least 1")


def _number(meta: Mapping[str, Any], key: str) -> float:
    value = meta.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BundleError(f"{key} {value!r}: expected a number")
    return float(value)
