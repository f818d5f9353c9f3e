"""The model card's charts and decile table, from the test outcomes and the model's
predictions: who the model ranks first, and whether its figures mean what they say."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure

from training.pages import png_uri


def deciles(y: np.ndarray, p: np.ndarray) -> list[dict[str, Any]]:
    """Per decile of the prediction (1 = highest): rows, mean predicted and actual outcome,
    lift (the decile's actual mean over everyone's) and the cumulative share of the total
    outcome captured by the deciles down to this one."""
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    ranks = np.empty(len(p), dtype=int)
    ranks[np.argsort(-p, kind="stable")] = np.arange(len(p))
    decile = np.clip(np.ceil((ranks + 1) / max(1, len(p)) * 10).astype(int), 1, 10)
    positive = np.clip(y, 0, None)
    total = positive.sum()
    mean = float(y.mean()) if len(y) else float("nan")
    rows = []
    for d in sorted(set(decile.tolist())):
        inside = decile == d
        actual = float(y[inside].mean())
        rows.append(
            {
                "decile": d,
                "rows": int(inside.sum()),
                "predicted": float(p[inside].mean()),
                "actual": actual,
                "lift": actual / mean if mean else float("nan"),
                "captured": float(positive[decile <= d].sum() / total) if total else float("nan"),
            }
        )
    return rows


def gains_chart(y: np.ndarray, p: np.ndarray, outcome: str) -> str:
    """Cumulative gains: the share of the total `outcome` (churners, spend, accepted offers)
    reached by contacting the customers the model ranks first, against random order and
    the perfect order. A PNG data URI."""
    positive = np.clip(np.asarray(y, dtype=float), 0, None)
    total = positive.sum() or 1.0
    share = np.arange(0, len(p) + 1) / max(1, len(p))
    model = np.r_[0, np.cumsum(positive[np.argsort(-p, kind="stable")])] / total
    perfect = np.r_[0, np.cumsum(np.sort(positive)[::-1])] / total
    figure = Figure(figsize=(5, 4))
    ax = figure.subplots()
    ax.plot(share, model, label="model")
    ax.plot(share, perfect, ":", label="perfect order")
    ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="random order")
    ax.set(
        xlabel="share of customers contacted, highest scores first",
        ylabel=f"share of {outcome} reached",
        title="Gains on the test customers",
        xlim=(0, 1),
        ylim=(0, 1.02),
    )
    ax.legend(fontsize=8, loc="lower right")
    return png_uri(figure)


def calibration_chart(rows: list[dict[str, Any]], predicted: str, actual: str) -> str:
    """Mean predicted against mean actual outcome per decile (`deciles`), with the diagonal
    where they agree. A PNG data URI."""
    x = [r["predicted"] for r in rows]
    y = [r["actual"] for r in rows]
    top = max([*x, *y, 1e-9]) * 1.05
    figure = Figure(figsize=(5, 4))
    ax = figure.subplots()
    ax.plot([0, top], [0, top], "k--", lw=0.8, label="predicted = actual")
    ax.plot(x, y, "o-", label="deciles of the prediction")
    ax.set(xlabel=predicted, ylabel=actual, title="Calibration", xlim=(0, top), ylim=(0, top))
    ax.legend(fontsize=8, loc="upper left")
    return png_uri(figure)
