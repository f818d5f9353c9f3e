"""A bundle on disk is checked before anything in it is used (serving/models.py): checksums of
every file, written when it is saved; a damaged booster refused without LightGBM aborting the
process; columns that are not those the boosters read, and settings out of range, refused."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from serving.models import BUNDLE_FILE, CHECKSUMS_FILE, BundleError, BundleModel
from tests.unit.serving.test_models import awkward
from tests.unit.training.test_models import _churn_model

PROJECT_ROOT = Path(__file__).resolve().parents[3]
BOOSTER = "booster_churn.txt"


@pytest.fixture(scope="module")
def churn() -> BundleModel:
    return _churn_model()


def _saved(model: BundleModel, folder: Path) -> Path:
    return model.save(folder / "bundle")


def _edit_meta(folder: Path, **changes: object) -> None:
    meta = json.loads((folder / BUNDLE_FILE).read_text())
    meta.update(changes)
    (folder / BUNDLE_FILE).write_text(json.dumps(meta))


def _reseal(folder: Path) -> None:
    """Rewrite the checksums over the files as they are now (a bundle exported so)."""
    sums = {
        n: hashlib.sha256((folder / n).read_bytes()).hexdigest() for n in (BUNDLE_FILE, BOOSTER)
    }
    (folder / CHECKSUMS_FILE).write_text(json.dumps(sums))


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _load_in_child(folder: Path) -> subprocess.CompletedProcess[str]:
    """`BundleModel.from_folder` in a child process: a LightGBM abort kills the child only."""
    script = "import sys; from serving.models import BundleModel; BundleModel.from_folder("
    script += "__import__('pathlib').Path(sys.argv[1]))"
    return subprocess.run(
        [sys.executable, "-c", script, str(folder)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=300,
    )


def test_saving_records_the_checksum_of_every_file(churn: BundleModel, tmp_path: Path) -> None:
    folder = _saved(churn, tmp_path)
    sums = json.loads((folder / CHECKSUMS_FILE).read_text())
    assert set(sums) == {BUNDLE_FILE, BOOSTER}
    for name, digest in sums.items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest
    loaded = BundleModel.from_folder(folder)
    test = awkward(50, 3)
    assert loaded.predict(test).tolist() == churn.predict(test).tolist()


@pytest.mark.parametrize("sealed", [True, False], ids=["with-checksums", "saved-before-them"])
def test_a_truncated_booster_is_refused_and_the_process_lives(
    churn: BundleModel, tmp_path: Path, sealed: bool
) -> None:
    folder = _saved(churn, tmp_path)
    if not sealed:
        (folder / CHECKSUMS_FILE).unlink(missing_ok=True)
    _truncate(folder / BOOSTER)
    done = _load_in_child(folder)
    # An exit code of 1 is a Python exception; LightGBM's abort would be -6 (SIGABRT).
    assert done.returncode == 1, done.stderr[-2000:]
    assert "BundleError" in done.stderr and BOOSTER in done.stderr


def test_an_edited_model_json_fails_its_checksum(churn: BundleModel, tmp_path: Path) -> None:
    folder = _saved(churn, tmp_path)
    _edit_meta(folder, threshold=0)
    with pytest.raises(BundleError, match=f"{BUNDLE_FILE} does not match its checksum"):
        BundleModel.from_folder(folder)


def test_a_booster_without_checksum_is_refused(churn: BundleModel, tmp_path: Path) -> None:
    folder = _saved(churn, tmp_path)
    sums = json.loads((folder / CHECKSUMS_FILE).read_text())
    del sums[BOOSTER]
    (folder / CHECKSUMS_FILE).write_text(json.dumps(sums))
    with pytest.raises(BundleError, match=f"{BOOSTER} has no checksum"):
        BundleModel.from_folder(folder)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"threshold": 0}, "threshold 0.0"),
        ({"threshold": 1.5}, "threshold 1.5"),
        ({"threshold": "0.5"}, "threshold '0.5'"),
        ({"band_edges": [0.6, 0.3]}, "band_edges"),
        ({"band_edges": [0.3]}, "band_edges"),
        ({"swap": True}, "columns"),
    ],
)
def test_inconsistent_or_out_of_range_bundles_are_refused(
    churn: BundleModel, tmp_path: Path, changes: dict, message: str
) -> None:
    """Even with checksums over the edited files (a bundle exported so)."""
    folder = _saved(churn, tmp_path)
    if changes.pop("swap", False):
        columns = list(churn.columns)
        columns[0], columns[1] = columns[1], columns[0]
        changes["columns"] = columns
    _edit_meta(folder, **changes)
    _reseal(folder)
    with pytest.raises(BundleError, match=message):
        BundleModel.from_folder(folder)


def test_a_bundle_saved_before_checksums_still_loads(churn: BundleModel, tmp_path: Path) -> None:
    folder = _saved(churn, tmp_path)
    (folder / CHECKSUMS_FILE).unlink(missing_ok=True)
    test = awkward(50, 3)
    assert BundleModel.from_folder(folder).predict(test).tolist() == churn.predict(test).tolist()
    _edit_meta(folder, band_edges=[0.6, 0.3])
    with pytest.raises(BundleError, match="band_edges"):
        BundleModel.from_folder(folder)
