"""The format of a column of date-time texts, decided from every value of the column.

A date like 05/01/2021 is the 5th of January day-first and the 1st of May month-first. Reading
one value cannot tell; the whole column can: a value whose first field is above 12 makes the
column day-first, one whose second field is above 12 makes it month-first. A column with no
such value (and some value whose two fields differ) is ambiguous and refused, as is a column
with evidence both ways."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pandas as pd
from pandas.tseries.api import guess_datetime_format

# A leading date: three numeric fields with one separator, e.g. 05/01/2021, 2021-01-05, 5.1.21.
DATE_START = r"^\s*(\d{1,4})([./-])(\d{1,2})[./-](\d{1,4})(?!\d)"


class DateFormatError(ValueError):
    """A date column whose format cannot be decided (ambiguous or contradictory)."""


@dataclass(frozen=True)
class DateGuess:
    """A column's date-time format (strftime; None: leave it to pandas) and why, in words."""

    format: str | None
    reason: str


def _time_part(value: str, end: int) -> str | None:
    """strftime format of what follows the date in `value` ('' when nothing), None if unknown."""
    rest = value[end:]
    if not rest.strip():
        return ""
    guessed = guess_datetime_format(f"2001-02-03{rest}")
    if guessed is None or not guessed.startswith("%Y-%m-%d"):
        return None
    return guessed[len("%Y-%m-%d") :]


def _format_of(value: str, day_first: bool) -> str | None:
    """strftime format of one date-time text whose day/month order is known."""
    match = re.match(DATE_START, value)
    if match is None:
        return None
    first, sep, _, year = match.groups()
    time = _time_part(value, match.end())
    if time is None:
        return None
    if len(first) == 4:
        return f"%Y{sep}%m{sep}%d{time}"
    order = ("%d", "%m") if day_first else ("%m", "%d")
    return f"{order[0]}{sep}{order[1]}{sep}{'%Y' if len(year) == 4 else '%y'}{time}"


def guess_date_format(values: pd.Series, where: str) -> DateGuess | None:
    """Decide the format of a column of date-time texts from all its values.

    Returns None when no value starts with a numeric date (e.g. 'Jan 5 2021': pandas reads
    those). Raises DateFormatError, naming `where` (file and column) and two example values,
    when the day/month order is ambiguous or contradictory."""
    distinct = pd.Series(values.dropna().astype(str).unique(), dtype=object)
    fields = distinct.str.extract(DATE_START)
    matched = fields[0].notna()
    if not matched.any():
        return None
    texts = distinct[matched]
    fields = fields[matched]
    year_first = fields[0].str.len() == 4
    if year_first.sum() * 2 >= len(fields):
        texts, style = texts[year_first], "year first"
        day_first = False
    else:
        texts, fields = texts[~year_first], fields[~year_first]
        first, second = fields[0].astype(int), fields[2].astype(int)
        day_evidence = texts[(first > 12) & (first <= 31) & (second <= 12)]
        month_evidence = texts[(second > 12) & (second <= 31) & (first <= 12)]
        if len(day_evidence) and len(month_evidence):
            raise DateFormatError(
                f"{where}: dates are both day-first (e.g. {day_evidence.iloc[0]!r}) and "
                f"month-first (e.g. {month_evidence.iloc[0]!r}); set timestamp_format"
            )
        if len(day_evidence) or len(month_evidence):
            day_first = bool(len(day_evidence))
            example = (day_evidence if day_first else month_evidence).iloc[0]
            style = (
                f"{'day' if day_first else 'month'} first: {example!r} has a "
                f"{'first' if day_first else 'second'} field above 12"
            )
        else:
            ambiguous = texts[first != second]
            if len(ambiguous):
                examples = [*ambiguous.iloc[:2], *texts[first == second].iloc[:1]][:2]
                raise DateFormatError(
                    f"{where}: dates such as {' and '.join(repr(e) for e in examples)} can be "
                    "day-first or month-first (no day above 12 in any of "
                    f"{len(texts)} distinct values); set timestamp_format "
                    "(e.g. '%d/%m/%Y' or '%m/%d/%Y')"
                )
            day_first, style = True, "day and month equal in every value"
    # The format of the most common shape (digits as 9), so odd values do not decide it.
    shapes = texts.str.replace(r"\d", "9", regex=True)
    sample = texts[shapes == shapes.value_counts().index[0]].iloc[0]
    fmt = _format_of(sample, day_first)
    if fmt is None and style != "year first":
        raise DateFormatError(
            f"{where}: cannot tell the format of dates like {sample!r}; set timestamp_format"
        )
    return DateGuess(fmt, f"{style}; format of {sample!r}, {len(texts)} distinct values")
