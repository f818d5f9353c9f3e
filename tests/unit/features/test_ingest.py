"""Ingestion: every input row is accepted, rejected with a reason, or counted as a duplicate."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from features.catalog import Workspace
from features.config import DatasetConfig
from features.ingest import IngestError, ingest

HEADER = "Invoice,StockCode,Quantity,InvoiceDate,Price,Customer ID,Country\n"


def _dataset(tmp_path: Path, files: dict[str, str], dedupe: bool = True) -> DatasetConfig:
    sources = []
    for name, text in files.items():
        (tmp_path / name).write_text(text)
        sources.append(
            {
                "path": name,
                "columns": {
                    "order_id": "Invoice",
                    "product_id": "StockCode",
                    "quantity": "Quantity",
                    "timestamp": "InvoiceDate",
                    "unit_price": "Price",
                    "customer_id": "Customer ID",
                    "country": "Country",
                },
            }
        )
    return DatasetConfig.model_validate(
        {
            "name": "t",
            "timezone": "Europe/London",
            "tables": {
                "transactions": {
                    "sources": sources,
                    "timestamp_format": "%Y-%m-%d %H:%M:%S",
                    "derive": {"amount": "quantity * unit_price"},
                    "dedupe_across_sources": dedupe,
                    "customer_attributes": ["country"],
                    "rules": {
                        "return_order_prefix": "C",
                        "non_product_codes": ["POST"],
                        "require_positive_unit_price": True,
                    },
                }
            },
        }
    )


GOOD = "1,A,2,2021-01-05 10:00:00,1.5,17850.0,UK\n"


def test_each_bad_row_is_rejected_with_its_reason(tmp_path: Path) -> None:
    text = (
        HEADER
        + GOOD
        + (
            "2,A,1,2021-01-05 10:00:00,1.5,,UK\n"  # line 3: no customer
            "3,POST,1,2021-01-05 10:00:00,18,17850,UK\n"  # line 4: postage
            "4,A,1,2021-01-05 10:00:00,0,17850,UK\n"  # line 5: zero price
            "5,A,1,yesterday,1.5,17850,UK\n"  # line 6: bad date
            "6,A,many,2021-01-05 10:00:00,1.5,17850,UK\n"  # line 7: bad quantity
            "C7,A,-1,2021-01-06 10:00:00,1.5,17850,UK\n"  # line 8: a return (accepted)
        )
    )
    out = Workspace(tmp_path / "out")
    report = ingest(_dataset(tmp_path, {"a.csv": text}), tmp_path, out)
    assert report["input_rows"] == 7
    assert report["accepted_rows"] == 2
    assert report["rejected_by_reason"] == {
        "missing_customer_id": 1,
        "non_product_code": 1,
        "non_positive_unit_price": 1,
        "bad_timestamp": 1,
        "bad_quantity": 1,
    }
    rejects = pd.read_csv(out.rejects)
    assert dict(zip(rejects["row"], rejects["reason"], strict=True)) == {
        3: "missing_customer_id",
        4: "non_product_code",
        5: "non_positive_unit_price",
        6: "bad_timestamp",
        7: "bad_quantity",
    }
    assert set(rejects["source"]) == {"a.csv"}
    bad_date = rejects[rejects["row"] == 6].iloc[0]
    assert bad_date["field"] == "timestamp" and bad_date["value"] == "yesterday"
    assert "%Y-%m-%d" in bad_date["expected"]
    accepted = pd.read_parquet(out.table("transactions"))
    assert accepted["customer_id"].tolist() == ["17850", "17850"]  # '17850.0' normalised
    assert accepted["amount"].tolist() == [3.0, -1.5]
    # Local London time in winter is UTC
    assert accepted["timestamp"].iloc[0] == pd.Timestamp("2021-01-05 10:00", tz="UTC")
    assert json.loads(out.ingest_report.read_text())["customers"] == 1


def test_dedupe_is_a_multiset_union_across_files(tmp_path: Path) -> None:
    line = "9,B,1,2021-06-01 12:00:00,2.0,1,UK\n"
    other = "10,B,1,2021-06-02 12:00:00,2.0,2,UK\n"
    a = HEADER + line * 2 + other  # the line twice in a
    b = HEADER + line * 3  # three times in b, customer id written as a float elsewhere
    out = Workspace(tmp_path / "o")
    report = ingest(_dataset(tmp_path, {"a.csv": a, "b.csv": b}), tmp_path, out)
    assert report["input_rows"] == 6
    assert report["duplicate_rows"] == 2  # max(2, 3) = 3 copies kept
    assert report["accepted_rows"] == 4
    # British summer time: 12:00 local is 11:00 UTC
    accepted = pd.read_parquet(out.table("transactions"))
    assert (accepted["timestamp"].dt.hour == 11).all()


def test_rows_account_for_every_input(tmp_path: Path) -> None:
    a = HEADER + GOOD * 3 + "2,A,1,2021-01-05 10:00:00,1.5,,UK\n"
    b = HEADER + GOOD + "3,POST,1,2021-01-05 10:00:00,18,17850,UK\n"
    r = ingest(_dataset(tmp_path, {"a.csv": a, "b.csv": b}), tmp_path, Workspace(tmp_path / "o"))
    assert r["input_rows"] == r["accepted_rows"] + r["rejected_rows"] + r["duplicate_rows"]
    assert (r["accepted_rows"], r["rejected_rows"], r["duplicate_rows"]) == (3, 2, 1)


def test_missing_column_names_file_and_column(tmp_path: Path) -> None:
    text = "Invoice,StockCode\n1,A\n"
    with pytest.raises(IngestError, match=r"a\.csv.*Quantity"):
        ingest(_dataset(tmp_path, {"a.csv": text}), tmp_path, Workspace(tmp_path / "o"))


def test_missing_file_is_named(tmp_path: Path) -> None:
    cfg = _dataset(tmp_path, {"a.csv": HEADER + GOOD})
    (tmp_path / "a.csv").unlink()
    with pytest.raises(IngestError, match=r"a\.csv: file not found"):
        ingest(cfg, tmp_path, Workspace(tmp_path / "o"))


def test_shipped_dataset_configs_are_valid() -> None:
    for path in (Path(__file__).parents[2] / "configs" / "datasets").glob("*.yaml"):
        DatasetConfig.model_validate(yaml.safe_load(path.read_text()))
