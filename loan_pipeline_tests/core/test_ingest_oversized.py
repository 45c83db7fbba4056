"""A whole number too large for int64 in an integer column is quarantined, never a crash.

``read_loan_book`` parses numbers as float64 and stores integer columns as Int64; a cell of 20
digits or more (or hundreds, which parse to infinity) cannot be stored, and used to stop the
read with a TypeError from the cast. It is now one more per-cell issue (rule ``integer``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from loan_pipeline.core.ingest_quarantine import quarantine_table
from loan_pipeline.core.ingest_records import read_loan_book
from loan_pipeline.core.ingest_verdict import split_rows
from loan_pipeline.settings import IngestConfig
from loan_pipeline_tests.defaults import config_kwargs
from loan_pipeline_tests.test_contracts import LINES, N_ROWS, cell, edited, joined

INGEST = config_kwargs(split_rows, IngestConfig)  # the run configuration's limits

OUT_OF_RANGE = "{column} is out of range for a whole number (beyond a 64-bit integer)"


def read_and_split(path: Path, changes: dict[tuple[int, str], str]):
    path.write_text(joined(edited(changes)), encoding="utf-8")
    read = read_loan_book(path)
    return read, split_rows(read, **INGEST)


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("Age", "99999999999999999999"),
        ("Loan_Amount", "123456789012345678901"),
        ("Num_Dependents", "-99999999999999999999"),
        ("Monthly_Income", "1" * 400),  # parses to infinity
        ("Days_Past_Due", "99999999999999999999.0"),
        ("Collection_Attempts", "9223372036854775808"),  # 2**63: the first value past int64
    ],
)
def test_oversized_whole_number_is_quarantined(tmp_path: Path, column: str, value: str) -> None:
    line = 4
    read, split = read_and_split(tmp_path / "book.csv", {(line, column): value})

    parse_issues = read.issues.to_dict("records")
    assert parse_issues == [
        {
            "source_line": line,
            "column": column,
            "rule": "integer",
            "reason": OUT_OF_RANGE.format(column=column),
            "value": value,
        }
    ]
    assert read.frame[column].dtype == "Int64"
    assert read.frame.set_index("source_line")[column].isna().tolist() == [
        n == line for n in range(2, N_ROWS + 2)
    ]
    assert read.normalised == {}

    # the row is set aside once, for that reason, with the value as written
    assert split.quarantined_lines.tolist() == [line]
    assert split.issues[["source_line", "column", "rule", "value"]].to_dict("records") == [
        {"source_line": line, "column": column, "rule": "integer", "value": value}
    ]
    quarantine = quarantine_table(read, split)
    assert quarantine["reason"].tolist() == [OUT_OF_RANGE.format(column=column)]
    assert quarantine["Borrower_ID"].tolist() == [cell(line, "Borrower_ID")]
    assert json.loads(quarantine["original_row"][0])[column] == value

    # every other row read and validated exactly as without the bad cell
    clean = read_loan_book(_write(tmp_path / "clean.csv", joined(LINES)))
    expected = split_rows(clean, **INGEST).valid
    expected = expected.drop(index=line - 2).reset_index(drop=True)
    pd.testing.assert_frame_equal(split.valid, expected, check_exact=True)


def test_padded_oversized_cell_is_not_counted_as_cleaned(tmp_path: Path) -> None:
    """Trimming a cell that is then set aside does not count in ``cells_normalised``; the
    padded valid cell next to it still does."""
    read, split = read_and_split(
        tmp_path / "book.csv",
        {(4, "Age"): " 99999999999999999999 ", (5, "Age"): f" {cell(5, 'Age')} "},
    )
    assert read.normalised == {"Age": 1}
    assert read.issues["value"].tolist() == [" 99999999999999999999 "]
    assert split.quarantined_lines.tolist() == [4]


def test_largest_parseable_whole_numbers_are_kept_and_judged_by_range(tmp_path: Path) -> None:
    """Below 2**63 the value is stored, and the contract's range rule decides (quarantined as
    too large, with the usual reason): the limit only replaces a crash."""
    read, split = read_and_split(tmp_path / "book.csv", {(4, "Age"): "999999999999999999"})
    assert read.issues.empty
    assert pd.notna(read.frame.set_index("source_line").at[4, "Age"])
    assert split.issues[["source_line", "column", "rule"]].to_dict("records") == [
        {"source_line": 4, "column": "Age", "rule": "less_than_or_equal_to(100)"}
    ]


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path
