"""The demo (`python -m crmscore.demo`): a busy port stops it at once with one line, a failing
step says why, and a re-run skips the steps whose inputs did not change and keeps the keys."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from crmscore import demo
from crmscore.settings import Settings, load_settings
from features.catalog import Workspace
from serving.bootstrap import ensure_keys

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _demo_env(**extra: str) -> dict[str, str]:
    """The environment of a demo subprocess: no crmscore variables of the caller's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CRMSCORE_", "MLFLOW_"))}
    return {**env, **extra}


def _run_demo(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "crmscore.demo", *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("how", ["option", "environment"])
def test_busy_port_stops_the_demo_before_any_step(tmp_path: Path, how: str) -> None:
    workspace = tmp_path / "ws"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = ["--workspace", str(workspace)]
        if how == "option":
            result = _run_demo([*args, "--port", str(port)], _demo_env())
        else:
            result = _run_demo(args, _demo_env(CRMSCORE_PORT=str(port)))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: port {port} on 127.0.0.1 is in use; free it or choose another with --port "
        "or CRMSCORE_PORT"
    ]
    assert "== crmscore" not in result.stdout  # no step started
    assert not workspace.exists()


def test_port_option_wins_over_the_environment_then_the_default() -> None:
    assert demo.port_of(4001, {"CRMSCORE_PORT": "4002"}, 3000) == 4001
    assert demo.port_of(None, {"CRMSCORE_PORT": "4002"}, 3000) == 4002
    assert demo.port_of(None, {}, 3000) == 3000
    with pytest.raises(ValueError, match="CRMSCORE_PORT 'abc': not a port number"):
        demo.port_of(None, {"CRMSCORE_PORT": "abc"}, 3000)
    with pytest.raises(ValueError, match="--port 70000"):
        demo.port_of(70000, {}, 3000)


def test_a_free_port_has_no_problem_and_a_listening_one_has() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        taken.listen()
        assert "in use" in (demo.port_problem("127.0.0.1", port) or "")
    assert demo.port_problem("127.0.0.1", port) is None


@pytest.mark.slow
def test_a_failing_step_prints_its_own_error(tmp_path: Path) -> None:
    missing = tmp_path / "nothere.csv"
    dataset = tmp_path / "tiny.yaml"
    dataset.write_text(_dataset_yaml(missing))
    result = _run_demo(
        ["--workspace", str(tmp_path / "ws"), "--dataset", str(dataset), "--no-serve"],
        _demo_env(),
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-2:] == [
        f"error: {missing}: file not found",
        "demo stopped: `crmscore ingest` failed",
    ]
    assert "Traceback" not in result.stderr


def test_an_unexpected_error_is_named_with_its_cause_and_its_traceback_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken() -> dict[str, Any]:
        try:
            raise OSError("disk full")
        except OSError as exc:
            raise RuntimeError("cannot write the snapshot") from exc

    plan = [demo.DemoStep("features build", "", broken)]
    assert demo.run_plan(plan, {"features build": "f"}, tmp_path, rerun=False) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[:2] == [
        "error: RuntimeError: cannot write the snapshot",
        "  caused by: OSError: disk full",
    ]
    assert err[-1] == "demo stopped: `crmscore features build` failed"
    assert "RuntimeError" in (tmp_path / demo.ERROR_LOG).read_text()


# --- re-runs ----------------------------------------------------------------------------------


def _dataset_yaml(source: Path) -> str:
    return (
        "name: tiny\ntables:\n  transactions:\n    sources:\n"
        f"      - path: {source}\n"
        "        columns: {customer_id: customer, timestamp: ts, amount: amount}\n"
    )


def _settings(tmp_path: Path, overrides: dict[str, Any] | None = None) -> Settings:
    source = tmp_path / "tx.csv"
    if not source.exists():
        source.write_text("customer,ts,amount\nc1,2021-01-01,5\n")
    dataset = tmp_path / "tiny.yaml"
    dataset.write_text(_dataset_yaml(source))
    return load_settings(tmp_path / "ws", None, str(dataset), overrides, env={})


def _prints(settings: Settings) -> dict[str, str]:
    titles = list(demo.STEP_CODE)
    code = {title: demo.code_digest(demo.STEP_CODE[title]) for title in titles}
    return demo.fingerprints(titles, demo.step_inputs(settings), code)


def test_fingerprints_change_where_the_inputs_change(tmp_path: Path) -> None:
    first = _prints(_settings(tmp_path))
    assert _prints(_settings(tmp_path)) == first

    longer = _prints(_settings(tmp_path, {"training": {"seed": 7}}))
    changed = {t for t in first if first[t] != longer[t]}
    assert changed == {"train", "promote"}

    (tmp_path / "tx.csv").write_text("customer,ts,amount\nc1,2021-01-01,5\nc2,2021-01-02,6\n")
    rewritten = _prints(_settings(tmp_path))
    assert {t for t in first if first[t] != rewritten[t]} == {"ingest"}


def test_fingerprints_follow_the_code_of_the_step() -> None:
    inputs: dict[str, Any] = {"ingest": {}, "train": {}}
    before = demo.fingerprints(["ingest", "train"], inputs, {"ingest": "a", "train": "b"})
    after = demo.fingerprints(["ingest", "train"], inputs, {"ingest": "a", "train": "c"})
    assert before["ingest"] == after["ingest"]
    assert before["train"] != after["train"]
    assert len(demo.code_digest("features")) == 64
    assert demo.code_digest("features") != demo.code_digest("training")


def test_can_skip_needs_the_same_fingerprint_and_an_untouched_output(tmp_path: Path) -> None:
    output = tmp_path / "report.json"
    output.write_text("{}")
    recorded = {"fingerprint": "f1", "output": demo.file_stamp(output)}
    assert demo.can_skip(recorded, "f1", output)
    assert not demo.can_skip(recorded, "f2", output)
    assert not demo.can_skip(None, "f1", output)
    assert demo.can_skip({"fingerprint": "f1", "output": None}, "f1", None)
    output.write_text('{"rewritten": true}')
    assert not demo.can_skip(recorded, "f1", output)
    output.unlink()
    assert not demo.can_skip(recorded, "f1", output)


class Counting:
    """A step that counts its runs and writes its output file."""

    def __init__(self, output: Path | None = None) -> None:
        self.calls = 0
        self.output = output

    def __call__(self) -> dict[str, Any]:
        self.calls += 1
        if self.output is not None:
            self.output.write_text(str(self.calls))
        return {"calls": self.calls}


def test_a_rerun_skips_unchanged_steps_and_runs_everything_after_a_change(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ingest, build, train = Counting(tmp_path / "ingest.json"), Counting(), Counting()
    plan = [
        demo.DemoStep("ingest", "", ingest, tmp_path / "ingest.json"),
        demo.DemoStep("features build", "", build),
        demo.DemoStep("train", "", train),
    ]
    prints = {"ingest": "i", "features build": "f", "train": "t"}
    assert demo.run_plan(plan, prints, tmp_path, rerun=False) == 0
    assert demo.run_plan(plan, prints, tmp_path, rerun=False) == 0
    assert (ingest.calls, build.calls, train.calls) == (1, 1, 1)
    out = capsys.readouterr().out
    assert out.count("skipped; --rerun runs it again") == 3
    state = json.loads((tmp_path / demo.STATE_FILE).read_text())
    assert state["train"]["answer"] == {"calls": 1}

    # A change of the middle step's inputs runs it and every later step, not the first.
    assert demo.run_plan(plan, {**prints, "features build": "f2"}, tmp_path, rerun=False) == 0
    assert (ingest.calls, build.calls, train.calls) == (1, 2, 2)

    # An output rewritten by someone else runs its step again, and all after it.
    (tmp_path / "ingest.json").write_text("another dataset")
    demo.run_plan(plan, {**prints, "features build": "f2"}, tmp_path, rerun=False)
    assert (ingest.calls, build.calls, train.calls) == (2, 3, 3)

    demo.run_plan(plan, {**prints, "features build": "f2"}, tmp_path, rerun=True)
    assert (ingest.calls, build.calls, train.calls) == (3, 4, 4)


def test_a_failed_step_and_the_later_ones_run_again_next_time(tmp_path: Path) -> None:
    ingest, train = Counting(), Counting()
    failing = {"fail": False}

    def build() -> dict[str, Any]:
        if failing["fail"]:
            raise ValueError("no cutoff has enough history")
        return {}

    plan = [
        demo.DemoStep("ingest", "", ingest),
        demo.DemoStep("features build", "", build),
        demo.DemoStep("train", "", train),
    ]
    prints = {"ingest": "i", "features build": "f", "train": "t"}
    demo.run_plan(plan, prints, tmp_path, rerun=False)
    failing["fail"] = True
    assert demo.run_plan(plan, prints, tmp_path, rerun=True) == 2
    assert (ingest.calls, train.calls) == (2, 1)
    failing["fail"] = False
    assert demo.run_plan(plan, prints, tmp_path, rerun=False) == 0
    # ingest was recorded by the failed run; features build and train run again.
    assert (ingest.calls, train.calls) == (2, 2)


# --- API keys ---------------------------------------------------------------------------------


def test_the_demo_keeps_the_api_keys_unless_asked_for_new_ones(tmp_path: Path) -> None:
    assert demo.parse_args([]).new_keys is False
    assert demo.parse_args(["--new-keys"]).new_keys is True
    paths = Workspace(tmp_path)
    _, created = ensure_keys(paths, {}, new=demo.parse_args([]).new_keys)
    assert created is not None  # the first run makes a pair
    hashes = {var: path.read_text() for var, path in paths.key_files().items()}

    _, again = ensure_keys(paths, {}, new=demo.parse_args([]).new_keys)
    assert again is None
    assert {var: path.read_text() for var, path in paths.key_files().items()} == hashes

    _, rotated = ensure_keys(paths, {}, new=demo.parse_args(["--new-keys"]).new_keys)
    assert rotated is not None and rotated != created
    assert {var: path.read_text() for var, path in paths.key_files().items()} != hashes
