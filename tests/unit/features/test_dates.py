"""Date formats are decided from a whole column, or refused when the column cannot tell."""

from __future__ import annotations

import pandas as pd
import pytest

from features.dates import DateFormatError, guess_date_format


def _format(*values: str) -> str | None:
    guess = guess_date_format(pd.Series(values), "f.csv: column 'd'")
    return guess.format if guess else None


def test_a_late_day_above_12_makes_the_column_day_first() -> None:
    # The first value alone reads month-first; the third one cannot be month-first.
    assert _format("05/01/2021", "06/01/2021", "13/01/2021") == "%d/%m/%Y"


def test_a_second_field_above_12_makes_it_month_first_with_time() -> None:
    assert _format("01/05/2021 10:00", "1/13/2021 9:05") == "%m/%d/%Y %H:%M"


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (("05.01.21", "20.02.21"), "%d.%m.%y"),
        (("2021-01-05 10:00:00", "2021-13-01"), "%Y-%m-%d %H:%M:%S"),
        (("2021-01-05T10:00:00+01:00",), "%Y-%m-%dT%H:%M:%S%z"),
        (("01/01/2021", "02/02/2021"), "%d/%m/%Y"),  # either order gives the same dates
    ],
)
def test_formats(values: tuple[str, ...], expected: str) -> None:
    assert _format(*values) == expected


def test_ambiguous_column_is_refused_with_two_examples() -> None:
    with pytest.raises(DateFormatError) as caught:
        _format("05/01/2021", "03/02/2021", "03/02/2021")
    message = str(caught.value)
    assert message.startswith("f.csv: column 'd': ")
    assert "'05/01/2021' and '03/02/2021'" in message
    assert "timestamp_format" in message


def test_contradictory_column_is_refused() -> None:
    with pytest.raises(DateFormatError, match=r"'13/01/2021'.*'01/13/2021'"):
        _format("13/01/2021", "01/13/2021")


def test_text_dates_are_left_to_pandas() -> None:
    assert guess_date_format(pd.Series(["Jan 5 2021", None]), "f") is None
