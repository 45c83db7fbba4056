"""The ingest fast path gives exactly what the regex path gives.

``read_loan_book`` skips a regex pass over a column when its outcome is known without it (a
column of plain digits needs no trimming, no thousands or ``%`` clean-up, and matches the number
regex in every non-empty cell), respells categories only when some cell is not already an
allowed spelling, and builds Int64 columns without pandas' checked cast. Each test here runs
both paths on tricky cells and requires the same values (bit for bit), issues and counts.
"""

from __future__ import annotations

import functools
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loan_pipeline.core import ingest_records
from loan_pipeline.core.ingest_quarantine import find_row_issues
from loan_pipeline.schemas import CATEGORIES, LOAN_BOOK_COLUMNS

# One column of each kind: integer, integer money, float money, percent.
NUMBER_COLUMNS = {
    "Age": True,
    "Loan_Amount": True,
    "Collateral_Value": False,
    "Interest_Rate": False,
}

TRICKY = [
    "1,234", "1,234.5", "12,34", ",123", "12%", "12 %", "%", " %", "12%%", "$5", "5$", "₹5",
    "5 USD", "Rs. 5", "  7 ", "\t8\t", "\u00a09\u00a0", "", "   ", None, "abc", "1e3", "1E+3",
    "1e400", "inf", "-inf", "nan", "NaN", "-0", "+3", "-3", "3.0", "3.00", "3.5", "3.", ".5", ".",
    "..", "1.2.3", "1..2", "0x10", "00012", "0", "٣", "１２", "9007199254740993",
    "99999999999999999999", "1" * 400, "12 34", "1/2",
]  # fmt: skip
# Cells a fast path answers without a regex (digits, dots, blanks), alone and with padding.
PLAIN = ["0", "7", "00012", "123456", "", None, "9007199254740993", "3.", ".5", "3.25", "0.0"]
PLAIN_BAD = [".", "..", "1.2.3", "1..2"]  # plain bytes, still not numbers


def parse_both(values: list[str | None], column: str, integer: bool):
    arr = pa.array(values, pa.string())
    lines = np.arange(2, 2 + len(values), dtype="int64")
    return (
        ingest_records._parse_number(arr, column, lines, integer, fast=True),
        ingest_records._parse_number(arr, column, lines, integer, fast=False),
    )


def assert_same_parse(fast, slow) -> None:
    (fast_values, fast_issues, fast_changed), (slow_values, slow_issues, slow_changed) = fast, slow
    assert fast_values.dtype == slow_values.dtype
    assert fast_values.tobytes() == slow_values.tobytes()  # NaN positions, -0.0, every bit
    assert fast_changed == slow_changed
    if slow_issues is None:
        assert fast_issues is None
    else:
        pd.testing.assert_frame_equal(fast_issues, slow_issues, check_exact=True)


def whole_numbers_both(values: np.ndarray):
    """(_whole_numbers, the pandas expression it replaces): each a Series or the error raised."""

    def attempt(make):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                return make()
        except Exception as err:  # the same error, from both
            return (type(err), str(err))

    return (
        attempt(lambda: ingest_records._whole_numbers(values.copy())),
        attempt(lambda: pd.Series(values.copy()).round().astype("Int64")),
    )


def assert_same_whole_numbers(values: np.ndarray) -> None:
    fast, slow = whole_numbers_both(values)
    if isinstance(slow, tuple):
        assert fast == slow
        return
    pd.testing.assert_series_equal(fast, slow, check_exact=True)
    assert np.array_equal(fast.array._mask, slow.array._mask)
    assert np.array_equal(fast.array._data, slow.array._data)  # masked slots too


# --- numbers ----------------------------------------------------------------------------------


@pytest.mark.parametrize("column", NUMBER_COLUMNS)
@pytest.mark.parametrize(
    "values",
    [TRICKY, PLAIN, PLAIN + PLAIN_BAD, [f" {v} " for v in PLAIN if v], [None, None], [""], []],
    ids=["tricky", "plain", "plain_and_dots", "padded", "all_null", "empty_cell", "no_rows"],
)
def test_numbers_fast_and_regex_paths_agree(column: str, values: list[str | None]) -> None:
    integer = NUMBER_COLUMNS[column]
    assert_same_parse(*parse_both(values, column, integer))


@pytest.mark.parametrize("column", NUMBER_COLUMNS)
@pytest.mark.parametrize("value", TRICKY)
def test_each_tricky_cell_among_plain_ones(column: str, value: str | None) -> None:
    """One odd cell in an otherwise plain column: the column must leave the fast path."""
    integer = NUMBER_COLUMNS[column]
    assert_same_parse(*parse_both([*PLAIN, value, *PLAIN], column, integer))


@pytest.mark.parametrize("integer", [True, False])
def test_plain_cells_are_answered_without_the_regex(integer: bool) -> None:
    """The cases above do reach the fast path (not only the regex fallback)."""
    plain = [v for v in PLAIN if v is None or integer is False or "." not in v]
    assert (
        ingest_records._plain_valid(pa.array(plain + PLAIN_BAD * (not integer)), integer)
        is not None
    )
    assert ingest_records._plain_valid(pa.array(["1", " 1"]), integer) is None
    assert ingest_records._plain_valid(pa.array(["1", "1e3"]), integer) is None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    column=st.sampled_from(sorted(NUMBER_COLUMNS)),
    values=st.lists(
        st.one_of(st.none(), st.text(alphabet="0123456789.,%+- e$\t", max_size=8)), max_size=12
    )
    | st.lists(st.one_of(st.none(), st.text(alphabet="0123456789.", max_size=25)), max_size=12),
)
def test_numbers_agree_on_generated_cells(column: str, values: list[str | None]) -> None:
    assert_same_parse(*parse_both(values, column, NUMBER_COLUMNS[column]))


@pytest.mark.parametrize(
    "values",
    [
        [1.0, 0.0, -0.0, np.nan, 12.0, 2.0**53 + 2, 9007199254740992.0, -(2.0**63)],
        [np.nan, np.nan],
        [],
        [1.0, np.inf],
        [1.0, 1e20],
        [2.0**63],
        [0.5, 1.5, 2.5, -2.5],  # not reached by ingest (the regex allows only .0), still equal
    ],
)
def test_whole_numbers_equal_the_pandas_cast(values: list[float]) -> None:
    assert_same_whole_numbers(np.array(values, dtype="float64"))


# --- text -------------------------------------------------------------------------------------


@pytest.mark.parametrize("column", ["Gender", "Recovery_Status", "Legal_Action_Taken", "Loan_ID"])
@pytest.mark.parametrize(
    "extra", [[], ["female"], [" Male "], ["", None], ["Timeshare"], ["YES"], ["  "]]
)
def test_text_fast_and_slow_paths_agree(column: str, extra: list[str | None]) -> None:
    allowed = CATEGORIES.get(column, ["LN_1", "LN_2"])
    arr = pa.array([*allowed, None, *allowed, *extra], pa.string())
    fast_series, fast_changed = ingest_records._parse_text(arr, column, fast=True)
    slow_series, slow_changed = ingest_records._parse_text(arr, column, fast=False)
    pd.testing.assert_series_equal(fast_series, slow_series, check_exact=True)
    assert fast_series.array._pa_array.equals(slow_series.array._pa_array)
    assert fast_changed == slow_changed


# --- a whole file -----------------------------------------------------------------------------


def messy_book() -> str:
    """A book whose numeric columns hold the tricky cells, and whose other cells are valid."""
    good = {
        "Borrower_ID": "BRW_{n}",
        "Age": "40",
        "Gender": "Male",
        "Employment_Type": "Salaried",
        "Monthly_Income": "50000",
        "Num_Dependents": "1",
        "Loan_ID": "LN_{n}",
        "Loan_Amount": "100000",
        "Loan_Tenure": "24",
        "Interest_Rate": "9.5",
        "Loan_Type": "Home",
        "Collateral_Value": "150000.5",
        "Outstanding_Loan_Amount": "50000.25",
        "Monthly_EMI": "4000.75",
        "Payment_History": "On-Time",
        "Num_Missed_Payments": "0",
        "Days_Past_Due": "0",
        "Recovery_Status": "Fully Recovered",
        "Collection_Attempts": "1",
        "Collection_Method": "Calls",
        "Legal_Action_Taken": "No",
    }
    # The 20-digit and longer whole numbers included: in an integer column both paths set them
    # aside (out of range for int64) instead of reaching the Int64 cast.
    odd = [v for v in TRICKY if v is not None] + ["female", " YES ", " 99999999999999999999 "]
    rows = []
    for n, value in enumerate(odd * 2):
        row = {c: v.format(n=n) for c, v in good.items()}
        column = LOAN_BOOK_COLUMNS[1 + n % (len(LOAN_BOOK_COLUMNS) - 1)]  # not Borrower_ID
        row[column] = value
        rows.append(",".join(f'"{row[c]}"' for c in LOAN_BOOK_COLUMNS))
    plain = [",".join(good[c].format(n=n) for c in LOAN_BOOK_COLUMNS) for n in range(1000, 1050)]
    return "\n".join([",".join(LOAN_BOOK_COLUMNS), *rows, *plain]) + "\n"


def test_read_loan_book_with_and_without_the_fast_path(monkeypatch) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "book.csv"
        path.write_text(messy_book(), encoding="utf-8")
        fast = ingest_records.read_loan_book(path)
        with monkeypatch.context() as patched:
            patched.setattr(
                ingest_records,
                "_parse_number",
                functools.partial(ingest_records._parse_number, fast=False),
            )
            patched.setattr(
                ingest_records,
                "_parse_text",
                functools.partial(ingest_records._parse_text, fast=False),
            )
            patched.setattr(
                ingest_records, "_whole_numbers", lambda v: pd.Series(v).round().astype("Int64")
            )
            slow = ingest_records.read_loan_book(path)
    assert len(fast.issues) > 20  # the tricky cells did reach the parser
    oversized = fast.issues[fast.issues["reason"].str.contains("out of range for a whole number")]
    # plain, money and padded cells: the issue and the cells_normalised count agree on both paths
    assert set(oversized["column"]) == {"Loan_Amount", "Collection_Attempts", "Monthly_Income"}
    pd.testing.assert_frame_equal(fast.frame, slow.frame, check_exact=True)
    for column in fast.frame.columns:
        if fast.frame[column].dtype == "float64":
            assert (
                fast.frame[column].to_numpy().tobytes() == slow.frame[column].to_numpy().tobytes()
            )
    pd.testing.assert_frame_equal(fast.issues, slow.issues, check_exact=True)
    assert fast.normalised == slow.normalised
    pd.testing.assert_frame_equal(find_row_issues(fast), find_row_issues(slow), check_exact=True)
