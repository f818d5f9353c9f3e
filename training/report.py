"""The evaluation report of one model: Markdown and HTML, with the plots beside them."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from training.pipeline import TrainResult

TITLES = {"churn": "Churn", "clv": "Customer lifetime value", "nbo": "Next-best-offer"}


def _fmt(value: float) -> str:
    return f"{value:.4f}" if abs(value) < 1000 else f"{value:,.0f}"


def markdown(result: TrainResult, champion: dict[str, float] | None = None) -> str:
    """The report as Markdown: contenders on the test cutoff, the grade, split and details."""
    keys = list(result.scored[0].metrics)
    roles = {s.name: s.role for s in result.scored}
    lines = [
        f"# {TITLES[result.kind]} — evaluation report",
        "",
        f"Test cutoff **{result.split.test.date()}**; validation "
        f"{', '.join(c.date().isoformat() for c in result.split.valid)}; training "
        f"{result.split.train[0].date()} .. {result.split.train[-1].date()} "
        f"({len(result.split.train)} cutoffs). Rows: {json.dumps(result.rows)}.",
        "",
        f"**Model: {result.champion}**, the best of the contenders (LightGBM, the classical "
        "models and blends of them) on the validation cutoffs; the test cutoff was not used "
        "to choose it.",
        "",
        f"**Grade {result.grade[0]}** — {result.grade[2]}.",
        "Grades compare the model with the strongest classical baseline on the same test "
        "customers: A when the 95% bootstrap interval of the paired difference is above 0 "
        "(and no secondary metric is significantly worse), B when the model is ahead but the "
        "interval includes 0 (a tie within noise), C when it is not ahead or is itself a "
        "classical baseline.",
        "",
        f"Paired differences on {result.primary_key} (positive: the model is better):",
        "",
        "| contender | role | model minus contender | 95% interval |",
        "|---|---|---|---|",
        *(
            f"| {p.baseline} | {roles.get(p.baseline, '')} | {p.difference:+.4f} | "
            f"{p.low:+.4f}..{p.high:+.4f} |"
            for p in result.paired
        ),
        "",
        "All contenders on the test cutoff (the model first):",
        "",
        "| contender | role | " + " | ".join(keys) + " |",
        "|---|---|" + "---|" * len(keys),
    ]
    for scored in result.scored:
        cells = []
        for key in keys:
            cell = _fmt(scored.metrics[key])
            if key in scored.intervals:
                lo, hi = scored.intervals[key]
                cell += f" ({_fmt(lo)}..{_fmt(hi)})"
            cells.append(cell)
        lines.append(f"| {scored.name} | {scored.role} | " + " | ".join(cells) + " |")
    if champion:
        lines += [
            "",
            "Current champion on the same test set: "
            + ", ".join(f"{k} {_fmt(v)}" for k, v in champion.items()),
        ]
    lines += [
        "",
        "## Details",
        "",
        "```json",
        json.dumps(result.info, indent=2, default=str),
        "```",
        "",
        "## Top features (gain)",
        "",
    ]
    lines += [f"- {name}: {value:,.0f}" for name, value in result.importance.head(15).items()]
    lines += ["", "## Plots", ""]
    lines += [f"![{p.stem}]({p.name})" for p in result.plots]
    return "\n".join(lines) + "\n"


def write_report(
    result: TrainResult, out_dir: Path, champion: dict[str, float] | None = None
) -> list[Path]:
    """Write `<kind>_report.md` and `<kind>_report.html` next to the plots."""
    out_dir.mkdir(parents=True, exist_ok=True)
    text = markdown(result, champion)
    md = out_dir / f"{result.kind}_report.md"
    md.write_text(text)
    body = []
    for line in text.splitlines():
        if line.startswith("![") and "](" in line:
            src = line.split("](")[1].rstrip(")")
            body.append(f'<img src="{html.escape(src)}" style="max-width:48%">')
        else:
            body.append(f"<div>{html.escape(line)}</div>" if line else "<br>")
    page = out_dir / f"{result.kind}_report.html"
    page.write_text(
        "<!doctype html><meta charset='utf-8'><title>"
        f"{TITLES[result.kind]} report</title><body style='font-family:monospace'>"
        + "\n".join(body)
        + "</body>"
    )
    return [md, page]
