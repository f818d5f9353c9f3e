"""`make demo`: the whole pipeline on the embedded Complete Journey data.

ingest -> features -> Feast apply -> materialize -> train -> promote, each step through the
CLI so the demo shows exactly what a user runs."""

from __future__ import annotations

import sys
from pathlib import Path

from typer.testing import CliRunner

from crmscore.cli import app
from crmscore.settings import load_settings
from training.tracking import default_tracking_uri

STEPS = [
    ("ingest", ["ingest"]),
    ("features build", ["features", "build"]),
    ("features apply", ["features", "apply"]),
    ("features materialize", ["features", "materialize"]),
    ("train", ["train"]),
    ("promote", ["promote"]),
]


def main(argv: list[str]) -> int:
    """Run every step; stop at the first failure with its message."""
    runner = CliRunner()
    for title, args in STEPS:
        print(f"\n== crmscore {' '.join(args)}", flush=True)
        result = runner.invoke(app, [*argv, *args])
        print(result.stdout.strip())
        if result.exit_code != 0:
            print(f"demo stopped: `crmscore {title}` failed", file=sys.stderr)
            return result.exit_code or 1
    settings = load_settings(workspace=_workspace(argv))
    print("\nDone. In the workspace", settings.workspace)
    print("  data/      canonical tables, rejects.csv, ingest_report.json")
    print("  features/  feature snapshots and labels; feast/: the registry and online store")
    print(f"  reports/   evaluation reports: {settings.report_dir}/<model>/<model>_report.html")
    uri = settings.mlflow_tracking_uri or default_tracking_uri(settings.workspace)
    print(f"MLflow UI:   {sys.executable} -m mlflow ui --backend-store-uri {uri}")
    return 0


def _workspace(argv: list[str]) -> Path | None:
    return Path(argv[argv.index("--workspace") + 1]) if "--workspace" in argv else None


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
