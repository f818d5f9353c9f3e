"""`pip install .` gives a working `crmscore` anywhere: a wheel is built, installed (without
its dependencies, which a fresh venv sees from the project's .venv) and run from another
directory, where it finds the default configs inside the installed package."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent
UV = ["python3", "-m", "uv"]

pytestmark = pytest.mark.slow


def _clean_env() -> dict[str, str]:
    """The environment without crmscore's variables, a virtualenv or a PYTHONPATH."""
    drop = ("CRMSCORE_", "MLFLOW_", "VIRTUAL_ENV", "PYTHONPATH", "UV_PROJECT")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


def _run(command: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        command, cwd=cwd, env=_clean_env(), capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, f"{command}: {result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the wheel, the bin/ folder of a fresh venv with it installed)."""
    root = tmp_path_factory.mktemp("packaging")
    _run([*UV, "build", "--wheel", "--out-dir", str(root / "dist"), str(PROJECT_ROOT)], root)
    (wheel,) = (root / "dist").glob("crmscore-*.whl")
    venv = root / "venv"
    _run([*UV, "venv", "--quiet", "--python", sys.executable, str(venv)], root)
    python = venv / "bin" / "python"
    site = _run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], root
    )
    # The dependencies come from the project's .venv (a path entry, so the editable install
    # of the checkout there is not picked up), the package itself from the wheel.
    deps = sysconfig.get_paths()["purelib"]
    (Path(site.stdout.strip()) / "zz_project_deps.pth").write_text(deps + "\n")
    install = [*UV, "pip", "install", "--quiet", "--offline", "--no-deps"]
    _run([*install, "--python", str(python), str(wheel)], root)
    return wheel, venv / "bin"


def test_the_wheel_carries_the_default_configs(installed: tuple[Path, Path]) -> None:
    wheel, _ = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {
        f"crmscore/configs/{p.relative_to(PROJECT_ROOT / 'configs')}"
        for p in (PROJECT_ROOT / "configs").rglob("*.yaml")
    }
    assert "crmscore/configs/settings.yaml" in shipped
    assert "crmscore/configs/datasets/complete_journey.yaml" in shipped
    assert shipped <= names


def test_the_installed_package_is_the_wheel_and_finds_its_configs(
    installed: tuple[Path, Path], tmp_path: Path
) -> None:
    _, bin_dir = installed
    code = (
        "import crmscore, features; from crmscore.settings import default_config_dir; "
        "print(crmscore.__file__); print(features.__file__); print(default_config_dir())"
    )
    lines = _run([str(bin_dir / "python"), "-c", code], tmp_path).stdout.split()
    venv = bin_dir.parent
    assert all(Path(line).is_relative_to(venv) for line in lines), lines
    assert lines[2].endswith("crmscore/configs")


def test_crmscore_help_and_ingest_work_from_another_directory(
    installed: tuple[Path, Path], tmp_path: Path
) -> None:
    _, bin_dir = installed
    crmscore = str(bin_dir / "crmscore")
    assert "ingest" in _run([crmscore, "--help"], tmp_path).stdout
    answer = json.loads(_run([crmscore, "ingest"], tmp_path, timeout=600).stdout)
    assert answer["dataset"] == "complete_journey"
    assert answer["customers"] == 2469
    assert answer["rejected_rows"] == 0
    assert (tmp_path / "workspace" / "data" / "current" / "ingest_report.json").exists()


def test_init_copies_the_default_configs_out_for_editing(
    installed: tuple[Path, Path], tmp_path: Path
) -> None:
    _, bin_dir = installed
    crmscore = str(bin_dir / "crmscore")
    _run([crmscore, "init", "--configs", "mine"], tmp_path)
    for path in (PROJECT_ROOT / "configs").rglob("*.yaml"):
        copy = tmp_path / "mine" / path.relative_to(PROJECT_ROOT / "configs")
        assert copy.read_text() == path.read_text()
    again = subprocess.run(
        [crmscore, "init", "--configs", "mine"],
        cwd=tmp_path,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 2
    assert "exists" in again.stderr and "Traceback" not in again.stderr
    # The copied configs are the ones used with --config.
    (tmp_path / "mine" / "settings.yaml").write_text("dataset: nowhere\n")
    bad = subprocess.run(
        [crmscore, "--config", "mine", "ingest"],
        cwd=tmp_path,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2
    assert "nowhere.yaml: not found" in bad.stderr
