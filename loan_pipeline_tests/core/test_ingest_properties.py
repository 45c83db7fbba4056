"""Properties of reading and splitting a loan book, on generated books within the contract.

- a valid book reads back exactly: no issue, nothing quarantined, the same values in order;
- one broken cell quarantines exactly its row, for the expected column, and nothing else;
- cosmetic differences (surrounding spaces, the case of a category, thousands separators in
  whole-number amounts, a % after the rate) never change the validated result.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loan_pipeline.core.ingest_records import read_loan_book
from loan_pipeline.core.ingest_verdict import split_rows
from loan_pipeline.schemas import (
    CATEGORIES,
    FLOAT_COLUMNS,
    INT_COLUMNS,
    LOAN_BOOK_COLUMNS,
    MONEY_COLUMNS,
    TEXT_COLUMNS,
    TEXT_DTYPE,
)

PROPERTY_SETTINGS = settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Whole-number columns: (lowest, highest) allowed by the LoanBook contract.
INT_RANGES = {
    "Age": (18, 100),
    "Monthly_Income": (0, 100_000_000),
    "Num_Dependents": (0, 20),
    "Loan_Amount": (1, 10_000_000_000),
    "Loan_Tenure": (1, 480),
    "Num_Missed_Payments": (0, 480),
    "Days_Past_Due": (0, 10_000),
    "Collection_Attempts": (0, 1_000),
}
assert set(INT_RANGES) == set(INT_COLUMNS)

ID_TEXT = st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-",
    min_size=1,
    max_size=10,
)


def finite(low: float, high: float) -> st.SearchStrategy[float]:
    return st.floats(min_value=low, max_value=high, allow_nan=False, allow_infinity=False)


@st.composite
def loan_rows(draw, min_rows: int = 1, max_rows: int = 25) -> list[dict]:
    """Rows that satisfy every rule of the LoanBook contract, ids unique per column."""
    n = draw(st.integers(min_rows, max_rows))
    borrower_ids = draw(st.lists(ID_TEXT, min_size=n, max_size=n, unique=True))
    loan_ids = draw(st.lists(ID_TEXT, min_size=n, max_size=n, unique=True))
    rows = []
    for borrower_id, loan_id in zip(borrower_ids, loan_ids, strict=True):
        row: dict[str, object] = {"Borrower_ID": borrower_id, "Loan_ID": loan_id}
        for column, (low, high) in INT_RANGES.items():
            row[column] = draw(st.integers(low, high))
        for column, allowed in CATEGORIES.items():
            row[column] = draw(st.sampled_from(allowed))
        if draw(st.booleans()):
            row["Recovery_Status"] = None  # an open loan
        row["Interest_Rate"] = draw(finite(0, 100))
        row["Collateral_Value"] = draw(finite(0, 1e12))
        row["Outstanding_Loan_Amount"] = draw(finite(0, float(row["Loan_Amount"])))
        row["Monthly_EMI"] = draw(finite(0, 1e9))
        rows.append({c: row[c] for c in LOAN_BOOK_COLUMNS})
    return rows


def as_text(value: object) -> str:
    """A cell as a CSV writer would write it: floats round-trip exactly, None is blank."""
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)


def csv_cell(text: str) -> str:
    return f'"{text}"' if any(ch in text for ch in ',"\n') else text


def book_text(cells: list[list[str]]) -> str:
    lines = [",".join(LOAN_BOOK_COLUMNS)] + [",".join(csv_cell(c) for c in row) for row in cells]
    return "\n".join(lines) + "\n"


def text_cells(rows: list[dict]) -> list[list[str]]:
    return [[as_text(row[c]) for c in LOAN_BOOK_COLUMNS] for row in rows]


def expected_frame(rows: list[dict]) -> pd.DataFrame:
    """The generated rows with the LoanBook's strict dtypes, as ``split_rows`` returns them."""
    frame = pd.DataFrame(rows, columns=LOAN_BOOK_COLUMNS)
    for column in INT_COLUMNS:
        frame[column] = frame[column].astype("int64")
    for column in FLOAT_COLUMNS:
        frame[column] = frame[column].astype("float64")
    for column in TEXT_COLUMNS:
        frame[column] = frame[column].astype(TEXT_DTYPE)
    return frame.reset_index(drop=True)


def read_and_split(text: str):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "book.csv"
        path.write_text(text, encoding="utf-8")
        read = read_loan_book(path)
        return read, split_rows(read, max_quarantine_share=1.0, min_rows=1)


# --- (a) valid books read back exactly ---------------------------------------------------------


@PROPERTY_SETTINGS
@given(rows=loan_rows())
def test_a_valid_book_reads_back_exactly(rows):
    read, split = read_and_split(book_text(text_cells(rows)))
    assert read.issues.empty
    assert read.malformed.empty
    assert read.blank_lines == 0
    assert read.normalised == {}
    assert split.issues.empty
    assert split.quarantined == 0
    assert split.records == len(rows)
    assert read.frame["source_line"].tolist() == list(range(2, len(rows) + 2))
    pd.testing.assert_frame_equal(split.valid, expected_frame(rows), check_exact=True)


# --- (b) one broken cell quarantines exactly its row -------------------------------------------

# (column, value, rule): a whole number or amount outside the contract's range.
OUT_OF_RANGE = [
    ("Age", "17", "greater_than_or_equal_to(18)"),
    ("Age", "101", "less_than_or_equal_to(100)"),
    ("Monthly_Income", "-1", "greater_than_or_equal_to(0)"),
    ("Monthly_Income", "100000001", "less_than_or_equal_to(100000000)"),
    ("Num_Dependents", "21", "less_than_or_equal_to(20)"),
    ("Loan_Amount", "10000000001", "less_than_or_equal_to(10000000000)"),
    ("Loan_Tenure", "0", "greater_than_or_equal_to(1)"),
    ("Loan_Tenure", "481", "less_than_or_equal_to(480)"),
    ("Num_Missed_Payments", "-3", "greater_than_or_equal_to(0)"),
    ("Days_Past_Due", "10001", "less_than_or_equal_to(10000)"),
    ("Collection_Attempts", "1001", "less_than_or_equal_to(1000)"),
    ("Interest_Rate", "100.5", "less_than_or_equal_to(100)"),
    ("Interest_Rate", "-0.5", "greater_than_or_equal_to(0)"),
    ("Collateral_Value", "-1.5", "greater_than_or_equal_to(0)"),
    ("Outstanding_Loan_Amount", "-1.0", "greater_than_or_equal_to(0)"),
    ("Monthly_EMI", "-0.01", "greater_than_or_equal_to(0)"),
]
REQUIRED = [c for c in LOAN_BOOK_COLUMNS if c != "Recovery_Status"]
NUMERIC = INT_COLUMNS + FLOAT_COLUMNS
LETTERS = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1)
MUTATIONS = [
    "out_of_range",
    "unknown_category",
    "blank_required",
    "non_numeric",
    "duplicate_id",
    "outstanding_above_amount",
]


@st.composite
def one_broken_cell(draw, kind: str):
    """Valid rows, and one cell of one row broken: (rows, cells, broken row, column, rule)."""
    rows = draw(loan_rows(min_rows=2))
    cells = text_cells(rows)
    target = draw(st.integers(0, len(rows) - 1))
    if kind == "out_of_range":
        column, value, rule = draw(st.sampled_from(OUT_OF_RANGE))
    elif kind == "unknown_category":
        column = draw(st.sampled_from(sorted(CATEGORIES)))
        allowed = CATEGORIES[column]
        value = draw(LETTERS.filter(lambda t: t.lower() not in {a.lower() for a in allowed}))
        rule = f"isin({allowed!r})"
    elif kind == "blank_required":
        column = draw(st.sampled_from(REQUIRED))
        value, rule = "", "not_nullable"
    elif kind == "non_numeric":
        column = draw(st.sampled_from(NUMERIC))
        value = draw(LETTERS)
        rule = "integer" if column in INT_COLUMNS else "number"
    elif kind == "duplicate_id":
        column = draw(st.sampled_from(["Borrower_ID", "Loan_ID"]))
        target = draw(st.integers(1, len(rows) - 1))  # a later row takes an earlier row's id
        source = draw(st.integers(0, target - 1))
        value, rule = rows[source][column], "unique"
    else:
        column, rule = "Outstanding_Loan_Amount", "outstanding_within_loan"
        value = repr(float(rows[target]["Loan_Amount"]) * 2 + 1)
    cells[target][LOAN_BOOK_COLUMNS.index(column)] = value
    return rows, cells, target, column, rule


@pytest.mark.parametrize("kind", MUTATIONS)
@settings(PROPERTY_SETTINGS, max_examples=10)  # per mutation: 60 examples in all
@given(data=st.data())
def test_one_broken_cell_quarantines_exactly_its_row(kind, data):
    rows, cells, target, column, rule = data.draw(one_broken_cell(kind), label=kind)
    read, split = read_and_split(book_text(cells))
    line = target + 2
    assert split.quarantined_lines.tolist() == [line]
    assert split.issues[["source_line", "column", "rule"]].to_dict("records") == [
        {"source_line": line, "column": column, "rule": rule}
    ]
    assert split.records == len(rows)
    others = [r for i, r in enumerate(rows) if i != target]
    pd.testing.assert_frame_equal(split.valid, expected_frame(others), check_exact=True)


# --- (c) cosmetic differences never change the validated result ---------------------------------

WHOLE_MONEY = [c for c in MONEY_COLUMNS if c in INT_COLUMNS]


@st.composite
def cosmetic_variant(draw):
    """Valid rows, and their cells with harmless differences the contract cleans up."""
    rows = draw(loan_rows())
    cells = text_cells(rows)
    pad = st.sampled_from(["", " ", "  ", "   "])
    for row in cells:
        for i, column in enumerate(LOAN_BOOK_COLUMNS):
            text = row[i]
            if column in CATEGORIES and text and draw(st.booleans()):
                flips = draw(st.lists(st.booleans(), min_size=len(text), max_size=len(text)))
                text = "".join(
                    ch.upper() if up else ch.lower() for ch, up in zip(text, flips, strict=True)
                )
            if column in WHOLE_MONEY and draw(st.booleans()):
                text = f"{int(text):,}"
            if column == "Interest_Rate" and draw(st.booleans()):
                text += draw(st.sampled_from(["%", " %"]))
            if draw(st.booleans()):
                text = draw(pad) + text + draw(pad)
            row[i] = text
    return rows, cells


@PROPERTY_SETTINGS
@given(case=cosmetic_variant())
def test_cosmetic_differences_never_change_the_validated_result(case):
    rows, cells = case
    read, split = read_and_split(book_text(cells))
    assert split.issues.empty, split.issues.to_dict("records")
    assert split.quarantined == 0
    assert read.blank_lines == 0
    # what the rows without the differences read back as (test_a_valid_book_reads_back_exactly)
    pd.testing.assert_frame_equal(split.valid, expected_frame(rows), check_exact=True)
    changed = sum(
        a != b
        for original, variant in zip(text_cells(rows), cells, strict=True)
        for a, b in zip(original, variant, strict=True)
    )
    assert (sum(read.normalised.values()) == 0) == (changed == 0)
    assert np.array_equal(read.frame["source_line"], np.arange(2, len(rows) + 2))
