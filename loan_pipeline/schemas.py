"""Every table's contract, one pandera ``DataFrameModel`` per stage, and the helpers that apply them.

Ranges and category sets come from the reference data set (``shared/data/README.md``) with
margins wide enough for a real lender's book: the rules reject what is impossible (a negative
income, an unknown loan type), not what is merely unusual (an income of 300,000).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.typing.pandas import Series

from loan_pipeline.columns import (  # the column lists, re-exported: the contract's names
    FLOAT_COLUMNS,
    INT_COLUMNS,
    LOAN_BOOK_COLUMNS,  # noqa: F401
    TEXT_COLUMNS,
)
from loan_pipeline.domain import (
    ARMS,
    BACKTEST_GROUPINGS,
    BUCKETS,
    CURE_DIMENSIONS,
    FROM_BUCKETS,
    NO_STABLE_SEGMENTATION,
    POLICIES,
    PSI_MODERATE,
    PSI_SIGNIFICANT,
    PSI_STATUSES,
    STABLE_SEGMENTATION,
    STRATEGIES,
    TO_BUCKETS,
)

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


FEATURE_COLUMNS_REGEX = r"^(?!Borrower_ID$).+$"


class ScaledFeatures(pa.DataFrameModel):
    """The standardised feature matrix, one row per borrower."""

    Borrower_ID: Series[pd.StringDtype] = text(
        unique=True, description="Borrower identifier (the key)."
    )
    feature: Series[float] = pa.Field(
        alias=FEATURE_COLUMNS_REGEX,
        regex=True,
        nullable=False,
        description="A standardised feature: (value - mean) / scale.",
    )

    @pa.check(FEATURE_COLUMNS_REGEX, regex=True, name="finite")
    def finite(cls, s: Series[float]) -> Series[bool]:
        return pd.Series(np.isfinite(s.to_numpy()), index=s.index)

    class Config:
        name = "ScaledFeatures"
        description = "Standardised features keyed by Borrower_ID."
        strict = True


class BorrowerSegments(pa.DataFrameModel):
    """One row per borrower: the segment it belongs to and that segment's name."""

    Borrower_ID: Series[pd.StringDtype] = text(unique=True, description="Borrower identifier.")
    segment_id: Series[int] = pa.Field(
        ge=0,
        description="Segment number, 0 to k-1 (ordered by centroid burden, 0 = lowest; kept "
        "from run to run where the segments match).",
    )
    segment_name: Series[pd.StringDtype] = text(
        str_length={"min_value": 1},
        description="Segment name, from the two features its centroid stands out on most.",
    )

    class Config:
        name = "BorrowerSegments"
        description = "Borrower segment assignments."
        strict = True


class SegmentProfiles(pa.DataFrameModel):
    """Per segment: size, feature means and the observed outcome mix."""

    segment_id: Series[int] = pa.Field(
        ge=0, unique=True, description="Segment number (as in borrower_segments)."
    )
    segment_name: Series[pd.StringDtype] = text(
        unique=True, description="Segment name (as in borrower_segments)."
    )
    borrowers: Series[int] = pa.Field(ge=1, description="Borrowers in the segment, a count.")
    share_of_book: Series[float] = pa.Field(
        ge=0, le=1, description="Borrowers in the segment over all borrowers, 0-1."
    )
    open_loans: Series[int] = pa.Field(
        ge=0, description="Borrowers of the segment whose loan has no outcome yet, a count."
    )
    share_fully_recovered: Series[float] = pa.Field(
        ge=0,
        le=1,
        nullable=True,
        description="Share of the segment's resolved loans Fully Recovered, 0-1 (observed).",
    )
    share_partially_recovered: Series[float] = pa.Field(
        ge=0,
        le=1,
        nullable=True,
        description="Share of the segment's resolved loans Partially Recovered, 0-1 (observed).",
    )
    share_written_off: Series[float] = pa.Field(
        ge=0,
        le=1,
        nullable=True,
        description="Share of the segment's resolved loans Written Off, 0-1 (observed).",
    )
    segmentation_verdict: Series[pd.StringDtype] = text(
        isin=[STABLE_SEGMENTATION, NO_STABLE_SEGMENTATION],
        nullable=True,
        description="Whether the segments are a stable segmentation (reproducible, and beyond a "
        "structureless book) or only a convenient split; the same on every row.",
    )

    class Config:
        name = "SegmentProfiles"
        description = "Segment profiles; one extra float column per clustering feature (its mean)."
        strict = False


def probability(description: str, nullable: bool = False) -> pa.Field:
    """A probability (or a share): in [0, 1]."""
    return pa.Field(ge=0.0, le=1.0, nullable=nullable, description=description)


RISK_SCORE = (
    "Probability, 0-1, that the loan ends not Fully Recovered (Partially Recovered or Written "
    "Off), from the risk model's logistic regression: out-of-fold for a resolved loan (see "
    "score_source). Notebook method: the forest's probability of the high-burden-segment flag."
)
P_WRITTEN_OFF = (
    "Probability, 0-1, that the loan is Written Off, from the risk model's second logistic "
    "regression (empty in notebook mode)."
)


class RiskScores(pa.DataFrameModel):
    """One risk score per borrower, with where it came from and why it is high."""

    Borrower_ID: Series[pd.StringDtype] = text(unique=True, description="Borrower identifier.")
    risk_score: Series[float] = probability(RISK_SCORE)
    p_written_off: Series[float] = probability(P_WRITTEN_OFF, nullable=True)
    score_source: Series[pd.StringDtype] = text(
        isin=["out_of_fold", "open_loan", "train", "test"],
        description="out_of_fold: from a model that never saw the borrower; open_loan: scored by the "
        "model fitted on all resolved loans; train/test: notebook split.",
    )
    not_fully_recovered: Series[pd.BooleanDtype] = pa.Field(
        nullable=True,
        # DuckDB hands a BOOLEAN column with empties to pandas as objects: the same yes/no/empty
        coerce=True,
        description="What risk_score predicts, as it turned out: true when the loan ended not "
        "Fully Recovered (Partially Recovered or Written Off; notebook: the high-burden flag), "
        "false when Fully Recovered; empty for an open loan.",
    )
    reason_1: Series[pd.StringDtype] = text(
        nullable=True,
        description="The input that moved the score most from an average borrower's, with "
        "its value: up for a score at or above the base rate, down ('lowers risk') below it; "
        "empty when no input moved it (or in notebook mode).",
    )
    reason_2: Series[pd.StringDtype] = text(
        nullable=True, description="The second such input (as reason_1), if any."
    )
    reason_3: Series[pd.StringDtype] = text(
        nullable=True, description="The third such input (as reason_1), if any."
    )

    class Config:
        name = "RiskScores"
        description = "Risk score per borrower."
        strict = True


# What the expected-loss columns assume, said in each column's description.
UPPER_BOUND = (
    "Counts a loan not fully recovered as losing its whole outstanding balance: an upper bound "
    "and a ranking key, not a loss-given-default estimate."
)


class RecoveryStrategies(pa.DataFrameModel):
    """The recommended recovery strategy per borrower, its expected loss, and why."""

    Borrower_ID: Series[pd.StringDtype] = text(unique=True, description="Borrower identifier.")
    Loan_ID: Series[pd.StringDtype] = text(unique=True, description="Loan identifier.")
    segment_id: Series[int] = pa.Field(
        ge=0, description="The borrower's segment number (as in borrower_segments)."
    )
    segment_name: Series[pd.StringDtype] = text(
        description="The borrower's segment name (as in borrower_segments)."
    )
    risk_score: Series[float] = probability(RISK_SCORE)
    p_written_off: Series[float] = probability(P_WRITTEN_OFF, nullable=True)
    Outstanding_Loan_Amount: Series[float] = pa.Field(
        ge=0.0, description="Balance still owed, currency units."
    )
    expected_shortfall: Series[float] = pa.Field(
        ge=0.0,
        description="risk_score x Outstanding_Loan_Amount, currency units. " + UPPER_BOUND,
    )
    expected_write_off: Series[float] = pa.Field(
        ge=0.0,
        nullable=True,
        description="p_written_off x Outstanding_Loan_Amount, currency units: the balance "
        "expected to be written off (empty in notebook mode).",
    )
    worklist_rank: Series[float] = pa.Field(
        ge=1,
        nullable=True,
        description="Capacity policy: place on the worklist, 1 = first to work (largest "
        "expected loss; ties to the smaller Borrower_ID); empty for automated reminders and "
        "under the score bands or the fallback, which do not rank.",
    )
    recovery_strategy: Series[pd.StringDtype] = text(
        isin=STRATEGIES,
        description="What the collections team should do: legal action, settlement offers or "
        "automated reminders, as decided by the policy column's rule.",
    )
    policy: Series[pd.StringDtype] = text(
        isin=POLICIES,
        description="score bands: from the risk score's thresholds; capacity ranking: the "
        "worklist by expected loss cut at the team's capacities; rules-based fallback: from "
        "arrears, because the model failed its gate (the base rate, the coefficient signs).",
    )
    reason_1: Series[pd.StringDtype] = text(
        nullable=True,
        description="Why: under the model's policies the input that moved the score most (as "
        "in risk_scores); under the fallback the arrears rule that fired.",
    )
    reason_2: Series[pd.StringDtype] = text(
        nullable=True, description="Second reason (the model's policies only; else empty)."
    )
    reason_3: Series[pd.StringDtype] = text(
        nullable=True, description="Third reason (the model's policies only; else empty)."
    )
    # champion/challenger (core.experiment): at the end, so a reader of the columns before is
    # unaffected
    champion_strategy: Series[pd.StringDtype] = text(
        isin=STRATEGIES,
        description="The strategy the policy column's rule gives (the champion's): the "
        "recovery_strategy, except in an experiment's challenger arm.",
    )
    experiment: Series[pd.StringDtype] = text(
        nullable=True,
        description="The champion/challenger experiment the borrower is in (its name); empty "
        "when none runs or the borrower's champion strategy is not eligible.",
    )
    experiment_arm: Series[pd.StringDtype] = text(
        isin=ARMS,
        nullable=True,
        description="champion: keeps champion_strategy; challenger: given the experiment's "
        "challenger strategy instead (the borrower's hash of experiment and Borrower_ID fell "
        "below the share); empty outside an experiment.",
    )

    @pa.check("worklist_rank", name="whole_and_unique_when_present")
    def whole_unique_rank(cls, s: Series[float]) -> Series[bool]:
        # pandera's unique=True counts the empty ranks as duplicates of each other
        present = s.notna()
        return ~present | ((s == np.floor(s)) & ~(s.duplicated(keep=False) & present))

    class Config:
        name = "RecoveryStrategies"
        description = "Recovery strategy per borrower."
        strict = True


def _capture(what: str) -> pa.Field:
    return probability(
        f"Share of the {what} caught by a worklist of this size (held-out resolved loans; "
        "empty when there is none to catch, or no such score).",
        nullable=True,
    )


class CapacityGains(pa.DataFrameModel):
    """The capacity gain curve: what a worklist of each size would have caught, by ranking."""

    capacity_share: Series[float] = probability("Size of the worklist, as a share of the book.")
    borrowers: Series[int] = pa.Field(ge=0, description="Size of the worklist, in borrowers.")
    shortfall_ranked: Series[float] = _capture(
        "not fully recovered balance, ranked by expected_shortfall,"
    )
    score_ranked: Series[float] = _capture(
        "not fully recovered balance, ranked by risk_score alone (the bands' order),"
    )
    write_off_ranked: Series[float] = _capture("written-off balance, ranked by expected_write_off,")
    write_off_score_ranked: Series[float] = _capture(
        "written-off balance, ranked by p_written_off alone,"
    )
    mark: Series[pd.StringDtype] = text(
        nullable=True,
        description="Marks the rows at the current policy's worklist sizes: 'legal action "
        "now' (its legal-action count), 'legal action + settlement now'; else empty.",
    )

    class Config:
        name = "CapacityGains"
        description = "Capacity gain curve."
        strict = True


class FairnessReport(pa.DataFrameModel):
    """Strategy rates, mean score and observed outcomes by Gender and by age band."""

    group_type: Series[pd.StringDtype] = text(
        isin=["all", "Gender", "age_band"],
        description="How the group is drawn: all borrowers, by Gender, or by age band.",
    )
    group: Series[pd.StringDtype] = text(
        description="The group: 'all borrowers', a Gender, or an age band in years."
    )
    borrowers: Series[int] = pa.Field(ge=0, description="Borrowers in the group, a count.")
    share_legal: Series[float] = pa.Field(
        ge=0, le=1, description="Share of the group given legal action (the harshest), 0-1."
    )
    share_settlement: Series[float] = pa.Field(
        ge=0, le=1, description="Share of the group offered a settlement, 0-1."
    )
    share_reminders: Series[float] = pa.Field(
        ge=0, le=1, description="Share of the group on automated reminders, 0-1."
    )
    mean_score: Series[float] = pa.Field(
        ge=0,
        le=1,
        description="Mean risk_score of the group: its mean probability of not being fully "
        "recovered, 0-1.",
    )
    resolved: Series[int] = pa.Field(
        ge=0, description="Borrowers of the group with an observed outcome, a count."
    )
    observed_not_fully_recovered: Series[float] = pa.Field(
        ge=0,
        le=1,
        nullable=True,
        description="Share of the group's resolved loans not Fully Recovered, 0-1 (observed).",
    )
    share_legal_se: Series[float] = pa.Field(
        ge=0, description="Standard error of share_legal (binomial), 0-1."
    )
    observed_se: Series[float] = pa.Field(
        ge=0,
        nullable=True,
        description="Standard error of observed_not_fully_recovered (binomial), 0-1.",
    )
    legal_gap: Series[float] = pa.Field(
        description="share_legal minus the whole book's, in points of the legal-action rate "
        "(0.05: 5 points more often than the book).",
    )
    expected_share_legal: Series[float] = pa.Field(
        ge=0,
        le=1,
        description="The legal-action rate the group's outcomes would give: each borrower at the "
        "whole book's rate for borrowers of the same outcome (not Fully Recovered, Fully "
        "Recovered, open).",
    )
    unexplained_legal_gap: Series[float] = pa.Field(
        description="share_legal minus expected_share_legal, in points of the legal-action "
        "rate: how much more (or less) often the group gets legal action than its outcomes "
        "explain; the fairness check flags it beyond max_gap.",
    )
    outcome_gap: Series[float] = pa.Field(
        nullable=True,
        description="observed_not_fully_recovered minus the whole book's, in points of that "
        "rate (not of the legal-action rate).",
    )
    roc_auc: Series[float] = pa.Field(
        ge=0,
        le=1,
        nullable=True,
        description="ROC AUC of the out-of-fold scores among the group's resolved loans.",
    )
    mean_predicted: Series[float] = pa.Field(
        ge=0, le=1, nullable=True, description="Mean score among the group's resolved loans."
    )
    observed_to_predicted: Series[float] = pa.Field(
        ge=0,
        nullable=True,
        description="observed_not_fully_recovered over mean_predicted (1: the scores are "
        "calibrated for the group; above 1: they under-predict).",
    )

    class Config:
        name = "FairnessReport"
        description = "Fairness report."
        strict = True


PSI_STATUS_RULE = (
    f"< {PSI_MODERATE} stable; {PSI_MODERATE}-{PSI_SIGNIFICANT} moderate shift; "
    f"> {PSI_SIGNIFICANT} significant shift; or why there is no value."
)


def _stability_index(against: str) -> pa.Field:
    return pa.Field(
        ge=0,
        nullable=True,
        description=f"Stability index against {against} (empty: see the status).",
    )


def _stability_status() -> pa.Field:
    return text(isin=PSI_STATUSES, description=PSI_STATUS_RULE)


class PopulationStability(pa.DataFrameModel):
    """Drift of each model input (CSI) and of the score (PSI), against the baseline snapshot and
    against the previous run."""

    column: Series[pd.StringDtype] = text(
        unique=True,
        description="What drifted: a model input (a loan-book column), risk_score (this run's "
        "model) or frozen_model_score (the baseline's model scoring this book).",
    )
    measure: Series[pd.StringDtype] = text(
        isin=["CSI", "PSI"], description="CSI for a model input, PSI for a score (one formula)."
    )
    what: Series[pd.StringDtype] = text(
        description="A model input, the refitted model's score or the frozen model's score."
    )
    psi_vs_baseline: Series[float] = _stability_index("the baseline snapshot")
    status_vs_baseline: Series[pd.StringDtype] = _stability_status()
    psi_vs_previous: Series[float] = _stability_index("the previous run")
    status_vs_previous: Series[pd.StringDtype] = _stability_status()

    class Config:
        name = "PopulationStability"
        description = "Population stability."
        strict = True


class _Compared(pa.DataFrameModel):
    """The two snapshots a table between snapshots compares: its first two columns."""

    previous_snapshot: Series[pd.StringDtype] = text(
        description="The earlier snapshot compared (t): its snapshot_id in the history."
    )
    snapshot: Series[pd.StringDtype] = text(
        description="The later snapshot compared (t+1): this run's snapshot_id."
    )


class RollRates(_Compared):
    """The roll-rate matrix between two consecutive snapshots, as a long table."""

    from_bucket: Series[pd.StringDtype] = text(
        isin=FROM_BUCKETS,
        description="Arrears bucket at the earlier snapshot, or 'new to the book' for a "
        "borrower only in the later one.",
    )
    to_bucket: Series[pd.StringDtype] = text(
        isin=TO_BUCKETS,
        description="Arrears bucket at the later snapshot, or 'left the book' for a borrower "
        "only in the earlier one.",
    )
    borrowers: Series[int] = pa.Field(ge=0, description="Borrowers who moved so, a count.")
    balance: Series[float] = pa.Field(
        ge=0.0,
        description="Their balance (Outstanding_Loan_Amount), currency units: at the earlier "
        "snapshot, a newcomer's at the later one.",
    )
    share: Series[float] = probability(
        "borrowers over the from_bucket's borrowers, 0-1 (each from_bucket's shares sum to 1)."
    )
    balance_share: Series[float] = probability(
        "balance over the from_bucket's balance, 0-1 (empty when that balance is 0).",
        nullable=True,
    )

    class Config:
        name = "RollRates"
        description = "Roll-rate matrix."
        strict = True


class ArrearsForecast(_Compared):
    """Next cycle's expected bucket mix, from this snapshot's mix and the roll rates."""

    bucket: Series[pd.StringDtype] = text(
        isin=TO_BUCKETS,
        unique=True,
        description="Arrears bucket next cycle ('left the book': the expected leavers).",
    )
    borrowers_now: Series[int] = pa.Field(
        ge=0, description="Borrowers in the bucket at this snapshot, a count."
    )
    balance_now: Series[float] = pa.Field(
        ge=0.0, description="Their balance at this snapshot, currency units."
    )
    expected_borrowers: Series[float] = pa.Field(
        ge=0.0, description="Borrowers expected in the bucket next cycle (same rates), a count."
    )
    expected_balance: Series[float] = pa.Field(
        ge=0.0, description="Balance expected in the bucket next cycle, currency units."
    )
    expected_share: Series[float] = probability(
        "expected_borrowers over the borrowers on the book now, 0-1.", nullable=True
    )
    without_rates: Series[int] = pa.Field(
        ge=0,
        description="Borrowers of a bucket that had nobody at the earlier snapshot (no rates "
        "observed): assumed to stay in it; a count.",
    )

    class Config:
        name = "ArrearsForecast"
        description = "Arrears flow forecast."
        strict = True


class CureRates(_Compared):
    """Cure rates between two consecutive snapshots: overall, by bucket, segment, strategy."""

    dimension: Series[pd.StringDtype] = text(
        isin=CURE_DIMENSIONS,
        description="What the borrowers are grouped by, as at the earlier snapshot: all, "
        "arrears_bucket, segment_name or recovery_strategy.",
    )
    group: Series[pd.StringDtype] = text(
        description=f"The group's value (a bucket of {BUCKETS[1:-1]}, a segment, a strategy)."
    )
    delinquent: Series[int] = pa.Field(
        ge=0,
        description="Borrowers delinquent at the earlier snapshot (open loan, Days_Past_Due "
        "> 0), a count (0 only on the 'all' row of a book with nobody delinquent).",
    )
    left_the_book: Series[int] = pa.Field(
        ge=0, description="Of those, borrowers gone at the later snapshot (outside the rate)."
    )
    observed: Series[int] = pa.Field(
        ge=0, description="delinquent - left_the_book: the borrowers the rate is of."
    )
    cured: Series[int] = pa.Field(
        ge=0, description="Of the observed, current or Fully Recovered at the later snapshot."
    )
    cured_to_current: Series[int] = pa.Field(
        ge=0, description="Of the cured, back to current (open, 0 days past due)."
    )
    cured_fully_recovered: Series[int] = pa.Field(
        ge=0, description="Of the cured, resolved Fully Recovered."
    )
    cure_rate: Series[float] = probability("cured / observed, 0-1.", nullable=True)
    ci_low: Series[float] = probability("95% Wilson interval of cure_rate, lower.", nullable=True)
    ci_high: Series[float] = probability("95% Wilson interval of cure_rate, upper.", nullable=True)

    @pa.dataframe_check(
        description="observed = delinquent - left_the_book; cured = cured_to_current + "
        "cured_fully_recovered <= observed"
    )
    def counts_add_up(cls, df: pd.DataFrame) -> Series[bool]:
        return (
            (df["observed"] == df["delinquent"] - df["left_the_book"])
            & (df["cured"] == df["cured_to_current"] + df["cured_fully_recovered"])
            & (df["cured"] <= df["observed"])
        )

    class Config:
        name = "CureRates"
        description = "Cure rates."
        strict = True


class StrategyBacktest(_Compared):
    """The strategy back-test: outcomes of the loans resolved during the cycle, by strategy at t
    and score band / segment, each strategy against a reference strategy."""

    group_by: Series[pd.StringDtype] = text(
        isin=BACKTEST_GROUPINGS,
        description="What the borrowers are grouped by, as at the earlier snapshot: all (a "
        "strategy's every resolved borrower, no adjustment for risk), score_band (risk_score), "
        "segment_name, or band_adjusted (the score bands that hold the reference strategy too, "
        "pooled; its difference standardised to the strategy's own mix of bands; a row per "
        "pair of strategies sharing a band, the configured reference's first).",
    )
    group: Series[pd.StringDtype] = text(
        description="The group's value: 'all', a score band ('0.7-0.8': risk_score in [0.7, "
        "0.8)), a segment, or 'bands with both'."
    )
    recovery_strategy: Series[pd.StringDtype] = text(
        isin=STRATEGIES, description="The borrower's strategy at the earlier snapshot."
    )
    resolved: Series[int] = pa.Field(
        ge=1,
        description="Borrowers of the group and strategy with an open loan at the earlier "
        "snapshot, resolved at the later one; a count.",
    )
    fully_recovered: Series[int] = pa.Field(ge=0, description="Of those, Fully Recovered.")
    partially_recovered: Series[int] = pa.Field(ge=0, description="Of those, Partially Recovered.")
    written_off: Series[int] = pa.Field(ge=0, description="Of those, Written Off.")
    share_fully_recovered: Series[float] = probability("fully_recovered / resolved, 0-1.")
    ci_low: Series[float] = probability("95% Wilson interval of share_fully_recovered, lower.")
    ci_high: Series[float] = probability("95% Wilson interval of share_fully_recovered, upper.")
    share_partially_recovered: Series[float] = probability("partially_recovered / resolved.")
    share_written_off: Series[float] = probability("written_off / resolved.")
    balance_t: Series[float] = pa.Field(
        ge=0.0,
        description="Their balance (Outstanding_Loan_Amount) at the earlier snapshot, currency "
        "units.",
    )
    recovered_balance: Series[float] = pa.Field(
        ge=0.0,
        description="An assumption, not cash data: Fully Recovered recovers its balance at t, "
        "Partially Recovered BacktestConfig.partial_recovery_share of it, Written Off "
        "nothing; currency units.",
    )
    recovery_rate: Series[float] = probability(
        "recovered_balance / balance_t, 0-1 (empty when that balance is 0).", nullable=True
    )
    reference_strategy: Series[pd.StringDtype] = text(
        isin=STRATEGIES,
        description="The strategy compared with: BacktestConfig's, or on a band_adjusted row "
        "any other strategy sharing a score band.",
    )
    reference_resolved: Series[int] = pa.Field(
        ge=0, description="The reference strategy's resolved borrowers in the same group."
    )
    difference: Series[float] = pa.Field(
        ge=-1.0,
        le=1.0,
        nullable=True,
        description="share_fully_recovered minus the reference strategy's in the same group "
        "(band_adjusted: averaged over the bands, weighted by this strategy's borrowers); empty "
        "for the reference itself and where the group has no reference borrower.",
    )
    difference_low: Series[float] = pa.Field(
        ge=-1.0,
        le=1.0,
        nullable=True,
        description="95% interval of difference, lower (Newcombe's hybrid score interval; "
        "band_adjusted: Wald on Agresti-Caffo-adjusted shares).",
    )
    difference_high: Series[float] = pa.Field(
        ge=-1.0, le=1.0, nullable=True, description="95% interval of difference, upper."
    )

    @pa.dataframe_check(
        description="fully_recovered + partially_recovered + written_off = resolved; "
        "recovered_balance <= balance_t"
    )
    def outcomes_add_up(cls, df: pd.DataFrame) -> Series[bool]:
        return (
            df["fully_recovered"] + df["partially_recovered"] + df["written_off"] == df["resolved"]
        ) & (df["recovered_balance"] <= df["balance_t"] * (1 + 1e-12) + 1e-9)

    @pa.dataframe_check(
        description="one row per group_by, group, recovery_strategy and reference_strategy"
    )
    def one_row_per_comparison(cls, df: pd.DataFrame) -> Series[bool]:
        keys = ["group_by", "group", "recovery_strategy", "reference_strategy"]
        return ~df.duplicated(keys, keep=False)

    class Config:
        name = "StrategyBacktest"
        description = "Strategy back-test."
        strict = True


# --- applying a schema -----------------------------------------------------------------------


class SchemaViolation(ValueError):
    """A table broke its contract; the message names the source, columns, rules and examples."""


def _show(value: object) -> str:
    return repr(value.item() if isinstance(value, np.generic) else value)


# Columns each table-wide rule reads, so its failures name them (and show their values).
TABLE_RULE_COLUMNS: dict[str, list[str]] = {
    "outstanding_within_loan": ["Outstanding_Loan_Amount", "Loan_Amount"],
}


def describe_failures(
    err: pa.errors.SchemaErrors,
    df: pd.DataFrame,
    model: type[pa.DataFrameModel],
    source: str,
    examples: int = 5,
) -> str:
    """One line per (column, rule): how many rows failed and up to ``examples`` of them."""
    cases = err.failure_cases
    table_wide = cases["schema_context"].eq("DataFrameSchema") & cases["index"].notna()
    lines = [f"{source}: rows failed the {model.Config.name} schema"]
    for check, group in cases[table_wide].groupby("check", sort=False):
        columns = TABLE_RULE_COLUMNS.get(str(check), [])
        rows = pd.unique(group["index"])
        shown = []
        for idx in rows[:examples]:
            values = ", ".join(f"{c}={_show(df.at[idx, c])}" for c in columns if c in df.columns)
            shown.append(f"row {idx}: {values}" if values else f"row {idx}")
        lines.append(
            f"  column {'/'.join(columns) or '<table>'}, rule {check}: {len(rows)} row(s); e.g. "
            + "; ".join(shown)
        )
    for (column, check), group in cases[~table_wide].groupby(
        ["column", "check"], sort=False, dropna=False
    ):
        column = "<table>" if pd.isna(column) else column
        rows = group.head(examples)
        shown = ", ".join(
            f"row {idx}: {_show(val)}" if pd.notna(idx) else _show(val)
            for idx, val in zip(rows["index"], rows["failure_case"], strict=True)
        )
        lines.append(f"  column {column}, rule {check}: {len(group)} row(s); e.g. {shown}")
    return "\n".join(lines)


def validate(df: pd.DataFrame, model: type[pa.DataFrameModel], source: str) -> pd.DataFrame:
    """Validate every rule at once (lazy) and raise one readable :class:`SchemaViolation`.

    In place: every caller validates the frame its step has just built, so pandera's defensive
    deep copy buys nothing and costs time and a second copy of the table at the step's peak
    (docs/performance.md). With copy-on-write on, a
    coerced column replaces the frame's own, never a column another frame shares.

    A Dask frame is validated partition by partition as the cluster computes it (lazily): a rule
    across rows (a unique id) then holds within each partition."""
    from loan_pipeline.core.partitions import is_dask, per_partition

    if is_dask(df):  # each partition as it is computed, on the worker computing it
        return per_partition(validate, df, model, source, label=f"validate_{source}")
    try:
        return model.validate(df, lazy=True, inplace=True)
    except pa.errors.SchemaErrors as err:
        raise SchemaViolation(describe_failures(err, df, model, source)) from None


MODELS: list[type[pa.DataFrameModel]] = [
    RawLoans,
    LoanBook,
    QuarantinedLoans,
    ScaledFeatures,
    BorrowerSegments,
    SegmentProfiles,
    RiskScores,
    RecoveryStrategies,
    CapacityGains,
    FairnessReport,
    PopulationStability,
    RollRates,
    ArrearsForecast,
    CureRates,
    StrategyBacktest,
]
# --- champion/challenger ------------------------------------------------------------------------


def _arm_fields(arm: str) -> dict:
    return {
        f"{arm}_borrowers": pa.Field(
            ge=0, description=f"Borrowers in the {arm} arm at t with an open loan, a count."
        ),
        f"{arm}_left_the_book": pa.Field(
            ge=0, description="Of those, gone at t+1 (outside the rate), a count."
        ),
        f"{arm}_resolved": pa.Field(
            ge=0, description="Of those, resolved at t+1 (any Recovery_Status), a count."
        ),
        f"{arm}_fully_recovered": pa.Field(
            ge=0, description="Of the resolved, Fully Recovered, a count."
        ),
        f"{arm}_rate": probability("fully_recovered / resolved, 0-1.", nullable=True),
        f"{arm}_resolved_balance": pa.Field(
            ge=0.0, description="Balance at t of the resolved, currency units."
        ),
        f"{arm}_recovered_balance": pa.Field(
            ge=0.0,
            description="Balance at t of the Fully Recovered, currency units (the book records "
            "no amounts recovered: a partial recovery counts 0).",
        ),
    }


_ARM = _arm_fields("champion") | _arm_fields("challenger")


class ChallengerUplift(_Compared):
    """A champion/challenger experiment at t judged by the outcomes at t+1: one row per
    experiment (none when no experiment ran at t, or on the first snapshot)."""

    experiment: Series[pd.StringDtype] = text(description="The experiment's name.")
    challenger_strategy: Series[pd.StringDtype] = text(
        isin=STRATEGIES,
        nullable=True,
        description="The strategy its challenger arm got (empty if that arm had nobody).",
    )
    champion_borrowers: Series[int] = _ARM["champion_borrowers"]
    champion_left_the_book: Series[int] = _ARM["champion_left_the_book"]
    champion_resolved: Series[int] = _ARM["champion_resolved"]
    champion_fully_recovered: Series[int] = _ARM["champion_fully_recovered"]
    champion_rate: Series[float] = _ARM["champion_rate"]
    champion_resolved_balance: Series[float] = _ARM["champion_resolved_balance"]
    champion_recovered_balance: Series[float] = _ARM["champion_recovered_balance"]
    challenger_borrowers: Series[int] = _ARM["challenger_borrowers"]
    challenger_left_the_book: Series[int] = _ARM["challenger_left_the_book"]
    challenger_resolved: Series[int] = _ARM["challenger_resolved"]
    challenger_fully_recovered: Series[int] = _ARM["challenger_fully_recovered"]
    challenger_rate: Series[float] = _ARM["challenger_rate"]
    challenger_resolved_balance: Series[float] = _ARM["challenger_resolved_balance"]
    challenger_recovered_balance: Series[float] = _ARM["challenger_recovered_balance"]
    uplift: Series[float] = pa.Field(
        ge=-1.0,
        le=1.0,
        nullable=True,
        description="challenger_rate - champion_rate: the uplift in the Fully Recovered share "
        "(empty when an arm has no resolved borrower).",
    )
    uplift_ci_low: Series[float] = pa.Field(
        ge=-1.0,
        le=1.0,
        nullable=True,
        description="Newcombe's hybrid score interval of the uplift (95 % by default), lower.",
    )
    uplift_ci_high: Series[float] = pa.Field(
        ge=-1.0, le=1.0, nullable=True, description="The same interval, upper."
    )
    significant: Series[bool] = pa.Field(
        description="The interval excludes 0: the arms' Fully Recovered shares differ."
    )
    balance_uplift: Series[float] = pa.Field(
        ge=-1.0,
        le=1.0,
        nullable=True,
        description="challenger's recovered_balance / resolved_balance minus champion's.",
    )
    target_uplift: Series[float] = pa.Field(
        ge=0.0,
        le=1.0,
        nullable=True,
        description="The uplift the sample size is for: the configured min_uplift, else the "
        "observed uplift's size.",
    )
    needed_per_arm: Series[pd.Int64Dtype] = pa.Field(
        ge=1,
        nullable=True,
        description="Resolved borrowers per arm a two-sided two-proportion test needs to "
        "detect target_uplift (5 % significance, 80 % power by default; Fleiss, Levin & Paik); "
        "empty when the target is 0 or an arm has no resolved borrower.",
    )
    still_needed_champion: Series[pd.Int64Dtype] = pa.Field(
        ge=0, nullable=True, description="needed_per_arm - champion_resolved, at least 0."
    )
    still_needed_challenger: Series[pd.Int64Dtype] = pa.Field(
        ge=0, nullable=True, description="needed_per_arm - challenger_resolved, at least 0."
    )

    class Config:
        name = "ChallengerUplift"
        description = "Champion/challenger uplift."
        strict = True
        coerce = True


MODELS.append(ChallengerUplift)


CATALOG_PATH = Path(__file__).with_name("schema_catalog.json")


def describe_model(model: type[pa.DataFrameModel]) -> dict:
    """A model's columns and table-wide rules as plain data (what the UI's Columns tab shows)."""
    schema = model.to_schema()
    columns = []
    for name, col in schema.columns.items():
        columns.append(
            {
                "name": str(name),
                "type": str(col.dtype),
                "description": col.description,
                "nullable": bool(col.nullable),
                "unique": bool(col.unique),
                "checks": [str(c.error or c.name) for c in (col.checks or [])],
            }
        )
    return {
        "columns": columns,
        "checks": [str(c.description or c.name) for c in schema.checks],
    }


def catalog() -> dict[str, dict]:
    """Every model described: the content of ``schema_catalog.json``."""
    return {model.__name__: describe_model(model) for model in MODELS}


def write_catalog(path: Path = CATALOG_PATH) -> Path:
    """Regenerate ``schema_catalog.json``: the asset definitions read it, so that loading the
    code location needs neither pandas nor pandera (a test keeps it equal to the models)."""
    path.write_text(json.dumps(catalog(), indent=1, sort_keys=True) + "\n")
    return path


if __name__ == "__main__":
    print(f"wrote {write_catalog()}")
