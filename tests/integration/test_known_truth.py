"""On transactions drawn from a known BG/NBD x Gamma-Gamma process, the classical model is
the truth's own family: the champion chosen on validation must not be worse than it."""

from __future__ import annotations

import pytest

from crmscore import steps
from crmscore.settings import load_settings
from features.store import open_store
from features.synthetic import bgnbd_export, dataset_yaml, write_export
from training import contenders
from training.pipeline import runner

SETTINGS = """
settings:
  training:
    bootstrap: 100
"""


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("known_truth")
    csv = write_export(bgnbd_export(3000, seed=21, days=730), root / "export.csv")
    dataset = root / "bgnbd.yaml"
    dataset.write_text(dataset_yaml(csv, "bgnbd") + SETTINGS)
    settings = load_settings(root / "ws", dataset=str(dataset))
    for step in (steps.ingest, steps.build_features, steps.apply):
        step(settings)
    return settings, root


@pytest.mark.parametrize(
    ("kind", "classical"),
    [("churn", contenders.CHURN_BTYD[0]), ("clv", contenders.CLV_BTYD[0])],
)
def test_the_champion_is_not_worse_than_bgnbd(workspace, kind: str, classical: str) -> None:  # type: ignore[no-untyped-def]
    settings, root = workspace
    store = open_store(settings.feast, settings.paths)
    result = runner(kind)(
        store, settings.paths, settings.labels, settings.training, root / "reports" / kind
    )
    names = [s.name for s in result.scored]
    assert classical in names, names
    assert result.info["champion"] == result.champion == result.scored[0].name
    if result.champion != classical:
        (paired,) = [p for p in result.paired if p.baseline == classical]
        # Positive is better for the champion: not significantly worse than the truth's family.
        assert paired.high >= 0, (result.champion, paired)
