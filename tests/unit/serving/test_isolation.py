"""The service stands alone: importing it pulls in neither training code, nor the command
line, nor matplotlib or scikit-learn; no serving module imports `crmscore`."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[3]
FORBIDDEN = ("training", "crmscore", "matplotlib", "sklearn")
SERVICE_MODULES = (
    "serving.service",
    "serving.state",
    "serving.config",
    "serving.registry",
    "serving.batch",
)

# Runs in a fresh interpreter: import the service, print the top-level packages loaded.
_PROBE = """
import importlib, json, sys
refuse = sys.argv[1].split(",") if sys.argv[1] else []

class Refuse:
    # As if these packages were not installed (a serving-only image).
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in refuse:
            raise ModuleNotFoundError(f"No module named {name!r}")
        return None

sys.meta_path.insert(0, Refuse())
for module in sys.argv[2:]:
    importlib.import_module(module)
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules})))
"""


def _loaded(refuse: tuple[str, ...] = ()) -> set[str]:
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, ",".join(refuse), *SERVICE_MODULES],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return set(json.loads(result.stdout.strip().splitlines()[-1]))


def test_importing_the_service_loads_no_training_cli_or_plotting_code() -> None:
    loaded = _loaded()
    assert "serving" in loaded
    assert not loaded & {"training", "crmscore", "matplotlib"}
    # LightGBM imports scikit-learn for its optional estimators when it is installed; nothing
    # else may (the next test proves the service does not need it).
    assert "sklearn" not in loaded or "lightgbm" in loaded


def test_the_service_imports_without_matplotlib_or_scikit_learn_installed() -> None:
    loaded = _loaded(refuse=("matplotlib", "sklearn"))
    assert "serving" in loaded
    assert not loaded & set(FORBIDDEN)


def test_no_serving_module_imports_the_command_line() -> None:
    offenders = []
    for path in sorted((PROJECT_ROOT / "serving").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            offenders += [
                f"{path.relative_to(PROJECT_ROOT)}:{node.lineno} imports {name}"
                for name in names
                if name.split(".")[0] == "crmscore"
            ]
    assert offenders == []
