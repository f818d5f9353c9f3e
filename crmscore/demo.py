"""`make demo`: the whole pipeline on the embedded Complete Journey data.

ingest -> features -> Feast apply -> materialize -> train -> promote -> batch scores -> a
campaign target list -> a drift report, each step through the CLI so the demo shows exactly
what a user runs; then it serves the API on localhost."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from typer.testing import CliRunner

from crmscore.cli import app
from crmscore.settings import Settings, load_settings
from serving.registry import default_tracking_uri

STEPS = [
    ("ingest", ["ingest"]),
    ("features build", ["features", "build"]),
    ("features apply", ["features", "apply"]),
    ("features materialize", ["features", "materialize"]),
    ("train", ["train"]),
    ("promote", ["promote"]),
]


def _latest_cutoff(settings: Settings) -> str:
    meta = json.loads((settings.snapshot_dir / "snapshots.json").read_text())
    return str(meta["cutoffs"][-1])[:10]


def main(argv: list[str]) -> int:
    """Run every step; stop at the first failure with its message. Ends by serving the API
    unless `--no-serve` is given."""
    serve = "--no-serve" not in argv
    argv = [a for a in argv if a != "--no-serve"]
    runner = CliRunner()
    settings = load_settings(workspace=_workspace(argv))
    steps = [
        *STEPS,
        ("score batch", ["score", "batch", "--as-of", "{latest}"]),
        (
            "target",
            [
                "target",
                "--objective",
                "retention",
                "--budget",
                "500",
                "--control",
                "0.1",
                "--seed",
                "1",
            ],
        ),
        ("monitor drift", ["monitor", "drift", "--exit-zero"]),
    ]
    for title, args in steps:
        if "{latest}" in args:
            args = [_latest_cutoff(settings) if a == "{latest}" else a for a in args]
        print(f"\n== crmscore {' '.join(args)}", flush=True)
        result = runner.invoke(app, [*argv, *args])
        print(result.stdout.strip())
        if result.exit_code != 0:
            print(f"demo stopped: `crmscore {title}` failed", file=sys.stderr)
            return result.exit_code or 1
    print("\nDone. In the workspace", settings.workspace)
    print("  data/      canonical tables, rejects.csv, ingest_report.json")
    print("  features/  feature snapshots and labels; feast/: the registry and online store")
    print(f"  reports/   evaluation reports: {settings.report_dir}/<model>/<model>_report.html")
    print("  scores/    batch scores (parquet, CSV) and the campaign target list (CSV)")
    print(
        f"  monitoring/ drift reports (open in a browser): {settings.workspace}/monitoring/drift/"
    )
    uri = settings.mlflow_tracking_uri or default_tracking_uri(settings.paths)
    print(f"MLflow UI:   {sys.executable} -m mlflow ui --backend-store-uri {uri}")
    if serve:
        _serve(settings, argv)
    return 0


def _serve(settings: Settings, argv: list[str]) -> None:
    """End by serving the API on localhost, with a new key and a sample request printed."""
    import pandas as pd

    from serving.auth import create_key_files

    user, admin = create_key_files(settings.workspace / "serving")
    latest = sorted((settings.workspace / "scores").glob("scores_*.parquet"))[-1]
    customer = str(pd.read_parquet(latest, columns=["customer_id"])["customer_id"].iloc[0])
    url = f"http://{settings.serving.host}:{settings.serving.port}"
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
    os.execv(sys.executable, [sys.executable, "-m", "crmscore", *argv, "serve"])


def _workspace(argv: list[str]) -> Path | None:
    return Path(argv[argv.index("--workspace") + 1]) if "--workspace" in argv else None


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
