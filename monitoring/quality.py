"""Data-quality checks of current data against the reference, on all rows, with pandas.

Each feature gets a profile (type, missing shares, distinct values, unseen categories) and a
list of issues; an issue is something a person must look at: a column that is missing,
empty, constant or unparseable now but was fine in the reference, a missing share that rose,
categories never seen in training. Nothing here raises on odd data: odd data is the finding."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import pandas as pd

from features.names import ALL_FEATURES
from monitoring.config import QualityParams

ColumnKind = Literal["numerical", "categorical"]
# Issues that mean the column is broken (rather than shifted): they can raise an alarm alone.
BROKEN = ("missing_column", "empty", "constant", "not_numeric")
EXAMPLES = 5
MISSING_COLUMN = "missing_column: not in the current data"


def column_kind(name: str, reference: pd.Series) -> ColumnKind:
    """Numerical or categorical: the feature's declared type (features.names), else the
    reference column's dtype."""
    declared = ALL_FEATURES.get(name)
    if declared is not None:
        return "categorical" if declared.dtype == "string" else "numerical"
    numeric = pd.api.types.is_numeric_dtype(reference) and not pd.api.types.is_bool_dtype(reference)
    return "numerical" if numeric else "categorical"


@dataclass
class ColumnProfile:
    """What the checks found for one feature."""

    name: str
    kind: ColumnKind
    present: bool
    missing_reference: float
    missing_current: float
    distinct_reference: int
    distinct_current: int
    unseen_share: float = 0.0
    unseen_examples: list[str] = field(default_factory=list)
    not_numeric: int = 0
    issues: list[str] = field(default_factory=list)

    @property
    def testable(self) -> bool:
        """A drift test needs values on both sides."""
        return (
            self.present
            and self.missing_reference < 1.0
            and self.missing_current < 1.0
            and self.distinct_reference > 0
            and self.distinct_current > 0
        )

    @property
    def broken(self) -> bool:
        """An issue that means the column is broken now."""
        return any(i.split(":")[0] in BROKEN for i in self.issues)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "kind": self.kind,
            "present": self.present,
            "missing_reference": round(self.missing_reference, 4),
            "missing_current": round(self.missing_current, 4),
            "distinct_reference": self.distinct_reference,
            "distinct_current": self.distinct_current,
            "unseen_share": round(self.unseen_share, 4),
            "unseen_examples": self.unseen_examples,
            "issues": self.issues,
        }


def as_numeric(column: pd.Series) -> tuple[pd.Series, int]:
    """Float values of a column and how many non-missing values could not be parsed."""
    if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
        return column.astype("float64"), 0
    parsed = pd.to_numeric(column, errors="coerce").astype("float64")
    return parsed, int((parsed.isna() & column.notna()).sum())


def as_categorical(column: pd.Series) -> pd.Series:
    """Categories as strings (missing stays missing)."""
    return column.astype("string")


def profile_column(
    name: str, reference: pd.Series, current: pd.Series | None, params: QualityParams
) -> ColumnProfile:
    """Profile one feature and list its issues. `current` is None when the column is absent."""
    kind = column_kind(name, reference)
    ref = as_numeric(reference)[0] if kind == "numerical" else as_categorical(reference)
    ref_missing = float(ref.isna().mean()) if len(ref) else 1.0
    ref_distinct = int(ref.nunique(dropna=True))
    if current is None:
        return ColumnProfile(
            name,
            kind,
            False,
            ref_missing,
            1.0,
            ref_distinct,
            0,
            issues=["missing_column: not in the current data"],
        )
    bad = 0
    if kind == "numerical":
        cur, bad = as_numeric(current)
    else:
        cur = as_categorical(current)
    cur_missing = float(cur.isna().mean()) if len(cur) else 1.0
    prof = ColumnProfile(
        name, kind, True, ref_missing, cur_missing, ref_distinct, int(cur.nunique(dropna=True))
    )
    prof.not_numeric = bad
    if bad:
        prof.issues.append(f"not_numeric: {bad} values are not numbers")
    if cur_missing == 1.0 and ref_missing < 1.0:
        prof.issues.append("empty: every value is missing now")
    elif prof.distinct_current == 1 and ref_distinct > 1:
        prof.issues.append("constant: a single value now")
    rise = cur_missing - ref_missing
    if rise > params.max_missing_increase and cur_missing < 1.0:
        prof.issues.append(
            f"missing_increase: missing share {ref_missing:.1%} -> {cur_missing:.1%}"
        )
    if kind == "categorical" and ref_distinct > 0:
        known = set(ref.dropna().unique())
        values = cur.dropna()
        unseen = values[~values.isin(known)]
        prof.unseen_share = float(len(unseen) / len(cur)) if len(cur) else 0.0
        prof.unseen_examples = [str(v) for v in unseen.value_counts().index[:EXAMPLES]]
        if prof.unseen_share > params.max_unseen_share:
            prof.issues.append(
                f"unseen_categories: {prof.unseen_share:.1%} of rows have categories not seen "
                f"in the reference ({', '.join(prof.unseen_examples)})"
            )
    return prof


def profile_columns(
    reference: pd.DataFrame, current: pd.DataFrame, columns: list[str], params: QualityParams
) -> dict[str, ColumnProfile]:
    """Profiles of every listed column (all rows of both sides)."""
    return {
        name: profile_column(name, reference[name], current.get(name), params) for name in columns
    }


def typed_frame(frame: pd.DataFrame, profiles: dict[str, ColumnProfile]) -> pd.DataFrame:
    """The testable columns with the types the profiles chose (numbers as float, categories
    as strings), for Evidently."""
    out = {}
    for name, prof in profiles.items():
        if not prof.testable:
            continue
        out[name] = (
            as_numeric(frame[name])[0] if prof.kind == "numerical" else as_categorical(frame[name])
        )
    return pd.DataFrame(out, index=frame.index)
