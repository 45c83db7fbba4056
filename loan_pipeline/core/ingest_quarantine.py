"""The row rules and the quarantine: every rule each record breaks, the records set aside, and
the quarantine table as stored.

A record breaks a rule when one of its cells could not be typed (``ingest_records``), it has the
wrong number of fields, it repeats an id seen on an earlier line, or it fails a per-row rule of
the ``LoanBook`` schema (a blank required field, out of range, an unknown category,
outstanding above the loan amount). Such a record is set aside with its line, column, rule,
reason and original values; the other records go on, cast to the loan book's strict dtypes.
Whether the file as a whole passes is ``ingest_verdict``'s.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd

from loan_pipeline.core.ingest_records import ISSUE_COLUMNS, ReadResult
from loan_pipeline.schemas import (
    FLOAT_COLUMNS,
    INT_COLUMNS,
    LOAN_BOOK_COLUMNS,
    TEXT_COLUMNS,
    TEXT_DTYPE,
    row_rules_schema,
)

ID_COLUMNS = ["Borrower_ID", "Loan_ID"]


@dataclass
class SplitResult:
    """The rows that passed every rule, and what was set aside."""

    valid: pd.DataFrame  # strict dtypes, the 21 loan-book columns
    issues: pd.DataFrame  # ISSUE_COLUMNS, one row per broken rule
    quarantined_lines: np.ndarray
    records: int

    @property
    def quarantined(self) -> int:
        return len(self.quarantined_lines)

    @property
    def share(self) -> float:
        return self.quarantined / self.records if self.records else 0.0


# --- the rules each record breaks -------------------------------------------------------------


def _missing(value: object) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value))


def _reason(column: str, rule: str, value: object) -> str:
    if rule == "not_nullable":
        return f"{column} is blank (a required field)"
    if rule.startswith("isin("):
        return f"{column} {value!r} is not an allowed value"
    if rule == "outstanding_within_loan":
        return "Outstanding_Loan_Amount is larger than Loan_Amount"
    return f"{column} {value!r} breaks {rule}"


def _repeats(ids: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(which rows repeat an id seen on an earlier row, the position of that earlier row for
    each of them); a missing id is never a repeat. One hashing pass over the column.

    ``pd.factorize`` numbers the ids in order of first appearance (missing: -1), so a row is a
    first occurrence exactly when its code is higher than every code before it.
    """
    codes, _ = pd.factorize(ids)
    codes = np.asarray(codes, dtype=np.int64)
    before = np.empty_like(codes)  # the highest code on an earlier row
    if len(codes):
        before[0] = -1
        np.maximum.accumulate(codes[:-1], out=before[1:])
    repeat = (codes >= 0) & (codes <= before)
    firsts = np.flatnonzero((codes >= 0) & ~repeat)  # firsts[k]: where id number k first appears
    return repeat, firsts[codes[repeat]]


def repeat_issues(lines: np.ndarray, ids: pd.Series, column: str) -> pd.DataFrame | None:
    """The ``unique`` issues of one id column: each row (in the order given, with these lines)
    that repeats an id seen on an earlier row; None when there is none."""
    dup, first = _repeats(ids)
    if not dup.any():
        return None
    return pd.DataFrame(
        {
            "source_line": lines[dup],
            "column": column,
            "rule": "unique",
            "reason": [f"duplicate {column}: first seen on line {f}" for f in lines[first]],
            "value": ids[dup].astype(object).to_numpy(),
        },
        columns=ISSUE_COLUMNS,
    )


def find_row_issues(read: ReadResult, repeats: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every rule each record breaks: parse issues, wrong field counts, duplicate ids, and the
    LoanBook schema's per-row rules (nulls, ranges, categories, cross-column).

    ``repeats``: the duplicate-id issues of these rows, found elsewhere (``read`` is one block
    of a file whose ids were compared across blocks), instead of among ``read``'s rows alone.
    """
    df = read.frame
    found = [read.issues]
    if len(read.malformed):
        found.append(_field_count_issues(read))
    if repeats is None:
        for column in ID_COLUMNS:
            repeated = repeat_issues(df["source_line"].to_numpy(), df[column], column)
            if repeated is not None:
                found.append(repeated)
    else:
        found.append(repeats[ISSUE_COLUMNS])
    schema = _schema_issues(df)
    if schema is not None:
        found.append(schema)
    issues = (
        pd.concat([f for f in found if len(f)], ignore_index=True)
        if any(len(f) for f in found)
        else read.issues.iloc[0:0]
    )
    issues = _once_per_cell(issues, read.issues)
    issues = issues.assign(
        source_line=issues["source_line"].astype("int64"),
        value=issues["value"].map(lambda v: None if _missing(v) else str(v)).astype(object),
    )
    return issues.sort_values(["source_line", "column"], kind="stable").reset_index(drop=True)


def _field_count_issues(read: ReadResult) -> pd.DataFrame:
    """The records with the wrong number of fields, one issue each."""
    return pd.DataFrame(
        {
            "source_line": read.malformed["source_line"],
            "column": "<row>",
            "rule": "field_count",
            "reason": f"wrong number of fields (expected {len(read.header)})",
            "value": read.malformed["text"],
        },
        columns=ISSUE_COLUMNS,
    )


def _schema_issues(df: pd.DataFrame) -> pd.DataFrame | None:
    """The LoanBook schema's per-row rules each record breaks; None when it breaks none."""
    import pandera.pandas as pa

    try:
        # in place: the selection is a new frame, so pandera's defensive deep copy of a
        # million rows (and its consolidation of the columns into blocks) buys nothing
        row_rules_schema().validate(df[LOAN_BOOK_COLUMNS], lazy=True, inplace=True)
    except pa.errors.SchemaErrors as err:
        cases = err.failure_cases
    else:
        return None
    cases = cases[cases["index"].notna()]
    table_wide = cases["schema_context"].eq("DataFrameSchema")
    # a table-wide rule reports every column of a failing row: keep one entry per row
    cases = pd.concat(
        [
            cases[~table_wide],
            cases[table_wide]
            .drop_duplicates(["index", "check"])
            .assign(column="Outstanding_Loan_Amount"),
        ]
    )
    index = cases["index"].astype("int64").to_numpy()
    rows = pd.DataFrame(
        {
            "source_line": df["source_line"].to_numpy()[index],
            "column": cases["column"].astype(str).to_numpy(),
            "rule": cases["check"].astype(str).to_numpy(),
            "value": [None if _missing(v) else v for v in cases["failure_case"]],
        }
    )
    where_table_wide = (cases["schema_context"] == "DataFrameSchema").to_numpy()
    rows.loc[where_table_wide, "value"] = df["Outstanding_Loan_Amount"].to_numpy()[
        index[where_table_wide]
    ]
    rows["reason"] = [
        _reason(c, r, v)
        for c, r, v in zip(rows["column"], rows["rule"], rows["value"], strict=True)
    ]
    return rows[ISSUE_COLUMNS]


def _once_per_cell(issues: pd.DataFrame, parse_issues: pd.DataFrame) -> pd.DataFrame:
    """A cell that could not be parsed is also blank to the schema: report it once."""
    parsed_bad = set(zip(parse_issues["source_line"], parse_issues["column"], strict=True))
    if not parsed_bad:
        return issues
    dup = [
        (line, col) in parsed_bad and rule == "not_nullable"
        for line, col, rule in zip(
            issues["source_line"], issues["column"], issues["rule"], strict=True
        )
    ]
    return issues[~np.asarray(dup, dtype=bool)]


# --- the records set aside --------------------------------------------------------------------


def to_loan_book(frame: pd.DataFrame) -> pd.DataFrame:
    """Cast good rows to the strict dtypes of the ``LoanBook`` schema (the 21 columns)."""
    out = frame[LOAN_BOOK_COLUMNS]  # copy-on-write: the casts below replace columns
    for col in TEXT_COLUMNS:
        out[col] = out[col].astype(TEXT_DTYPE)
    for col in INT_COLUMNS:
        out[col] = out[col].astype("int64")
    for col in FLOAT_COLUMNS:
        out[col] = out[col].astype("float64")
    return out.reset_index(drop=True)


def issue_lines(read: ReadResult, issues: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The lines with an issue, and which rows of the frame have none."""
    bad_lines = np.unique(issues["source_line"].to_numpy(dtype="int64"))
    return bad_lines, ~read.frame["source_line"].isin(bad_lines).to_numpy()


def set_aside(
    read: ReadResult,
    issues: pd.DataFrame,
    found: tuple[np.ndarray, np.ndarray] | None = None,
) -> SplitResult:
    """The rows with no issue, and the issues (no threshold: ``ingest_verdict`` judges the
    whole file). ``found``: ``issue_lines(read, issues)``, when the caller has it."""
    bad_lines, good = issue_lines(read, issues) if found is None else found
    return SplitResult(
        # every row good: the frame itself (to_loan_book selects and casts columns, copy-on-write)
        valid=to_loan_book(read.frame if good.all() else read.frame.loc[good]),
        issues=issues,
        quarantined_lines=bad_lines,
        records=read.records,
    )


def row_positions(source_line: np.ndarray, lines: np.ndarray) -> np.ndarray:
    """The row of each of ``lines`` in a frame with these ``source_line`` values (-1: none)."""
    n = len(source_line)
    if n and (np.diff(source_line) > 0).all():  # as read_loan_book makes them: a binary search
        pos = np.minimum(np.searchsorted(source_line, lines), n - 1)
        return np.where(source_line[pos] == lines, pos, -1)
    return pd.Index(source_line).get_indexer(lines)


def quarantine_table(read: ReadResult, split: SplitResult) -> pd.DataFrame:
    """The quarantine as stored: one row per broken rule, with the record's original values.

    Only the quarantined records are looked up (by line), not the whole book.
    """
    source_line = read.frame["source_line"].to_numpy()
    originals: dict[int, str] = {}
    lines = np.asarray(split.quarantined_lines, dtype="int64")
    at = row_positions(source_line, lines)
    in_frame = lines[at >= 0]
    if len(in_frame):
        typed = read.frame.iloc[at[at >= 0]].drop(columns="source_line")
        subset = typed.astype(object).where(typed.notna(), None)
        raw_values: dict[tuple[int, str], object] = {}
        for line, col, value in zip(
            split.issues["source_line"], split.issues["column"], split.issues["value"], strict=True
        ):
            raw_values.setdefault((int(line), col), value)  # the first issue's value
        columns = subset.columns.tolist()
        cells = zip(*(subset[c].tolist() for c in columns), strict=True)  # row by row
        for line, row in zip(in_frame.tolist(), cells, strict=True):
            record = {}
            for col, value in zip(columns, row, strict=True):
                if isinstance(value, np.generic):  # as DataFrame.to_dict("records") boxes them
                    value = value.item()
                if value is None and (line, col) in raw_values:
                    value = raw_values[line, col]
                record[col] = value
            originals[line] = json.dumps(record, default=str)
    for line, text in zip(read.malformed["source_line"], read.malformed["text"], strict=True):
        originals[int(line)] = json.dumps({"<row>": text})
    out = split.issues.copy()
    rows = row_positions(source_line, out["source_line"].to_numpy(dtype="int64"))
    ids = np.full(len(out), None, dtype=object)
    if (rows >= 0).any():
        found = read.frame["Borrower_ID"].iloc[rows[rows >= 0]]
        ids[rows >= 0] = found.astype(object).where(found.notna(), None).to_numpy()
    out.insert(1, "Borrower_ID", ids)
    out["original_row"] = out["source_line"].map(originals).astype(object)
    out["source_file"] = str(read.path)
    return out.reset_index(drop=True)
