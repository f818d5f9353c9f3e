"""`crmscore init`: a draft dataset YAML sniffed from files of different shapes ingests them
with exact accounting and the right values."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from crmscore.cli import app
from features.catalog import Workspace
from features.config import DatasetConfig
from features.ingest import ingest
from features.sniff import draft_dataset, sniff_delimiter

ROWS = 60


def _truth() -> pd.DataFrame:
    """Known transactions; row 7 carries a value that is not a number (rejected)."""
    rng = np.random.default_rng(7)
    return pd.DataFrame(
        {
            "customer": [f"C{i:02d}" for i in rng.integers(1, 9, ROWS)],
            "date": pd.Timestamp("2021-01-01") + pd.to_timedelta(rng.integers(0, 365, ROWS), "D"),
            "product": [f"P{i}" for i in rng.integers(1, 6, ROWS)],
            "qty": rng.integers(1, 5, ROWS),
            "price": rng.integers(50, 2000, ROWS) / 100,
        }
    )


def _lines(truth: pd.DataFrame, line: Callable[[pd.Series], str], decimal: str = ".") -> str:
    rows = [line(r) for _, r in truth.iterrows()]
    rows[7] = rows[7].replace(_price(truth.iloc[7], decimal), "n/a")
    return "\n".join(rows) + "\n"


def _price(row: pd.Series, decimal: str) -> str:
    return f"{row['price']:.2f}".replace(".", decimal)


def whitespace_no_header(truth: pd.DataFrame) -> str:
    return _lines(
        truth,
        lambda r: (
            f"{r['customer']}   {r['date']:%d/%m/%Y}  {r['product']} {r['qty']}  {_price(r, '.')}"
        ),
    )


def semicolon_decimal_comma(truth: pd.DataFrame) -> str:
    return "Kunde;Datum;Artikel;Menge;Preis\n" + _lines(
        truth,
        lambda r: (
            f"{r['customer']};{r['date']:%d.%m.%Y};{r['product']};{r['qty']};{_price(r, ',')}"
        ),
        decimal=",",
    )


def tab_separated(truth: pd.DataFrame) -> str:
    return "customer_id\torder_date\tsku\tunits\tunit_price\n" + _lines(
        truth,
        lambda r: (
            f"{r['customer']}\t{r['date']:%Y-%m-%d}\t{r['product']}\t{r['qty']}\t{_price(r, '.')}"
        ),
    )


def plain_csv(truth: pd.DataFrame) -> str:
    return "Invoice,StockCode,Quantity,InvoiceDate,Price,Customer ID\n" + _lines(
        truth,
        lambda r: (
            f"{100 + r.name},{r['product']},{r['qty']},{r['date']:%m/%d/%Y} 10:05,"
            f"{_price(r, '.')},{r['customer']}"
        ),
    )


# file name, writer, the guesses the draft must make, what the amount is
SHAPES = [
    (
        "sales.txt",
        whitespace_no_header,
        ['delimiter: "whitespace"', "header: false", 'timestamp_format: "%d/%m/%Y"'],
        "price",
    ),
    (
        "umsatz.csv",
        semicolon_decimal_comma,
        ['delimiter: ";"', "header: true", 'decimal: ","', 'timestamp_format: "%d.%m.%Y"'],
        "qty*price",
    ),
    (
        "orders.tsv",
        tab_separated,
        ['delimiter: "tab"', "header: true", 'timestamp_format: "%Y-%m-%d"'],
        "qty*price",
    ),
    (
        "export.csv",
        plain_csv,
        ['delimiter: ","', "header: true", 'timestamp_format: "%m/%d/%Y %H:%M"'],
        "qty*price",
    ),
]


@pytest.mark.parametrize(("name", "write", "guesses", "amount"), SHAPES)
def test_draft_ingests_with_exact_accounting(
    tmp_path: Path,
    name: str,
    write: Callable[[pd.DataFrame], str],
    guesses: list[str],
    amount: str,
) -> None:
    truth = _truth()
    path = tmp_path / name
    path.write_text(write(truth))
    draft = draft_dataset(path)
    for guess in guesses:
        assert guess in draft.yaml
    assert draft.warnings == []

    dataset = DatasetConfig.model_validate(yaml.safe_load(draft.yaml))
    out = Workspace(tmp_path / "ws")
    report = ingest(dataset, tmp_path, out)
    assert report["input_rows"] == ROWS
    assert report["accepted_rows"] + report["rejected_rows"] == ROWS
    assert report["rejected_rows"] == 1
    rejects = pd.read_csv(out.rejects)
    header_lines = 0 if name.endswith(".txt") else 1
    assert rejects["row"].tolist() == [7 + 1 + header_lines]  # the file line of row 7

    kept = truth.drop(index=7).reset_index(drop=True)
    rows = pd.read_parquet(out.table("transactions"))
    expected = kept["price"] if amount == "price" else kept["qty"] * kept["price"]
    assert rows["amount"].to_numpy() == pytest.approx(expected.to_numpy())
    assert rows["customer_id"].tolist() == kept["customer"].tolist()
    assert rows["product_id"].tolist() == kept["product"].tolist()
    assert (rows["timestamp"].dt.strftime("%Y-%m-%d") == kept["date"].dt.strftime("%Y-%m-%d")).all()


def test_undecidable_dates_leave_a_todo_and_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("customer,date,amount\nC1,01/02/2021,1.5\nC2,03/04/2021,2.5\n")
    draft = draft_dataset(path)
    assert "# timestamp_format: ?  # TODO" in draft.yaml
    assert any("'01/02/2021' and '03/04/2021'" in w for w in draft.warnings)


def test_latin1_file_is_drafted_with_its_encoding(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_bytes("client,date,total\nJosé,2021-01-05,1.5\nZoë,2021-01-06,2\n".encode("cp1252"))
    draft = draft_dataset(path)
    assert 'encoding: "cp1252"' in draft.yaml
    report = ingest(
        DatasetConfig.model_validate(yaml.safe_load(draft.yaml)), tmp_path, Workspace(tmp_path)
    )
    assert report["accepted_rows"] == 2


def test_delimiter_with_most_even_fields_wins() -> None:
    lines = ["a;b;c", "1;2,5;x", "2;3,5;y"]  # commas split lines unevenly
    assert sniff_delimiter(lines, ",")[0] == ";"
    assert sniff_delimiter(["a b  c", "1 2 3"], ",")[0] == "whitespace"


def test_cli_init_then_ingest(tmp_path: Path) -> None:
    path = tmp_path / "umsatz.csv"
    path.write_text(semicolon_decimal_comma(_truth()))
    out = tmp_path / "umsatz.yaml"
    runner = CliRunner()
    result = runner.invoke(app, ["init", "--from", str(path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    again = runner.invoke(app, ["init", "--from", str(path), "--out", str(out)])
    assert again.exit_code == 2 and "exists" in again.stderr
    result = runner.invoke(
        app, ["--workspace", str(tmp_path / "ws"), "--dataset", str(out), "ingest"]
    )
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert (answer["accepted_rows"], answer["rejected_rows"]) == (ROWS - 1, 1)


def test_cli_init_of_an_empty_file_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("")
    result = CliRunner().invoke(app, ["init", "--from", str(tmp_path / "a.csv")])
    assert result.exit_code == 2
    assert result.stderr == f"error: {tmp_path / 'a.csv'}: the file is empty\n"
