"""`crmscore init`: guess how to read a transactions export and draft its dataset YAML.

The sniffer looks at the file's bytes (encoding), its first lines (delimiter, header) and
then every value of every column (types, decimal comma, the date format decided from the
whole column) and guesses which columns are the customer id, the date, the amount (or a
quantity and a unit price) and the product. The draft says what each guess rests on, in a
comment, so that a person can check it before ingesting."""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from features.config import WHITESPACE, ReaderOptions
from features.contract import CUSTOMER_ATTRIBUTES
from features.dates import DATE_START, DateFormatError, DateGuess, guess_date_format
from features.readers import IngestError, decode, default_delimiter, file_bytes, read_raw

DELIMITERS = (",", ";", "\t", "|")
SAMPLE_LINES = 200
# Share of a column's values that must read as numbers (dates) for it to be numeric (dates).
TYPE_SHARE = 0.98

# Canonical column -> words its source column's name contains (lower case, no separators).
ROLE_WORDS: dict[str, str] = {
    "timestamp": r"date|time|day|datum|fecha|when",
    "customer_id": r"cust|client|member|household|shopper|buyer|user|account|contact|kunde",
    "amount": r"amount|revenue|sales|total|spend|value|net|sum|betrag|importe|montant",
    "quantity": r"qty|quantity|units|count|menge|anzahl|cantidad",
    "unit_price": r"price|rate|preis|precio|prix",
    "order_id": r"order|invoice|basket|receipt|ticket|bill|transaction|bestell|rechnung",
    "product_id": r"product|sku|item|article|stock|artikel|code",
    "category": r"categ|dept|department|family|group|kategorie",
}
# Which kinds of column can play each role.
ROLE_KINDS: dict[str, tuple[str, ...]] = {
    "timestamp": ("date",),
    "customer_id": ("text", "integer", "number"),
    "amount": ("number", "integer"),
    "quantity": ("integer", "number"),
    "unit_price": ("number", "integer"),
    "order_id": ("text", "integer"),
    "product_id": ("text", "integer"),
    "category": ("text",),
}


@dataclass(frozen=True)
class Column:
    """What a column's values look like: its kind (text, integer, number, date, time, empty), the
    number of distinct values and, for dates, the decided format or why it is undecided."""

    name: str
    kind: str
    distinct: int
    date: DateGuess | None = None
    date_error: str | None = None


@dataclass(frozen=True)
class Draft:
    """A draft dataset YAML and the warnings to show (guesses that failed)."""

    yaml: str
    warnings: list[str]


def sniff_encoding(data: bytes) -> tuple[str, str]:
    """(encoding, why): UTF-8 when the bytes decode as UTF-8, else cp1252, else latin-1."""
    for encoding in ("utf-8", "cp1252"):
        try:
            data.decode(encoding)
        except UnicodeDecodeError:
            continue
        return encoding, f"the bytes are valid {encoding}"
    return "latin-1", "the bytes are neither UTF-8 nor cp1252"


def _field_counts(lines: list[str], delimiter: str) -> list[int]:
    if delimiter == WHITESPACE:
        return [len(line.split()) for line in lines]
    return [len(r) for r in csv.reader(io.StringIO("\n".join(lines)), delimiter=delimiter)]


def sniff_delimiter(lines: list[str], fallback: str) -> tuple[str, str]:
    """(delimiter, why) from sample lines: the candidate that splits every line into the
    same number (> 1) of fields, the most fields winning; else runs of whitespace; else
    `fallback`."""
    best: tuple[int, str] | None = None
    for candidate in DELIMITERS:
        counts = set(_field_counts(lines, candidate))
        if len(counts) == 1 and min(counts) > 1 and (best is None or min(counts) > best[0]):
            best = (min(counts), candidate)
    if best is not None:
        return best[1], f"splits each of {len(lines)} sampled lines into {best[0]} fields"
    counts = set(_field_counts(lines, WHITESPACE))
    if len(counts) == 1 and min(counts) > 1:
        return WHITESPACE, f"runs of blanks split each sampled line into {min(counts)} fields"
    return fallback, "no delimiter splits the sampled lines evenly: the default, check it"


def _looks_like_value(text: str) -> bool:
    """A number or a date (a header line has neither)."""
    plain = text.strip().replace(",", ".")
    return bool(re.match(r"^[-+]?\d*\.?\d+$", plain) or re.match(DATE_START, text))


def sniff_header(first: list[str]) -> tuple[bool, str]:
    """(header?, why): a first line without any number or date names the columns."""
    values = [f for f in first if _looks_like_value(f)]
    if values:
        return False, f"the first line has numbers or dates ({values[0]!r})"
    return True, "the first line has no number or date"


def sniff_decimal(frame: pd.DataFrame, delimiter: str) -> tuple[str, str]:
    """(decimal mark, why): a comma when some values read like '12,50' and none like '12.50'."""
    if delimiter == ",":
        return ".", "the delimiter is a comma"
    comma = dot = 0
    example = ""
    for column in frame.columns:
        values = frame[column].dropna().astype(str)
        commas = values[values.str.fullmatch(r"[-+]?\d+,\d+")]
        comma += len(commas)
        dot += int(values.str.fullmatch(r"[-+]?\d+\.\d+").sum())
        example = example or (commas.iloc[0] if len(commas) else "")
    if comma and not dot:
        return ",", f"numbers are written like {example!r}"
    return ".", "no number is written with a decimal comma"


def column_kind(values: pd.Series, name: str, decimal: str, where: str) -> Column:
    """The kind of one column from all its values (see Column)."""
    values = values.dropna().astype(str)
    values = values[values.str.strip() != ""]
    distinct = int(values.nunique())
    if not len(values):
        return Column(name, "empty", 0)
    if values.str.match(DATE_START).mean() >= TYPE_SHARE:
        try:
            guess = guess_date_format(values, f"{where}: column {name!r}")
        except DateFormatError as exc:
            return Column(name, "date", distinct, date_error=str(exc))
        fmt = guess.format if guess else None
        parsed = pd.to_datetime(values, format=fmt, errors="coerce")
        if parsed.notna().mean() >= TYPE_SHARE:
            return Column(name, "date", distinct, date=guess)
    if values.str.fullmatch(r"\d{1,2}:\d{2}(:\d{2})?").mean() >= TYPE_SHARE:
        return Column(name, "time", distinct)  # a time of day split from its date
    numbers = pd.to_numeric(values.str.replace(decimal, ".", regex=False), errors="coerce")
    if numbers.notna().mean() >= TYPE_SHARE:
        whole = bool((numbers.dropna() == numbers.dropna().round()).all())
        integral = whole and not values.str.contains(re.escape(decimal), regex=True).any()
        return Column(name, "integer" if integral else "number", distinct)
    return Column(name, "text", distinct)


def _normal(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def guess_roles(columns: list[Column], named: bool, rows: int) -> dict[str, tuple[str, str]]:
    """Canonical column -> (source column, why), by the columns' names (when the file has
    a header) and kinds; customer attributes by their exact name."""
    roles: dict[str, tuple[str, str]] = {}
    used: set[str] = set()

    def take(role: str, column: Column, why: str) -> None:
        roles[role] = (column.name, why)
        used.add(column.name)

    if named:
        for role, words in ROLE_WORDS.items():
            for column in columns:
                if (
                    column.name not in used
                    and column.kind in ROLE_KINDS[role]
                    and re.search(words, _normal(column.name))
                ):
                    take(role, column, f"its name, {column.kind} values")
                    break
        for column in columns:
            if column.name not in used and _normal(column.name) in CUSTOMER_ATTRIBUTES:
                take(_normal(column.name), column, "its name: a customer attribute")
    free = [c for c in columns if c.name not in used]
    repeated = [c for c in free if c.kind in ("text", "integer") and 1 < c.distinct < rows]
    if "timestamp" not in roles:
        dates = [c for c in free if c.kind == "date"]
        if dates:
            take("timestamp", dates[0], "the first date column")
    if "customer_id" not in roles and repeated:
        take("customer_id", repeated[0], "the first text or integer column with repeated values")
    free = [c for c in columns if c.name not in used]
    if "amount" not in roles and not {"quantity", "unit_price"} <= set(roles):
        numbers = [c for c in free if c.kind == "number"]
        if numbers:
            take(
                "amount",
                numbers[-1],
                "the last column of decimal numbers (a unit price? then map it as unit_price, "
                "map quantity and derive amount: quantity * unit_price)",
            )
    texts = [c for c in free if c.kind == "text" and 1 < c.distinct < rows and c.name not in used]
    if not named and "product_id" not in roles and texts:
        take("product_id", texts[0], "a text column with repeated values")
    return roles


def _q(text: str) -> str:
    """A YAML double-quoted scalar (JSON strings are valid YAML)."""
    return json.dumps(text, ensure_ascii=False)


def _delimiter_yaml(delimiter: str) -> str:
    return _q("tab" if delimiter == "\t" else delimiter)


def _sample_lines(text: str) -> list[str]:
    lines = [line.rstrip("\r") for line in text.split("\n", 10 * SAMPLE_LINES)]
    return [line for line in lines[: 10 * SAMPLE_LINES] if line.strip()][:SAMPLE_LINES]


def draft_dataset(path: Path, name: str | None = None) -> Draft:
    """Sniff a transactions export and draft the dataset YAML that reads it.

    Raises IngestError when the file cannot be read (missing, empty, corrupt)."""
    path = path.resolve()
    warnings: list[str] = []
    lines = [f"# Draft dataset config written by `crmscore init` from {path}."]
    lines.append("# The guesses (comments) need a check; then: crmscore --dataset THIS.yaml ingest")
    source: list[str] = [f"      - path: {_q(str(path))}"]
    if path.suffix.lower() == ".parquet":
        frame = read_raw(path, None, ReaderOptions()).frame.astype("string")
        named, delimiter, decimal = True, ",", "."
    else:
        data = file_bytes(path)
        encoding, why_encoding = sniff_encoding(data)
        sample = _sample_lines(decode(path, data, encoding))
        if not sample:
            raise IngestError(f"{path}: the file is empty")
        delimiter, why_delimiter = sniff_delimiter(sample, default_delimiter(path))
        first = (
            sample[0].split()
            if delimiter == WHITESPACE
            else next(csv.reader([sample[0]], delimiter=delimiter))
        )
        named, why_header = sniff_header(first)
        names = None if named else [f"column_{i + 1}" for i in range(len(first))]
        options = ReaderOptions(
            delimiter=delimiter, header=named, column_names=names, encoding=encoding
        )
        frame = read_raw(path, None, options).frame
        decimal, why_decimal = sniff_decimal(frame, delimiter)
        source += [
            f"        delimiter: {_delimiter_yaml(delimiter)}  # guessed: {why_delimiter}",
            f"        header: {'true' if named else 'false'}  # guessed: {why_header}",
        ]
        if names:
            source.append(f"        column_names: [{', '.join(_q(n) for n in names)}]")
        source.append(f"        encoding: {_q(encoding)}  # guessed: {why_encoding}")
        if decimal != ".":
            source.append(f"        decimal: {_q(decimal)}  # guessed: {why_decimal}")
    columns = [column_kind(frame[c], c, decimal, str(path)) for c in frame.columns]
    roles = guess_roles(columns, named, len(frame))
    lines.append(
        f"# {len(frame)} data rows; columns: "
        + ", ".join(f"{c.name} ({c.kind}, {c.distinct} distinct)" for c in columns)
    )
    source.append("        columns:")
    for role, (column_name, why) in roles.items():
        source.append(f"          {role}: {_q(column_name)}  # guessed from {why}")
    derive = "amount" not in roles and {"quantity", "unit_price"} <= set(roles)
    for role in ("customer_id", "timestamp"):
        if role not in roles:
            source.append(f"          # {role}: ?  # TODO: no column looks like it")
            warnings.append(f"no column looks like the {role}: set columns.{role}")
    if "amount" not in roles and not derive:
        source.append("          # amount: ?  # TODO: no column looks like it")
        warnings.append("no column looks like the amount: set columns.amount (or derive it)")
    unused = [c.name for c in columns if c.name not in {v[0] for v in roles.values()}]
    if unused:
        source.append(f"          # not mapped: {', '.join(unused)}")

    table = ["    sources:", *source]
    date_column = next((c for c in columns if c.name == roles.get("timestamp", ("",))[0]), None)
    if date_column is not None and date_column.date_error:
        table.append(f"    # timestamp_format: ?  # TODO: {date_column.date_error}")
        warnings.append(date_column.date_error)
    elif date_column is not None and date_column.date and date_column.date.format:
        table.append(
            f"    timestamp_format: {_q(date_column.date.format)}  "
            f"# decided from the whole column: {date_column.date.reason}"
        )
    if derive:
        table += ["    derive:", "      amount: quantity * unit_price  # guessed: no amount column"]
    attributes = [r for r in roles if r in CUSTOMER_ATTRIBUTES]
    if attributes:
        table.append(f"    customer_attributes: [{', '.join(attributes)}]")
    stem = re.sub(r"[^a-z0-9]+", "_", path.name.split(".")[0].lower()).strip("_") or "my_data"
    lines += [
        f"name: {_q(name or stem)}",
        "timezone: UTC  # the time zone of the timestamps: set yours (e.g. Europe/Berlin)",
        "# currency: EUR  # ISO code of the amounts: CLV and expected values are in it",
        "tables:",
        "  transactions:",
        *table,
    ]
    return Draft("\n".join(lines) + "\n", warnings)
