"""Read the loan-book CSV with explicit dtypes and turn it into the typed, validated frame."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from loan_pipeline.schemas import (
    FLOAT_COLUMNS,
    INT_COLUMNS,
    LOAN_BOOK_COLUMNS,
    RAW_DTYPES,
    TEXT_COLUMNS,
)


class LoanBookFileError(ValueError):
    """The file as a whole cannot be used; the message names the file and what was expected."""


def read_loan_book(path: Path) -> pd.DataFrame:
    """The CSV as read: every expected column with its explicit (nullable) dtype.

    Columns beyond the 21 expected ones are kept, read as text.
    """
    path = Path(path)
    if not path.is_file():
        raise LoanBookFileError(f"{path}: loan book not found (expected a CSV file at this path)")
    header = pd.read_csv(path, nrows=0).columns.tolist()
    missing = [c for c in LOAN_BOOK_COLUMNS if c not in header]
    if missing:
        raise LoanBookFileError(
            f"{path}: required column(s) missing: {', '.join(missing)}; "
            f"expected the {len(LOAN_BOOK_COLUMNS)} columns {', '.join(LOAN_BOOK_COLUMNS)}"
        )
    dtypes = {c: RAW_DTYPES.get(c, "string") for c in header}
    return pd.read_csv(path, dtype=dtypes, engine="pyarrow")


def to_loan_book(raw: pd.DataFrame) -> pd.DataFrame:
    """Cast the raw frame to the strict dtypes of the ``LoanBook`` schema.

    Text columns become plain Python strings (missing stays missing); integer columns become
    int64, which requires every value to be present (the schema reports which are not).
    """
    out = raw.copy()
    for col in TEXT_COLUMNS:
        out[col] = out[col].astype(object).where(out[col].notna(), None)
    for col in INT_COLUMNS:
        if out[col].notna().all():
            out[col] = out[col].astype("int64")
    for col in FLOAT_COLUMNS:
        out[col] = out[col].astype("float64")
    return out
