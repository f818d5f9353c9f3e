"""Reading one export file into a frame of string columns, with each row's line in the file.

Delimited text (CSV, semicolon, tab, ...) is parsed by pyarrow; whitespace-delimited and
fixed-width files line by line. Files may be gzip-compressed (`.gz`) and in any encoding
Python knows. A file that cannot be read at all (missing, empty, truncated, undecodable, a
row with the wrong number of fields) raises IngestError with a one-line message naming the
file and, where there is one, the line."""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import itertools
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from features.config import TEXT_SUFFIXES, WHITESPACE, ReaderOptions


class IngestError(ValueError):
    """Input that cannot be ingested at all (missing file or column, bad config)."""


@dataclass(frozen=True)
class RawTable:
    """A file's requested columns (text: strings; parquet: as stored) and, for each row,
    where it is: its first line in a text file (lines from 1, the header is a line), its
    row number from 1 in a parquet file."""

    frame: pd.DataFrame
    rows: np.ndarray


def file_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped for `.gz`; IngestError when missing, truncated or corrupt."""
    if not path.exists():
        raise IngestError(f"{path}: file not found")
    data = path.read_bytes()
    if path.suffix.lower() != ".gz":
        return data
    try:
        return gzip.decompress(data)
    except EOFError:
        lines = zlib.decompressobj(wbits=31).decompress(data).count(b"\n")
        raise IngestError(
            f"{path}: truncated gzip file: the compressed data ends in line {lines + 1} "
            "(copy or download the file again)"
        ) from None
    except (gzip.BadGzipFile, zlib.error) as exc:
        raise IngestError(f"{path}: not a valid gzip file ({exc})") from None


def decode(path: Path, data: bytes, encoding: str, first_line: int = 1) -> str:
    """Text of the file (or of a block of it starting at line `first_line`); IngestError
    naming the line and byte when it is not `encoding`."""
    codec = "utf-8-sig" if _is_utf8(encoding) else encoding
    try:
        return data.decode(codec)
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + first_line
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise IngestError(
            f"{path}: line {line}, column {column}: byte 0x{data[exc.start]:02x} is not valid "
            f"{encoding}; set the source's encoding (e.g. encoding: latin-1)"
        ) from None


def _content_lines(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(start offset of every line, indexes from 0 of the lines with a non-blank byte)."""
    arr = np.frombuffer(data, dtype=np.uint8)
    newlines = np.flatnonzero(arr == 10)
    starts = np.concatenate(([0], newlines + 1))
    ends = np.concatenate((newlines, [len(arr)]))
    filled = ends > starts
    has_content = np.zeros(len(starts), dtype=bool)
    if filled.any():
        content = arr > 32  # not a blank or a control character
        # Each segment runs from a filled line to the next: that line, its newline and empty
        # lines, so its maximum says whether the line has content.
        has_content[filled] = np.maximum.reduceat(content, starts[filled]).astype(bool)
    return starts, np.flatnonzero(has_content)


def _record_lines(body: str, delimiter: str, first_line: int) -> np.ndarray:
    """First line of each record of CSV text starting at line `first_line` (records that
    span lines: quoted fields with line breaks), skipping blank lines as pyarrow does."""
    reader = csv.reader(io.StringIO(body, newline=""), delimiter=delimiter)
    lines = []
    previous = 0
    for record in reader:
        if record and not (len(record) == 1 and not record[0].strip()):
            lines.append(first_line + previous)
        previous = reader.line_num
    return np.asarray(lines, dtype=np.int64)


def _line_of(text: str, row_text: str, first_line: int) -> int:
    """The line of `text` (which starts at line `first_line`) holding `row_text`."""
    offset = text.find(row_text)
    return first_line + (text.count("\n", 0, offset) if offset >= 0 else 0)


def _header_names(path: Path, body: bytes, delimiter: str) -> list[str]:
    """Column names in the first record of CSV bytes."""
    try:
        with pacsv.open_csv(
            io.BytesIO(body),
            parse_options=pacsv.ParseOptions(
                delimiter=delimiter, newlines_in_values=True, invalid_row_handler=lambda row: "skip"
            ),
        ) as reader:
            return list(reader.schema.names)
    except pa.ArrowInvalid as exc:
        raise IngestError(f"{path}: {str(exc).splitlines()[0]}") from None


def _delimited(
    path: Path,
    data: bytes,
    options: ReaderOptions,
    delimiter: str,
    columns: list[str] | None,
    line_offset: int = 0,
) -> RawTable:
    """A delimited file parsed by pyarrow; rows located by line (see RawTable). `data` may
    be the header line and a block of the file: `line_offset` is then added to every line."""
    starts, content = _content_lines(data)
    content = content[content >= options.skip_rows]
    if not len(content):
        raise IngestError(f"{path}: the file is empty")
    names = options.column_names
    first = min(options.skip_rows, len(starts) - 1)  # index of the first line given to pyarrow
    if options.header:
        header, content = int(content[0]), content[1:]
        if names:  # the header line is replaced by column_names: pyarrow starts after it
            first = header + 1
    if not len(content):
        raise IngestError(f"{path}: there are no data rows (only a header line)")
    body = data[starts[first] :] if first < len(starts) else b""
    available = names or _header_names(path, body, delimiter)
    check_columns(path, columns or [], available)
    invalid: list[Any] = []

    def on_invalid(row: Any) -> str:
        if row.text.strip():  # a line of blanks is a blank line, not a row
            invalid.append(row)
        return "skip"

    try:
        table = pacsv.read_csv(
            io.BytesIO(body),
            read_options=pacsv.ReadOptions(column_names=names),
            parse_options=pacsv.ParseOptions(
                delimiter=delimiter, newlines_in_values=True, invalid_row_handler=on_invalid
            ),
            convert_options=pacsv.ConvertOptions(
                include_columns=columns,
                column_types=dict.fromkeys(columns or available, pa.string()),
                strings_can_be_null=True,
                quoted_strings_can_be_null=True,
            ),
        )
    except pa.ArrowInvalid as exc:
        raise IngestError(f"{path}: {str(exc).splitlines()[0]}") from None
    if invalid:
        row = invalid[0]
        line = _line_of(body.decode("utf-8"), row.text, first + 1) + line_offset
        raise IngestError(
            f"{path}: line {line}: {row.actual_columns} field(s) where there are "
            f"{row.expected_columns} columns (delimiter {delimiter!r}): {row.text[:80]!r}"
        )
    rows = content + 1
    if len(rows) != table.num_rows:  # records spanning lines: count them as a CSV reader does
        rows = _record_lines(body.decode("utf-8"), delimiter, first + 1)
        rows = rows[1:] if options.header and not names else rows
        if len(rows) != table.num_rows:
            raise IngestError(f"{path}: cannot tell the line of each row of the file")
    return RawTable(table.to_pandas(types_mapper=arrow_strings), rows + line_offset)


def _split_lines(path: Path, text: str, options: ReaderOptions) -> RawTable:
    """A whitespace-delimited or fixed-width file, line by line (see RawTable)."""
    widths = options.widths or []
    edges = np.cumsum([0, *widths]).tolist()
    spans = list(itertools.pairwise(edges))
    kind = "fixed widths" if widths else "whitespace-delimited"

    def split(line: str, number: int) -> list[str]:
        if not widths:
            return line.split()
        beyond = line[edges[-1] :].strip()
        if beyond:
            raise IngestError(
                f"{path}: line {number}: text beyond the last column (the widths add up to "
                f"{edges[-1]} characters): {beyond[:40]!r}"
            )
        return [line[start:end].strip() for start, end in spans]

    names = options.column_names
    header_pending = options.header
    records: list[list[str]] = []
    rows: list[int] = []
    for number, line in enumerate(text.split("\n"), start=1):
        if number <= options.skip_rows or not line.strip():
            continue
        fields = split(line.rstrip("\r"), number)
        if header_pending:
            header_pending = False
            names = names or fields
            continue
        if len(fields) != len(names or ()):
            raise IngestError(
                f"{path}: line {number}: {len(fields)} field(s) where there are "
                f"{len(names or ())} columns ({kind})"
            )
        records.append(fields)
        rows.append(number)
    if names is None or (not options.header and not records):
        raise IngestError(f"{path}: the file is empty")
    if not records:
        raise IngestError(f"{path}: there are no data rows (only a header line)")
    frame = pd.DataFrame(records, columns=names, dtype="string[pyarrow]").replace("", pd.NA)
    return RawTable(frame, np.asarray(rows, dtype=np.int64))


def is_text(path: Path) -> bool:
    """A file read as delimited or fixed-width text (by its name)."""
    return "".join(path.suffixes[-2:]).lower().endswith(TEXT_SUFFIXES)


def default_delimiter(path: Path) -> str:
    """Tab for .tsv files, a comma otherwise."""
    return "\t" if ".tsv" in [s.lower() for s in path.suffixes[-2:]] else ","


def read_raw(path: Path, columns: list[str] | None, options: ReaderOptions) -> RawTable:
    """Read the given columns (None: all) of a text or parquet file; text values as strings.

    Raises IngestError, naming the file (and the line where there is one), for a file that
    is missing, empty, has no data rows, is truncated or undecodable, lacks a column, or has a
    row with the wrong number of fields."""
    if path.suffix.lower() == ".parquet":
        if not path.exists():
            raise IngestError(f"{path}: file not found")
        available = pq.read_schema(path).names
        check_columns(path, columns or available, available)
        table = pq.read_table(path, columns=columns)
        if table.num_rows == 0:
            raise IngestError(f"{path}: there are no data rows")
        frame = table.to_pandas(types_mapper=arrow_strings)
        return RawTable(frame, np.arange(1, len(frame) + 1, dtype=np.int64))
    if not is_text(path):
        raise IngestError(
            f"{path}: unsupported file type (expected .csv, .tsv, .txt, .dat (optionally .gz) "
            "or .parquet)"
        )
    data = file_bytes(path)
    text = decode(path, data, options.encoding)
    delimiter = options.delimiter or default_delimiter(path)
    if options.widths or delimiter == WHITESPACE:
        raw = _split_lines(path, text, options)
        check_columns(path, columns or [], list(raw.frame.columns))
        return RawTable(raw.frame[columns] if columns else raw.frame, raw.rows)
    if not _is_utf8(options.encoding):
        data = text.encode("utf-8")
    elif data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    return _delimited(path, data, options, delimiter, columns)


# Text files are read in blocks of about this many bytes (cut at the end of a record).
CHUNK_BYTES = 64 * 1024 * 1024
# Parquet files are read in batches of this many rows.
PARQUET_BATCH_ROWS = 1_000_000


def read_chunks(
    path: Path, columns: list[str] | None, options: ReaderOptions, chunk_bytes: int = CHUNK_BYTES
) -> Iterator[RawTable]:
    """`read_raw` of a file in pieces, in file order, each with the rows' true lines: a
    parquet file by row batches, an uncompressed UTF-8 delimited file with a header by blocks
    of about `chunk_bytes` cut at the end of a record (a line break outside quotes). Other
    files (gzip, other encodings, fixed widths, no header, skipped lines) come whole."""
    if path.suffix.lower() == ".parquet":
        yield from _parquet_batches(path, columns)
        return
    delimiter = options.delimiter or default_delimiter(path)
    streamable = (
        is_text(path)
        and path.suffix.lower() != ".gz"
        and _is_utf8(options.encoding)
        and options.header
        and not options.column_names
        and not options.skip_rows
        and not options.widths
        and delimiter != WHITESPACE
    )
    if not streamable or not path.exists() or path.stat().st_size <= chunk_bytes:
        yield read_raw(path, columns, options)
        return
    header, first = b"", b""  # the first piece holds the header and at least one row
    for block, first_line in _blocks(path, chunk_bytes):
        decode(path, block, options.encoding, first_line)
        if header:
            if block.strip():
                # The header line, then the block: its first line is line 2 of what is parsed.
                yield _delimited(path, header + block, options, delimiter, columns, first_line - 2)
            continue
        first += block.removeprefix(codecs.BOM_UTF8) if first_line == 1 else block
        if len(_content_lines(first)[1]) >= 2:
            header = _header_line(first)
            yield _delimited(path, first, options, delimiter, columns)
    if not header:  # a header and no row: the error of reading it whole
        yield _delimited(path, first, options, delimiter, columns)


def _parquet_batches(path: Path, columns: list[str] | None) -> Iterator[RawTable]:
    if not path.exists():
        raise IngestError(f"{path}: file not found")
    file = pq.ParquetFile(path)
    available = file.schema_arrow.names
    check_columns(path, columns or available, available)
    if file.metadata.num_rows == 0:
        raise IngestError(f"{path}: there are no data rows")
    start = 1
    for batch in file.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=columns):
        frame = batch.to_pandas(types_mapper=arrow_strings)
        yield RawTable(frame, np.arange(start, start + len(frame), dtype=np.int64))
        start += len(frame)


def _header_line(block: bytes) -> bytes:
    """The first line with content of the file's first block, with its line break."""
    for line in block.splitlines(keepends=True):
        if line.strip():
            return line if line.endswith(b"\n") else line + b"\n"
    return b""


def _blocks(path: Path, size: int) -> Iterator[tuple[bytes, int]]:
    """The file in blocks of about `size` bytes, each ending at a line break outside quotes
    (so that no record is cut), with the line number of each block's first line."""
    line = 1
    carry = b""
    with path.open("rb") as handle:
        while True:
            data = handle.read(size)
            buffer = carry + data
            if not data:
                if buffer:
                    yield buffer, line
                return
            cut = _record_end(buffer)
            if cut <= 0:
                carry = buffer
                continue
            block, carry = buffer[:cut], buffer[cut:]
            yield block, line
            line += block.count(b"\n")


def _record_end(data: bytes) -> int:
    """Index after the last line break of `data` outside double quotes (0: none). A quote
    inside a quoted field is doubled, so an even count of quotes before a line break means
    it ends a record."""
    arr = np.frombuffer(data, dtype=np.uint8)
    newlines = np.flatnonzero(arr == 10)
    if not len(newlines):
        return 0
    # Quotes before each line break, by searching the (few) quotes' positions: a running
    # count over every byte would be an int64 array 8x the block.
    quotes_before = np.searchsorted(np.flatnonzero(arr == 34), newlines)
    outside = newlines[quotes_before % 2 == 0]
    return int(outside[-1]) + 1 if len(outside) else 0


def _is_utf8(encoding: str) -> bool:
    return codecs.lookup(encoding).name == "utf-8"


def check_columns(path: Path, wanted: list[str], available: list[str]) -> None:
    """IngestError naming the file and the columns it lacks."""
    missing = [c for c in wanted if c not in available]
    if missing:
        raise IngestError(
            f"{path}: column(s) {missing} named in the dataset config are not in the file; "
            f"its columns are {available}"
        )


def arrow_strings(dtype: pa.DataType) -> Any:
    """pandas' pyarrow-backed string dtype for arrow strings (a `types_mapper`)."""
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        return pd.StringDtype("pyarrow")
    return None
