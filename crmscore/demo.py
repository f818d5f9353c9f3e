"""`make demo`: the whole pipeline on the embedded Complete Journey data.

ingest -> features -> Feast apply -> materialize -> train -> promote -> batch scores -> a
campaign target list -> a drift report, each step the function its `crmscore` command calls
(crmscore/steps.py), printed under that command's name; then it serves the API on localhost.

    python -m crmscore.demo [--workspace DIR] [--config DIR] [--dataset NAME] [--no-serve]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from datetime import date
from functools import partial
from pathlib import Path
from typing import Any

from crmscore import steps
from crmscore.settings import Settings, SettingsError, load_settings

# The pipeline up to trained and promoted models: (command, step).
STEPS = steps.PIPELINE


def demo_steps(settings: Settings) -> list[tuple[str, str, Callable[[], dict[str, Any]]]]:
    """Every step of the demo: (command, its options, the step with those options)."""
    return [
        *((title, "", partial(step, settings)) for title, step in STEPS),
        (
            "score batch",
            "--as-of <latest cutoff>",
            lambda: steps.score_batch(settings, date.fromisoformat(steps.latest_cutoff(settings))),
        ),
        (
            "target",
            "--objective retention --budget 500 --control 0.1 --seed 1",
            partial(steps.target, settings, "retention", 500, 0.1, 1),
        ),
        ("monitor drift", "--exit-zero", lambda: steps.drift(settings).as_dict()),
    ]


def run_steps(settings: Settings) -> int:
    """Run every step, printing each one's answer; stop at the first failure with its
    message. Returns the exit code (0: every step passed)."""
    for title, options, step in demo_steps(settings):
        print(f"\n== crmscore {title} {options}".rstrip(), flush=True)
        try:
            answer = step()
        except steps.STEP_ERRORS as exc:
            print(f"error: {exc}", file=sys.stderr)
            print(f"demo stopped: `crmscore {title}` failed", file=sys.stderr)
            return 2
        print(json.dumps(answer, indent=2, default=str), flush=True)
    return 0


def main(argv: list[str]) -> int:
    """Run every step; stop at the first failure with its message. Ends by serving the API
    unless `--no-serve` is given."""
    parser = argparse.ArgumentParser(prog="python -m crmscore.demo", description=__doc__)
    parser.add_argument("--workspace", type=Path)
    parser.add_argument("--config", type=Path)
    parser.add_argument("--dataset")
    parser.add_argument("--no-serve", action="store_true")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.workspace, args.config, args.dataset)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    code = run_steps(settings)
    if code:
        return code
    paths = settings.paths
    print("\nDone. In the workspace", settings.workspace)
    print("  data/      canonical tables, rejects.csv, ingest_report.json")
    print("  features/  feature snapshots and labels; feast/: the registry and online store")
    print(f"  reports/   evaluation reports: {paths.report_dir}/<model>/<model>_report.html")
    print("  scores/    batch scores (parquet, CSV) and the campaign target list (CSV)")
    print(f"  monitoring/ drift reports (open in a browser): {paths.drift_dir}/")
    uri = steps.tracking_uri(settings)
    print(f"MLflow UI:   {sys.executable} -m mlflow ui --backend-store-uri {uri}")
    if not args.no_serve:
        return _serve(settings)
    return 0


def _serve(settings: Settings) -> int:
    """End by serving the API on localhost, with a new key and a sample request printed."""
    import pandas as pd

    try:
        launch = steps.serve(settings, dict(os.environ), new_keys=True)
    except steps.STEP_ERRORS as exc:
        print(f"error: {exc}\ndemo stopped: `crmscore serve` failed", file=sys.stderr)
        return 2
    assert launch.new_keys is not None
    user, admin = launch.new_keys
    latest = settings.paths.scores_files()[-1]
    customer = str(pd.read_parquet(latest, columns=["customer_id"])["customer_id"].iloc[0])
    url = launch.url
    print(f"\n== crmscore serve: the scoring API on {url} (Ctrl-C stops it)")
    print(f"API key {user}; admin key {admin} (only their hashes are stored)")
    print(f"OpenAPI: {url}/docs   models: {url}/v1/models   ready: {url}/readyz")
    print("Try, once it says it is ready:")
    print(
        f"  curl -s -X POST {url}/v1/score -H 'Authorization: Bearer {user}' "
        f"-H 'Content-Type: application/json' "
        f'-d \'{{"customer_id": "{customer}", "explain": true}}\''
    )
    sys.stdout.flush()
    os.execvpe(launch.command[0], launch.command, launch.env)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
