"""The loan book's contract: its columns, the raw and validated frames, the row rules and
the quarantine."""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.typing.pandas import Series

from loan_pipeline.columns import FLOAT_COLUMNS, INT_COLUMNS, TEXT_COLUMNS

# --- the loan book's columns ---------------------------------------------------------------

GENDERS = ["Male", "Female"]
EMPLOYMENT_TYPES = ["Salaried", "Self-Employed", "Business Owner"]
LOAN_TYPES = ["Personal", "Home", "Auto", "Business"]
PAYMENT_HISTORIES = ["On-Time", "Delayed", "Missed"]
RECOVERY_STATUSES = ["Fully Recovered", "Partially Recovered", "Written Off"]
COLLECTION_METHODS = ["Calls", "Legal Notice", "Debt Collectors", "Settlement Offer"]
YES_NO = ["No", "Yes"]

# Category columns and their allowed values (matched case-insensitively on read).
CATEGORIES: dict[str, list[str]] = {
    "Gender": GENDERS,
    "Employment_Type": EMPLOYMENT_TYPES,
    "Loan_Type": LOAN_TYPES,
    "Payment_History": PAYMENT_HISTORIES,
    "Recovery_Status": RECOVERY_STATUSES,
    "Collection_Method": COLLECTION_METHODS,
    "Legal_Action_Taken": YES_NO,
}
# Amounts in the book's currency units: thousands separators accepted, currency symbols not.
MONEY_COLUMNS = [
    "Monthly_Income",
    "Loan_Amount",
    "Collateral_Value",
    "Outstanding_Loan_Amount",
    "Monthly_EMI",
]
# Rates: a trailing % is accepted.
PERCENT_COLUMNS = ["Interest_Rate"]
# Columns recorded during collection, after the outcome is known: never model inputs.
OUTCOME_SIDE_COLUMNS = [
    "Recovery_Status",
    "Collection_Attempts",
    "Collection_Method",
    "Legal_Action_Taken",
]


# Text is stored as Arrow-backed strings: a compact buffer instead of a Python object per cell, so
# a 10-million-row book fits in memory, the dtype check is O(1) (an object column is checked
# cell by cell), and DuckDB and the CSV export take the column without conversion.
TEXT_DTYPE = pd.StringDtype("pyarrow")


def text(**kwargs) -> pa.Field:
    """A text column: Arrow-backed strings (a frame with Python-object strings is converted)."""
    return pa.Field(dtype_kwargs={"storage": "pyarrow"}, coerce=True, **kwargs)


class RawLoans(pa.DataFrameModel):
    """The loan-book CSV as read: every expected column present with its explicit dtype."""

    source_line: Series[int] = pa.Field(
        ge=2, unique=True, description="Line number in the CSV file (the header is line 1)."
    )
    Borrower_ID: Series[pd.StringDtype] = text(
        nullable=True, description="Borrower identifier, as read (checked in validated_loans)."
    )
    Age: Series[pd.Int64Dtype] = pa.Field(nullable=True, description="Borrower's age, whole years.")
    Gender: Series[pd.StringDtype] = text(
        nullable=True,
        description="Gender as recorded (monitored for fairness, never a model input).",
    )
    Employment_Type: Series[pd.StringDtype] = text(
        nullable=True, description="Employment type: Salaried, Self-Employed or Business Owner."
    )
    Monthly_Income: Series[pd.Int64Dtype] = pa.Field(
        nullable=True, description="Borrower's monthly income, currency units."
    )
    Num_Dependents: Series[pd.Int64Dtype] = pa.Field(
        nullable=True, description="Number of people financially dependent on the borrower."
    )
    Loan_ID: Series[pd.StringDtype] = text(
        nullable=True, description="Loan identifier, as read (one loan per borrower)."
    )
    Loan_Amount: Series[pd.Int64Dtype] = pa.Field(
        nullable=True, description="Principal lent, currency units."
    )
    Loan_Tenure: Series[pd.Int64Dtype] = pa.Field(
        nullable=True, description="Term of the loan, months."
    )
    Interest_Rate: Series[float] = pa.Field(
        nullable=True, description="Interest rate, percent a year (12.5 = 12.5 %)."
    )
    Loan_Type: Series[pd.StringDtype] = text(
        nullable=True, description="Product: Personal, Home, Auto or Business."
    )
    Collateral_Value: Series[float] = pa.Field(
        nullable=True, description="Value of the collateral pledged, currency units (0: unsecured)."
    )
    Outstanding_Loan_Amount: Series[float] = pa.Field(
        nullable=True, description="Balance still owed, currency units."
    )
    Monthly_EMI: Series[float] = pa.Field(
        nullable=True, description="Equated monthly instalment due, currency units."
    )
    Payment_History: Series[pd.StringDtype] = text(
        nullable=True, description="Payment behaviour so far: On-Time, Delayed or Missed."
    )
    Num_Missed_Payments: Series[pd.Int64Dtype] = pa.Field(
        nullable=True, description="Instalments missed so far, a count."
    )
    Days_Past_Due: Series[pd.Int64Dtype] = pa.Field(
        nullable=True, description="Days the oldest unpaid instalment is overdue."
    )
    Recovery_Status: Series[pd.StringDtype] = text(
        nullable=True,
        description="Outcome of collection: Fully Recovered, Partially Recovered, Written Off; "
        "blank while the loan is open.",
    )
    Collection_Attempts: Series[pd.Int64Dtype] = pa.Field(
        nullable=True, description="Collection attempts made, a count (outcome-side)."
    )
    Collection_Method: Series[pd.StringDtype] = text(
        nullable=True, description="Collection method used (outcome-side)."
    )
    Legal_Action_Taken: Series[pd.StringDtype] = text(
        nullable=True, description="Yes or No: legal action was taken (outcome-side)."
    )

    class Config:
        name = "RawLoans"
        description = "The loan-book CSV as read, with an explicit dtype for every column."
        coerce = True
        strict = False  # extra columns are kept as read


class LoanBook(pa.DataFrameModel):
    """One row per borrower that passed every rule of the loan-book contract."""

    Borrower_ID: Series[pd.StringDtype] = text(
        unique=True, str_length={"min_value": 1}, description="Borrower identifier, unique."
    )
    Age: Series[int] = pa.Field(
        ge=18, le=100, description="Borrower's age, whole years (reference: 21-64)."
    )
    Gender: Series[pd.StringDtype] = text(
        isin=GENDERS, description="Male or Female (monitored for fairness, never a model input)."
    )
    Employment_Type: Series[pd.StringDtype] = text(
        isin=EMPLOYMENT_TYPES, description="Salaried, Self-Employed or Business Owner."
    )
    Monthly_Income: Series[int] = pa.Field(
        ge=0,
        le=100_000_000,
        description="Monthly income, currency units (reference: 15,207-249,746).",
    )
    Num_Dependents: Series[int] = pa.Field(
        ge=0,
        le=20,
        description="People financially dependent on the borrower (reference: 0-3).",
    )
    Loan_ID: Series[pd.StringDtype] = text(
        unique=True, str_length={"min_value": 1}, description="Loan identifier, unique."
    )
    Loan_Amount: Series[int] = pa.Field(
        gt=0,
        le=10_000_000_000,
        description="Principal lent, currency units (reference: 54,138-1,995,325).",
    )
    Loan_Tenure: Series[int] = pa.Field(
        ge=1, le=480, description="Term in months (reference: 12-72 in steps of 12)."
    )
    Interest_Rate: Series[float] = pa.Field(
        ge=0, le=100, description="Interest rate, percent a year (reference: 5.02-17.97)."
    )
    Loan_Type: Series[pd.StringDtype] = text(
        isin=LOAN_TYPES, description="Personal, Home, Auto or Business."
    )
    Collateral_Value: Series[float] = pa.Field(
        ge=0, description="Collateral value, currency units; 0 for unsecured loans."
    )
    Outstanding_Loan_Amount: Series[float] = pa.Field(
        ge=0, description="Balance still owed, currency units; at most Loan_Amount."
    )
    Monthly_EMI: Series[float] = pa.Field(
        ge=0, description="Equated monthly instalment due, currency units."
    )
    Payment_History: Series[pd.StringDtype] = text(
        isin=PAYMENT_HISTORIES, description="Payment behaviour so far: On-Time, Delayed or Missed."
    )
    Num_Missed_Payments: Series[int] = pa.Field(
        ge=0, le=480, description="Instalments missed so far, a count (reference: 0-12)."
    )
    Days_Past_Due: Series[int] = pa.Field(
        ge=0,
        le=10_000,
        description="Days the oldest unpaid instalment is overdue (reference: 0-180).",
    )
    Recovery_Status: Series[pd.StringDtype] = text(
        isin=RECOVERY_STATUSES,
        nullable=True,
        description="Outcome of collection: Fully Recovered, Partially Recovered or Written Off; "
        "blank for an open loan (scored, never trained on).",
    )
    Collection_Attempts: Series[int] = pa.Field(
        ge=0,
        le=1_000,
        description="Collection attempts made, a count (outcome-side: never a model input).",
    )
    Collection_Method: Series[pd.StringDtype] = text(
        isin=COLLECTION_METHODS,
        description="Collection method used (outcome-side: never a model input).",
    )
    Legal_Action_Taken: Series[pd.StringDtype] = text(
        isin=YES_NO,
        description="Yes or No: legal action was taken (outcome-side: never a model input).",
    )

    @pa.check(*FLOAT_COLUMNS, name="finite")
    def finite(cls, s: Series[float]) -> Series[bool]:
        return (
            pd.Series(np.isfinite(s.to_numpy(dtype="float64", na_value=np.nan)), index=s.index)
            | s.isna()
        )

    @pa.dataframe_check(description="Outstanding_Loan_Amount <= Loan_Amount")
    def outstanding_within_loan(cls, df: pd.DataFrame) -> Series[bool]:
        # a missing amount passes here: its blank is its own issue (not_nullable); a missing
        # value must not make the check fail for every row of the book
        outstanding = df["Outstanding_Loan_Amount"].to_numpy(dtype="float64", na_value=np.nan)
        amount = df["Loan_Amount"].to_numpy(dtype="float64", na_value=np.nan)
        with np.errstate(invalid="ignore"):
            return pd.Series(~(outstanding > amount * (1 + 1e-9)), index=df.index)

    class Config:
        name = "LoanBook"
        description = "The validated loan book: typed, in range, unique ids."
        strict = False


@functools.cache
def row_rules_schema() -> pa.DataFrameSchema:
    """``LoanBook``'s per-row rules on the nullable frame as read (ids' uniqueness is handled
    row by row, keeping the first occurrence). Built once a process and shared (validation
    does not change a schema): building it deep-copies the whole schema, about 10 ms, which a
    book read in blocks would pay for every block."""
    nullable = {c: {"dtype": "Int64"} for c in INT_COLUMNS} | {
        c: {"dtype": TEXT_DTYPE} for c in TEXT_COLUMNS
    }
    nullable["Borrower_ID"]["unique"] = False
    nullable["Loan_ID"]["unique"] = False
    return LoanBook.to_schema().update_columns(nullable)


class QuarantinedLoans(pa.DataFrameModel):
    """Rows set aside: one row per rule a record broke, with the record as read."""

    source_line: Series[int] = pa.Field(
        ge=2, description="Line number in the CSV file (the header is line 1)."
    )
    Borrower_ID: Series[pd.StringDtype] = text(
        nullable=True, description="Borrower_ID as read, if any."
    )
    column: Series[pd.StringDtype] = text(
        description="Column that broke the rule ('<row>' for the whole row)."
    )
    rule: Series[pd.StringDtype] = text(
        description="The rule broken (pandera check name or parse rule)."
    )
    reason: Series[pd.StringDtype] = text(description="Why, in words.")
    value: Series[pd.StringDtype] = text(nullable=True, description="The offending value as read.")
    original_row: Series[pd.StringDtype] = text(description="The whole record as read, as JSON.")
    source_file: Series[pd.StringDtype] = text(description="The file the row came from.")

    class Config:
        name = "QuarantinedLoans"
        description = "Rows set aside by the loan-book contract."
        strict = True
