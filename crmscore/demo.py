"""`make demo`: the whole pipeline on the embedded Complete Journey data.

ingest -> features -> Feast apply -> materialize -> train -> promote -> batch scores -> a
campaign target list, each step through the CLI so the demo shows exactly what a user runs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from typer.testing import CliRunner

from crmscore.cli import app
from crmscore.settings import Settings, load_settings
from training.tracking import default_tracking_uri

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
    """Run every step; stop at the first failure with its message."""
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
    uri = settings.mlflow_tracking_uri or default_tracking_uri(settings.workspace)
    print(f"MLflow UI:   {sys.executable} -m mlflow ui --backend-store-uri {uri}")
    return 0


def _workspace(argv: list[str]) -> Path | None:
    return Path(argv[argv.index("--workspace") + 1]) if "--workspace" in argv else None


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
