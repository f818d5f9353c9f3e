"""The real Online Retail exports: published figures and full row accounting."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from crmscore.settings import load_settings
from features.ingest import ingest

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def ingested(shared_datasets: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    # The YAML's paths are relative to the project root, which has shared/ beside it.
    settings = load_settings(
        workspace=tmp_path_factory.mktemp("ws"), dataset="online_retail", env={}
    )
    out = settings.paths.data_dir
    return ingest(settings.dataset, settings.data_root, settings.paths), out


def test_overlap_is_loaded_once(ingested: tuple[dict, Path]) -> None:
    report, _ = ingested
    assert report["duplicate_rows"] == 22_523
    assert report["accepted_rows"] + report["rejected_rows"] == 1_044_847
    assert report["input_rows"] == 525_461 + 541_909


def test_report_accounts_for_every_row(ingested: tuple[dict, Path]) -> None:
    report, out = ingested
    assert report["input_rows"] == (
        report["accepted_rows"] + report["rejected_rows"] + report["duplicate_rows"]
    )
    rejects = pd.read_csv(out / "rejects.csv", usecols=["reason"])
    assert len(rejects) == report["rejected_rows"]
    assert (
        len(pd.read_parquet(out / "transactions.parquet", columns=["amount"]))
        == report["accepted_rows"]
    )


def test_published_customer_counts(ingested: tuple[dict, Path]) -> None:
    report, _ = ingested
    sources = {Path(s["source"]).name: s for s in report["tables"]["transactions"]["sources"]}
    assert sources["online_retail_2010-2011.csv.gz"]["distinct_customer_ids"] == 4_372
    assert sources["online_retail_II_2009-2010.csv.gz"]["distinct_customer_ids"] == 4_383
