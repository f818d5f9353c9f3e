"""The model card of a trained model: one HTML page a marketer reads in two minutes (the
grade in a sentence, what the model predicts, its metrics explained, gains and calibration,
deciles, top drivers in words, every baseline), technical details folded at the end."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from features.config import LabelParams
from features.model_spec import model_spec
from features.names import ALL_FEATURES
from training.charts import calibration_chart, deciles, gains_chart
from training.metrics import explain
from training.pages import number, publish, render

if TYPE_CHECKING:
    from training.evaluate import Paired
    from training.pipeline import TrainResult

TITLES = {"churn": "Churn", "clv": "Customer lifetime value", "nbo": "Next-best-offer"}
# Top drivers shown in words (the full list is in the technical details).
DRIVERS = 8


@dataclass(frozen=True)
class About:
    """What the card says the model predicts: horizons and population (the label settings),
    the currency of amounts (the dataset's) and the offers per customer."""

    labels: LabelParams
    currency: str
    top_k: int

    @property
    def money(self) -> str:
        """The currency, or a note that the dataset does not name it."""
        return self.currency or "the data's currency (set `currency` in the dataset YAML)"


def predicts(kind: str, about: About) -> dict[str, str]:
    """What a model kind predicts, for whom, and the words its charts use."""
    horizon = int(getattr(about.labels, model_spec(kind).horizon_setting))
    active = (
        f"customers active at the score date: at least one purchase in the "
        f"{about.labels.active_window_days} days before it"
    )
    if kind == "churn":
        return {
            "what": f"the probability that a customer makes no purchase in the next {horizon} "
            "days (churns)",
            "population": active,
            "outcome": "churners",
            "predicted": "predicted churn probability",
            "actual": "observed churn rate",
        }
    if kind == "clv":
        return {
            "what": f"the net revenue (after returns) a customer brings in the next {horizon} "
            f"days, in {about.money}; zero for those who do not buy",
            "population": active,
            "outcome": "spend",
            "predicted": f"mean predicted spend ({about.currency or 'currency'})",
            "actual": f"mean actual spend ({about.currency or 'currency'})",
        }
    return {
        "what": f"the {about.top_k} offers a customer is most likely to buy in the next "
        f"{horizon} days, each with its probability",
        "population": f"{active}; evaluated on those who bought something in the test horizon",
        "outcome": "offers bought",
        "predicted": "predicted probability of buying the offer",
        "actual": "share of the offers bought",
    }


def _interval(low: float, high: float) -> str:
    return f"{low:+.4f} to {high:+.4f}"


def grade_sentence(result: TrainResult) -> str:
    """The grade in one plain sentence: does the model beat every classical baseline on its
    primary metric, by how much, with the paired bootstrap interval of the difference."""
    letter, strongest, text = result.grade
    key = result.primary_key
    model = result.scored[0]
    rival = next(s for s in result.scored if s.name == strongest)
    pair: Paired = next(p for p in result.paired if p.baseline == strongest)
    if pair.low > 0:
        found, verdict = "A", "beats every classical baseline"
    elif pair.difference > 0:
        found, verdict = "B", "is ahead of every classical baseline, but within chance"
    else:
        found, verdict = "C", "does not beat the classical baselines"
    better = "better" if pair.difference > 0 else "worse"
    sentence = (
        f"Grade {letter}: the model ({model.name}) {verdict} on {key}: "
        f"{number(model.metrics[key], 4)} against {number(rival.metrics[key], 4)} for the "
        f"strongest, '{strongest}' — {abs(pair.difference):.4f} {better} "
        f"(95% interval of the paired difference {_interval(pair.low, pair.high)}; "
        "positive = the model is better)."
    )
    if letter != found or model.role == "baseline":
        why = text.split(pair.as_text(key), 1)[-1].lstrip("; ")
        sentence += f" Graded {letter}: {why}."
    return sentence


def sample_sentence(sample: dict[str, Any] | None) -> str | None:
    """What a training on a sample of customers used, in words (None: every customer;
    `training.datasets.sample_customers` says what was sampled)."""
    if not sample:
        return None
    return (
        f"Trained on a sample of customers: {number(sample['customers'], 0)} of "
        f"{number(sample['customers_before'], 0)} ({number(sample['rows'], 0)} of "
        f"{number(sample['rows_before'], 0)} rows), drawn with seed {sample['seed']} and "
        f"stratified on {sample['stratified_on']}, because the rows exceed "
        "training.max_training_rows."
    )


def _drivers(result: TrainResult) -> list[dict[str, Any]]:
    gain = result.importance[result.importance > 0]
    total = float(gain.sum()) or 1.0
    return [
        {
            "name": name,
            "words": ALL_FEATURES[name].description if name in ALL_FEATURES else name,
            "share": float(value) / total,
        }
        for name, value in gain.head(DRIVERS).items()
    ]


def _contenders(result: TrainResult) -> tuple[list[str], list[dict[str, Any]]]:
    """Metric names, and one row per contender: its figures and the paired difference of
    the model with it on the primary metric."""
    keys = list(result.scored[0].metrics)
    paired = {p.baseline: p for p in result.paired}
    rows = []
    for index, scored in enumerate(result.scored):
        pair = paired.get(scored.name)
        rows.append(
            {
                "name": f"{scored.name} (the model)" if index == 0 else scored.name,
                "role": "ours" if scored.role == "model" else "classical baseline",
                "metrics": scored.metrics,
                "difference": None if pair is None else f"{pair.difference:+.4f}",
                "interval": None if pair is None else _interval(pair.low, pair.high),
            }
        )
    return keys, rows


def card_context(
    result: TrainResult, about: About, champion: dict[str, float] | None = None
) -> dict[str, Any]:
    """Everything the model card template shows."""
    kind = result.kind
    spec = model_spec(kind)
    says = predicts(kind, about)
    y = result.test_frame[spec.target].to_numpy(dtype=float)
    p = np.asarray(result.test_predictions, dtype=float)
    table = deciles(y, p)
    model = result.scored[0]
    keys, contenders = _contenders(result)
    reasons = {
        key.removeprefix("example_reasons_").replace("_", " "): value
        for key, value in result.info.items()
        if key.startswith("example_reasons_")
    }
    split = result.split
    return {
        "title": TITLES[kind],
        "kind": kind,
        "grade": result.grade[0],
        "sentence": grade_sentence(result),
        "predicts": says,
        "horizon_note": result.info.get("horizon"),
        "test_cutoff": split.test.date().isoformat(),
        "valid": ", ".join(c.date().isoformat() for c in split.valid),
        "train": f"{split.train[0].date()} to {split.train[-1].date()} "
        f"({len(split.train)} score dates)",
        "rows": result.rows,
        "sample": sample_sentence(result.info.get("training_sample")),
        "written": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "metrics": [
            {
                "name": key,
                "value": model.metrics[key],
                "interval": model.intervals.get(key),
                "explanation": explain(key),
                "primary": key == result.primary_key,
            }
            for key in keys
        ],
        "keys": keys,
        "contenders": contenders,
        "champion": champion,
        "gains": gains_chart(y, p, says["outcome"]),
        "calibration": calibration_chart(table, says["predicted"], says["actual"]),
        "deciles": table,
        "drivers": _drivers(result),
        "reasons": reasons,
        "grade_text": result.grade[2],
        "importance": [(str(k), float(v)) for k, v in result.importance.items()],
        "info": json.dumps(result.info, indent=2, default=str),
    }


def write_report(
    result: TrainResult, out_dir: Path, about: About, champion: dict[str, float] | None = None
) -> Path:
    """Write the model card `<kind>_report.html` (published atomically) and return it."""
    page = render("training", "model_card.html", **card_context(result, about, champion))
    return publish(page, out_dir / f"{result.kind}_report.html")
