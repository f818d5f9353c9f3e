"""Reading export files: reader options, file-line row numbers and one-line errors."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from crmscore.cli import app
from features.catalog import Workspace
from features.config import DatasetConfig, SourceConfig
from features.ingest import IngestError, ingest

COLUMNS = {"customer_id": "cust", "timestamp": "day", "amount": "amount"}


def _dataset(source: dict[str, Any], timestamp_format: str | None = "%Y-%m-%d") -> DatasetConfig:
    table: dict[str, Any] = {"sources": [{"columns": COLUMNS, **source}]}
    if timestamp_format:
        table["timestamp_format"] = timestamp_format
    return DatasetConfig.model_validate({"name": "t", "tables": {"transactions": table}})


def _ingest(tmp_path: Path, name: str, data: bytes, **source: Any) -> tuple[dict, pd.DataFrame]:
    (tmp_path / name).write_bytes(data)
    out = Workspace(tmp_path / "out")
    fmt = source.pop("timestamp_format", "%Y-%m-%d")
    report = ingest(_dataset({"path": name, **source}, fmt), tmp_path, out)
    return report, pd.read_parquet(out.table("transactions"))


def _rejects(tmp_path: Path, failed: bool = False) -> dict[int, str]:
    """Rows rejected by the last ingest; `failed`: by one that accepted nothing (its rejects
    go beside the published tables, which it leaves as they were)."""
    out = Workspace(tmp_path / "out")
    rejects = pd.read_csv(out.failed_rejects if failed else out.rejects)
    return dict(zip(rejects["row"], rejects["reason"], strict=True))


def test_semicolon_decimal_comma_and_latin1(tmp_path: Path) -> None:
    text = "cust;day;amount\nJosé;2021-01-05;1.234,50\nZoë;2021-01-06;-3,25\n"
    report, rows = _ingest(
        tmp_path,
        "a.csv",
        text.encode("latin-1"),
        delimiter=";",
        decimal=",",
        thousands=".",
        encoding="latin-1",
    )
    assert report["accepted_rows"] == 2
    assert rows["customer_id"].tolist() == ["José", "Zoë"]
    assert rows["amount"].tolist() == [1234.5, -3.25]


def test_tsv_defaults_to_tab_and_whitespace_without_header(tmp_path: Path) -> None:
    _, rows = _ingest(tmp_path, "a.tsv", b"cust\tday\tamount\nc 1\t2021-01-05\t2.5\n")
    assert rows["customer_id"].tolist() == ["c 1"]  # a space inside a tab-delimited field
    text = b"c1   2021-01-05  2.5\n\n  c2 2021-01-07 4\n"
    _, rows = _ingest(
        tmp_path,
        "b.txt",
        text,
        delimiter="whitespace",
        header=False,
        column_names=["cust", "day", "amount"],
    )
    assert rows["customer_id"].tolist() == ["c1", "c2"]
    assert rows["amount"].tolist() == [2.5, 4.0]
    assert rows["order_id"].tolist() == ["c1@2021-01-05", "c2@2021-01-07"]  # derived


def test_fixed_width_with_skipped_title_lines(tmp_path: Path) -> None:
    text = (
        b"SALES REPORT\nprinted 2021-02-01\n"  # skipped
        b"cust day       amount\n"  # the header, replaced by column_names
        b"c1   2021-01-05 12.5\n"
        b"c22  2021-01-06  x\n"
    )
    report, rows = _ingest(
        tmp_path, "a.txt", text, widths=[5, 11, 6], skip_rows=2, column_names=list(COLUMNS.values())
    )
    assert rows["customer_id"].tolist() == ["c1"]
    assert rows["amount"].tolist() == [12.5]
    assert report["rejected_rows"] == 1
    assert _rejects(tmp_path) == {5: "bad_amount"}  # the fifth line of the file


def test_reject_rows_are_file_lines(tmp_path: Path) -> None:
    text = (
        "cust,day,amount,note\n"  # line 1
        'c1,2021-01-05,1,"two\nlines"\n'  # lines 2-3
        "\n"  # line 4: blank
        "c2,2021-01-05,bad,x\n"  # line 5
        "   \n"  # line 6: blanks only
        ",2021-01-05,1,x\n"  # line 7
    )
    report, _ = _ingest(tmp_path, "a.csv", text.encode())
    assert report["input_rows"] == 3
    assert _rejects(tmp_path) == {5: "bad_amount", 7: "missing_customer_id"}


def test_rows_of_a_gzip_file_with_a_byte_order_mark(tmp_path: Path) -> None:
    data = gzip.compress(b"\xef\xbb\xbfcust,day,amount\n\nc1,2021-01-05,x\n")
    (tmp_path / "a.csv.gz").write_bytes(data)
    out = Workspace(tmp_path / "out")
    with pytest.raises(IngestError, match="no row accepted"):
        ingest(_dataset({"path": "a.csv.gz"}), tmp_path, out)
    assert _rejects(tmp_path, failed=True) == {3: "bad_amount"}


LINES = "".join(f"c{i},2021-01-05,{i}\n" for i in range(3000))
TRUNCATED = gzip.compress(f"cust,day,amount\n{LINES}".encode())[:2000]


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("a.csv", b"", r"a\.csv: the file is empty"),
        ("a.csv", b"\n  \n", r"a\.csv: the file is empty"),
        ("a.csv", b"cust,day,amount\n\n", r"a\.csv: there are no data rows \(only a header"),
        ("a.csv", "cust,day,amount\nc1,2021-01-05,é\n".encode("latin-1"), r"a\.csv: line 2"),
        ("a.csv", b"cust,day,amount\nc1,2021-01-05,1\nc2,2021-01-05,1,9\n", r"a\.csv: line 3"),
        (
            "a.csv.gz",
            TRUNCATED,
            r"a\.csv\.gz: truncated gzip file",
        ),
        ("a.csv.gz", b"not gzip at all", r"a\.csv\.gz: not a valid gzip file"),
    ],
)
def test_unreadable_files_name_the_file_and_line(
    tmp_path: Path, name: str, data: bytes, message: str
) -> None:
    (tmp_path / name).write_bytes(data)
    with pytest.raises(IngestError, match=message):
        ingest(_dataset({"path": name}), tmp_path, Workspace(tmp_path / "out"))


def test_every_row_rejected_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("cust,day,amount\nc1,2021-01-05,x\n,2021-01-05,1\n")
    out = Workspace(tmp_path / "out")
    with pytest.raises(IngestError, match=r"no row accepted: all 2 rows were rejected"):
        ingest(_dataset({"path": "a.csv"}), tmp_path, out)
    assert _rejects(tmp_path, failed=True) == {2: "bad_amount", 3: "missing_customer_id"}
    assert not out.table("transactions").exists()


def test_cli_error_is_one_line_without_traceback(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_bytes("cust,day,amount\nc1,2021-01-05,é\n".encode("latin-1"))
    dataset = tmp_path / "d.yaml"
    dataset.write_text(
        "name: t\ntables:\n  transactions:\n    sources:\n"
        f"      - path: {tmp_path / 'a.csv'}\n"
        "        columns: {customer_id: cust, timestamp: day, amount: amount}\n"
    )
    result = CliRunner().invoke(
        app, ["--workspace", str(tmp_path / "ws"), "--dataset", str(dataset), "ingest"]
    )
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert "a.csv: line 2, column 15: byte 0xe9 is not valid utf-8" in result.stderr
    assert "Traceback" not in result.output


def test_day_first_dates_are_decided_from_the_whole_column(tmp_path: Path) -> None:
    text = b"cust,day,amount\nc1,05/01/2021,1\nc1,13/01/2021,1\n"
    _, rows = _ingest(tmp_path, "a.csv", text, timestamp_format=None)
    assert rows["timestamp"].dt.strftime("%Y-%m-%d").tolist() == ["2021-01-05", "2021-01-13"]


def test_ambiguous_dates_are_refused_naming_file_column_and_values(tmp_path: Path) -> None:
    text = b"cust,day,amount\nc1,05/01/2021,1\nc1,03/02/2021,1\n"
    with pytest.raises(IngestError, match=r"a\.csv: column 'day'.*'05/01/2021' and '03/02/2021'"):
        _ingest(tmp_path, "a.csv", text, timestamp_format=None)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"delimiter": ";;"}, "delimiter must be one ASCII character"),
        ({"encoding": "latin-99"}, "unknown encoding 'latin-99'"),
        ({"header": False}, "header: false needs column_names"),
        ({"header": False, "column_names": ["a", "b"]}, r"\['cust', 'day', 'amount'\] are not in"),
        ({"widths": [3, 0]}, "greater than 0"),
        ({"widths": [3, 4], "delimiter": ","}, "fixed-width file"),
        ({"widths": [3, 4], "column_names": ["cust", "day", "amount"]}, "widths has 2 columns"),
        ({"skip_rows": -1}, "greater than or equal to 0"),
        ({"decimal": ";"}, "Input should be '.' or ','"),
        ({"path": "a.parquet", "delimiter": ";"}, r"\['delimiter'\] apply to text files"),
    ],
)
def test_reader_options_are_validated(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        SourceConfig.model_validate({"path": "a.csv", "columns": COLUMNS, **options})


def test_tab_spellings() -> None:
    for spelling in ("tab", "\\t", "\t"):
        source = SourceConfig.model_validate(
            {"path": "a.txt", "columns": COLUMNS, "delimiter": spelling}
        )
        assert source.delimiter == "\t"
