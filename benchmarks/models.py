"""Every model of a dataset against its contenders and baselines, one markdown table per task.

    .venv/bin/python benchmarks/models.py --dataset NAME_OR_YAML [--workspace DIR]
        [--models churn,clv,nbo] [--skip-build]

NAME_OR_YAML is a dataset of configs/datasets/ (complete_journey, online_retail) or the path
of a dataset YAML. The workspace (a new temporary folder unless --workspace) is built as the
command line builds it: ingest, features build, Feast apply, materialize; --skip-build reuses
a built one. Each model kind is then trained through its runner (`training.pipeline.runner`)
on the same time-based test cutoff as its contenders and baselines. Per task the table lists
every contender's test metrics with 95% bootstrap intervals (the first row is the model, the
champion chosen on validation), then the paired differences model - contender on the primary
metric (positive: the model is better). The command and the timings are printed first.
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
import tempfile
import time
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)  # import the project's packages, not this folder's modules

KINDS = ("churn", "clv", "nbo")


def _number(value: float) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return f"{value:.3f}" if abs(value) < 1000 else f"{value:,.0f}"


def _cell(value: float, interval: tuple[float, float] | None) -> str:
    if interval is None:
        return _number(value)
    return f"{_number(value)} [{_number(interval[0])}, {_number(interval[1])}]"


def table(result: Any) -> list[str]:
    """The markdown lines of one task: contenders with metrics and intervals, the champion,
    the grade and the paired differences (reads a `training.pipeline.TrainResult`)."""
    scored = result.scored
    champion = getattr(result, "champion", None) or result.info.get("champion")
    keys = [k for k in scored[0].metrics if k in scored[0].intervals]
    keys += [k for k in scored[0].metrics if k not in keys]
    lines = [
        "| contender | role | " + " | ".join(keys) + " |",
        "|---|---|" + "---|" * len(keys),
    ]
    for i, s in enumerate(scored):
        name = s.name
        if i == 0:
            name = f"**{name}** (model)"
        elif s.name == champion:
            name = f"{name} (champion)"
        cells = [_cell(s.metrics[k], s.intervals.get(k)) if k in s.metrics else "" for k in keys]
        lines.append(f"| {name} | {s.role} | " + " | ".join(cells) + " |")
    letter, strongest, text = result.grade
    lines += [
        "",
        f"champion: {champion or scored[0].name} (chosen on validation; scored first above)",
        f"grade {letter} against the strongest baseline '{strongest}': {text}",
        "",
        f"| model - contender | {result.primary_key} difference | 95% interval |",
        "|---|---|---|",
    ]
    for p in result.paired:
        lines.append(
            f"| {scored[0].name} - {p.baseline} | {p.difference:+.4f} "
            f"| [{p.low:+.4f}, {p.high:+.4f}] |"
        )
    return lines


# Training details printed under a task's table when its runner reports them (the offer
# model: the objective chosen on validation, the candidates' recall ceiling, light buyers).
DETAILS = (
    "objective",
    "valid_hit",
    "best_iteration",
    "candidate_recall",
    "candidate_recall_valid",
    "candidate_recall_history_popular",
    "candidates_per_customer",
    "train_negatives_per_query",
    "train_pairs",
    "light_buyers",
    "heavy_buyers",
)


def details(info: dict[str, Any]) -> str:
    """The `DETAILS` entries of a runner's info and its light- and heavy-buyer figures, on one
    line."""
    shown = {k: info[k] for k in DETAILS if k in info}
    shown |= {k: v for k, v in info.items() if k.startswith(("light_buyers_", "heavy_buyers_"))}
    rounded = {k: round(v, 4) if isinstance(v, float) else v for k, v in shown.items()}
    return ", ".join(f"{k} {v}" for k, v in rounded.items())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", required=True, help="a name of configs/datasets/ or a YAML")
    parser.add_argument("--workspace", type=Path, help="default: a new temporary folder")
    parser.add_argument("--models", default=",".join(KINDS), help="comma-separated kinds")
    parser.add_argument("--skip-build", action="store_true", help="reuse a built workspace")
    args = parser.parse_args()

    from crmscore import steps
    from crmscore.settings import load_settings
    from features.model_spec import check_kinds
    from features.store import open_store
    from training.pipeline import runner

    kinds = check_kinds([k.strip() for k in args.models.split(",") if k.strip()])
    workspace = args.workspace or Path(tempfile.mkdtemp(prefix="crmscore_models_bench_"))
    settings = load_settings(workspace=workspace, dataset=args.dataset)
    print("command: " + shlex.join([Path(sys.executable).name, *sys.argv]))
    print(f"dataset: {settings.dataset.name}, workspace: {settings.paths.root}")
    timings: dict[str, float] = {}
    if not args.skip_build:
        for name, step in (
            ("ingest", steps.ingest),
            ("features build", steps.build_features),
            ("feast apply", steps.apply),
            ("materialize", steps.materialize),
        ):
            started = time.perf_counter()
            with redirect_stdout(sys.stderr):
                summary = step(settings)
            timings[name] = time.perf_counter() - started
            shown = {
                k: summary[k] for k in ("accepted_rows", "customers", "cutoffs") if k in summary
            }
            print(f"{name}: {timings[name]:.1f} s {shown or ''}".rstrip(), flush=True)
    skipped = steps.skipped_kinds(settings, kinds)
    store = open_store(settings.feast, settings.paths)
    for kind in kinds:
        if kind in skipped:
            print(f"\n### {kind}: skipped ({skipped[kind]})")
            continue
        started = time.perf_counter()
        try:
            with redirect_stdout(sys.stderr):
                result = runner(kind)(
                    store,
                    settings.paths,
                    settings.labels,
                    settings.training,
                    settings.paths.model_reports(kind),
                )
        except ValueError as exc:  # e.g. too little data for a split
            timings[kind] = time.perf_counter() - started
            print(f"\n### {kind}: not trained ({exc})", flush=True)
            continue
        timings[kind] = time.perf_counter() - started
        print(
            f"\n### {kind}: test cutoff {result.split.test.date()}, rows {result.rows}, "
            f"{timings[kind]:.0f} s (training sets from Feast, training, evaluation)\n"
        )
        print("\n".join(table(result)))
        extra = details(result.info)
        print(f"\ndetails: {extra}" if extra else "", flush=True)
    print("\ntimings: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))
    print(f"total: {sum(timings.values()):.1f} s")


if __name__ == "__main__":
    main()
