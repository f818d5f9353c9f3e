"""The command line as a new user meets it (issue 14): the readiness report and train's
refusal on tiny data, one-line errors naming the next command, arguments checked before
heavy imports, stage lines without third-party noise, and advice that keeps state
(`features build --cutoffs` adds cutoffs, category slots stay while models use them)."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner, Result

from crmscore.cli import app
from features.catalog import Workspace
from features.synthetic import dataset_yaml, synthetic_export, write_export
from tests.integration.test_products_free import customer_day_export
from tests.integration.test_products_free import dataset_yaml as daily_yaml

# A stage line: "HH:MM:SS what (12.3 s)".
STAGE = re.compile(r"^\d\d:\d\d:\d\d .+ \(\d+\.\d s\)$")
# What third-party output looks like on a terminal.
THIRD_PARTY = re.compile(
    r"warning|INFO |DEBUG |alembic|mlflow\.|pytensor|sqlalchemy|it/s\]|%\|", re.IGNORECASE
)


def invoke(*args: str) -> Result:
    """A crmscore command in-process, exceptions caught as a user would see them."""
    return CliRunner().invoke(app, list(args))


def one_line_error(result: Result) -> str:
    """The command failed with exit code 2 and a single `error:` line, no traceback."""
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    return lines[0]


def run_crmscore(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """A crmscore command in its own process, as typed in a shell."""
    return subprocess.run(
        [sys.executable, "-m", "crmscore", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("CRMSCORE_")},
        check=False,
    )


def test_tiny_data_gets_a_readiness_report_and_train_refuses(tmp_path: Path) -> None:
    csv = write_export(customer_day_export(20, seed=5, days=548), tmp_path / "tiny.csv")
    dataset = tmp_path / "tiny.yaml"
    dataset.write_text(daily_yaml(csv))
    base = ["--workspace", str(tmp_path / "ws"), "--dataset", str(dataset)]
    ingest = invoke(*base, "ingest")
    assert ingest.exit_code == 0, ingest.output
    assert "order_id" in json.loads(ingest.stdout)["derived"]  # stated, not silent

    build = invoke(*base, "features", "build")
    assert build.exit_code == 0, build.output
    assert json.loads(build.stdout)["trainable"] == []
    report = json.loads(Workspace(tmp_path / "ws").readiness_report.read_text())
    assert report["data"]["customers"] == pd.read_csv(csv)["Customer"].nunique()
    assert report["data"]["derived"]["order_id"].startswith("no order id")
    churn = next(m for m in report["models"] if m["model"] == "churn")
    assert not churn["ready"] and "training.min_customers" in churn["reason"]
    assert max(p["customers"] for p in churn["parts"].values()) < 100
    assert "churn (90-day horizon): cannot be trained" in build.stderr

    train = invoke(*base, "train")
    error = one_line_error(train)
    assert "too little data to train" in error and "training.min_customers" in error
    assert "`crmscore ingest`" in error  # what to do next
    # Refused before anything was fitted or registered: no MLflow store, no model report.
    assert not Workspace(tmp_path / "ws").mlflow_db.exists()
    assert not Workspace(tmp_path / "ws").model_reports("churn").exists()


def test_an_empty_workspace_gives_one_line_naming_the_next_command(tmp_path: Path) -> None:
    base = ["--workspace", str(tmp_path / "ws")]
    expected = {
        ("features", "materialize"): "crmscore features build",
        ("train",): "crmscore ingest",
        ("readiness",): "crmscore ingest",
        ("score", "batch", "--as-of", "2019-05-01"): "crmscore features build",
    }
    for command, next_command in expected.items():
        assert next_command in one_line_error(invoke(*base, *command)), command


def test_an_unknown_dataset_lists_the_available_ones(tmp_path: Path) -> None:
    error = one_line_error(invoke("--workspace", str(tmp_path), "--dataset", "nope", "ingest"))
    for name in ("complete_journey", "online_retail"):
        assert name in error
    assert "crmscore init --from FILE" in error


def test_a_bad_date_is_refused_before_the_heavy_imports(tmp_path: Path) -> None:
    probe = (
        "import sys\n"
        "from crmscore.cli import app\n"
        "try:\n"
        "    app(['score', 'batch', '--as-of', '2019-13-01'])\n"
        "except SystemExit as exc:\n"
        "    heavy = ('numpy', 'pandas', 'mlflow', 'feast', 'lightgbm', 'bentoml')\n"
        "    print(exc.code, [m for m in heavy if m in sys.modules])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert done.stdout.split() == ["2", "[]"], done.stdout
    assert done.stderr.strip().startswith("error: --as-of 2019-13-01")


@pytest.mark.slow
def test_train_shows_stages_not_libraries_and_rebuilds_keep_state(tmp_path: Path) -> None:
    csv = write_export(
        synthetic_export(lines=60_000, customers=400, seed=7, days=730), tmp_path / "export.csv"
    )
    dataset = tmp_path / "synthetic.yaml"
    dataset.write_text(
        dataset_yaml(csv) + "settings:\n  training:\n    bootstrap: 20\n"
        "    split:\n      max_train_cutoffs: 4\n"
    )
    paths = Workspace(tmp_path / "ws")
    base = ["--workspace", str(paths.root), "--dataset", str(dataset)]
    for command in (["ingest"], ["features", "build"], ["features", "apply"]):
        done = run_crmscore(*base, *command, cwd=tmp_path)
        assert done.returncode == 0, done.stderr

    train = run_crmscore(*base, "train", cwd=tmp_path)
    assert train.returncode == 0, train.stderr
    lines = train.stderr.splitlines()
    assert [line for line in lines if THIRD_PARTY.search(line)] == []
    stages = [line for line in lines if STAGE.match(line)]
    for kind in ("churn", "clv", "nbo"):
        assert any(f"train {kind}: LightGBM fit (" in line for line in stages), lines
        assert any(f"train {kind}: log and register in MLflow (" in line for line in stages)
    # The libraries' lines are in the log file instead.
    assert paths.log_file.stat().st_size > 0
    assert "DEBUG" in paths.log_file.read_text()

    quiet = run_crmscore("--quiet", *base, "readiness", cwd=tmp_path)
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr

    meta = json.loads(paths.snapshots_meta.read_text())
    first = pd.Timestamp(meta["cutoffs"][0])
    added = (first - pd.Timedelta(days=45)).date().isoformat()
    rebuild = run_crmscore(*base, "features", "build", "--cutoffs", added, cwd=tmp_path)
    assert rebuild.returncode == 0, rebuild.stderr
    after = json.loads(paths.snapshots_meta.read_text())
    # Added to the cutoffs, not replacing them; the category slots the models use kept
    # (a new first cutoff would otherwise rank the categories on other months).
    assert set(after["cutoffs"]) == {*meta["cutoffs"], pd.Timestamp(added, tz="UTC").isoformat()}
    assert after["category_slots"] == meta["category_slots"]

    other = synthetic_export(lines=5_000, customers=100, seed=3, days=730)
    other["Category"] = "other" + other["Category"]  # none of the slots' categories
    write_export(other, csv)
    assert run_crmscore(*base, "ingest", cwd=tmp_path).returncode == 0
    refused = run_crmscore(*base, "features", "build", cwd=tmp_path)
    assert refused.returncode == 2
    (error,) = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
    assert "category_share_N" in error and "--workspace" in error
    assert json.loads(paths.snapshots_meta.read_text()) == after  # the build kept as it was


def test_the_server_says_once_when_it_is_ready(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`run_server` on a stand-in that answers /readyz after a while (the real service's
    start-up is covered with the trained workspace in the serving tests)."""
    from crmscore.server import run_server

    server = tmp_path / "server.py"
    server.write_text(
        "import http.server, sys, time\n"
        "time.sleep(0.5)\n"
        "class H(http.server.BaseHTTPRequestHandler):\n"
        "    def do_GET(self):\n"
        "        self.send_response(200); self.end_headers()\n"
        "        print('got', self.path, flush=True)\n"
        "        if self.path == '/readyz':\n"
        "            raise SystemExit(0)\n"
        "s = http.server.HTTPServer(('127.0.0.1', int(sys.argv[1])), H)\n"
        "s.handle_request()\n"
    )
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = tmp_path / "logs" / "server.log"
    code = run_server(
        [sys.executable, str(server), str(port)], dict(os.environ), f"http://127.0.0.1:{port}", log
    )
    assert code == 0
    assert "got /readyz" in log.read_text()
    said = capsys.readouterr().err.splitlines()
    assert [line for line in said if "ready" in line] == [
        next(line for line in said if line.startswith(f"ready on http://127.0.0.1:{port} in "))
    ]
    failing = run_server(
        [sys.executable, "-c", "raise SystemExit('no models')"], {}, "http://127.0.0.1:9", log
    )
    assert failing == 1
    (error,) = capsys.readouterr().err.splitlines()
    assert error.startswith("error: the server stopped (exit 1) before it was ready: no models")
