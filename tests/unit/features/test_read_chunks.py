"""Reading an export in pieces gives the rows, values and lines of reading it whole (#11)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from features.config import ReaderOptions
from features.readers import IngestError, read_chunks, read_raw


def _text(rows: int) -> str:
    lines = ["id,note,amount"]
    for i in range(rows):
        note = f'"two\nlines, {i}"' if i % 7 == 0 else f'"say ""hi"" {i}"' if i % 5 == 0 else "x"
        lines.append(f"c{i},{note},{i}.5")
        if i % 11 == 0:
            lines.append("")  # blank lines are skipped, and still counted as lines
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("size", [40, 97, 1024])
def test_pieces_have_the_rows_and_lines_of_the_whole_file(tmp_path: Path, size: int) -> None:
    path = tmp_path / "a.csv"
    path.write_text(_text(300))
    whole = read_raw(path, ["id", "note", "amount"], ReaderOptions())
    pieces = list(read_chunks(path, ["id", "note", "amount"], ReaderOptions(), size))
    assert len(pieces) > 1
    frame = pd.concat([p.frame for p in pieces], ignore_index=True)
    pd.testing.assert_frame_equal(frame, whole.frame)
    assert [r for p in pieces for r in p.rows] == whole.rows.tolist()


def test_a_bad_row_in_a_later_piece_names_its_line_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    text = _text(300)
    lines = text.splitlines()
    at = max(k for k, line in enumerate(lines) if ",x," in line)
    lines[at] += ",extra"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(IngestError) as whole:
        read_raw(path, None, ReaderOptions())
    with pytest.raises(IngestError) as pieces:
        list(read_chunks(path, None, ReaderOptions(), 200))
    assert str(pieces.value) == str(whole.value)
    assert f"line {at + 1}:" in str(pieces.value)
