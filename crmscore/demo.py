"""`make demo`: the whole pipeline on the embedded Complete Journey data.

For now: ingest -> features -> Feast apply -> materialize, each step through the CLI so the
demo shows exactly what a user runs."""

from __future__ import annotations

import json
import sys

from typer.testing import CliRunner

from crmscore.cli import app

STEPS = [
    ("ingest", ["ingest"]),
    ("features build", ["features", "build"]),
    ("features apply", ["features", "apply"]),
    ("features materialize", ["features", "materialize"]),
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
    print(
        "\nDone. The workspace holds canonical tables (data/), feature snapshots and labels "
        "(features/), and the Feast registry and online store (feast/)."
    )
    print(json.dumps({"next": "crmscore --help"}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
