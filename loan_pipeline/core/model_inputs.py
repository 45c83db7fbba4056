"""What the recommended risk model reads and what it learns: its input columns (pre-outcome
columns only, three engineered ratios, nearly collinear columns merged), the columns it leaves
out and why, and its targets."""

from __future__ import annotations

import numpy as np
import pandas as pd

from loan_pipeline.domain import RISK_CATEGORICAL, RISK_NUMERIC
from loan_pipeline.schemas import CATEGORIES

# Ratios a credit analyst reads first: instalment burden, share still owed, and the share of the
# balance that no collateral secures.
RISK_ENGINEERED = ["emi_to_income", "outstanding_share", "unsecured_share"]
# The model's inputs: the columns as given, except those another input already carries, since
# nearly collinear inputs share their effect arbitrarily (variance inflation in brackets, measured
# on a generated 50,000-row book with all of them in): Collateral_Value and Loan_Type (a Personal
# loan has no collateral; 69) by unsecured_share; Monthly_EMI (Outstanding_Loan_Amount /
# Loan_Tenure) by emi_to_income; Loan_Amount by outstanding_share and the balance (27).
MERGED: dict[str, str] = {
    "Collateral_Value": "unsecured_share",
    "Loan_Type": "unsecured_share",
    "Monthly_EMI": "emi_to_income",
    "Loan_Amount": "outstanding_share",
}
MODEL_NUMERIC = [c for c in RISK_NUMERIC if c not in MERGED] + RISK_ENGINEERED
MODEL_CATEGORICAL = [c for c in RISK_CATEGORICAL if c not in MERGED]
# Heavy-tailed amounts enter as log(1 + x).
LOG_COLUMNS = [
    "Monthly_Income",
    "Loan_Amount",
    "Collateral_Value",
    "Outstanding_Loan_Amount",
    "Monthly_EMI",
    "emi_to_income",
]

# Every loan-book column that is not a model input, and why.
EXCLUDED: dict[str, str] = {
    "Recovery_Status": "the outcome itself (the target is derived from it)",
    "Collection_Attempts": "outcome-side: recorded during collection, after the loan went bad",
    "Collection_Method": "outcome-side: chosen during collection, after the loan went bad",
    "Legal_Action_Taken": "outcome-side: taken during collection (every 'Yes' is Written Off)",
    "Age": "protected characteristic (fair lending): monitored in the fairness report, not used",
    "Gender": "protected characteristic (fair lending): monitored in the fairness report, not used",
    "Borrower_ID": "identifier",
    "Loan_ID": "identifier",
}

TARGETS = {
    "not_fully_recovered": ("Recovery_Status", lambda s: s != "Fully Recovered"),
    "written_off": ("Recovery_Status", lambda s: s == "Written Off"),
}
BASELINE_FEATURE = "Days_Past_Due"
# Rows turned into model inputs at a time when scoring: bounds memory on large books.
SCORE_CHUNK = 500_000


def risk_inputs(loans: pd.DataFrame, one_hot: bool = True) -> pd.DataFrame:
    """The recommended model's input columns: pre-outcome columns plus three ratios, and (unless
    ``one_hot`` is False) the categories one-hot encoded."""
    income = loans["Monthly_Income"].to_numpy(dtype="float64")
    amount = loans["Loan_Amount"].to_numpy(dtype="float64")
    outstanding = loans["Outstanding_Loan_Amount"].to_numpy(dtype="float64")
    collateral = loans["Collateral_Value"].to_numpy(dtype="float64")
    with np.errstate(divide="ignore", invalid="ignore"):
        emi_to_income = np.where(
            income > 0, loans["Monthly_EMI"].to_numpy(dtype="float64") / income, 0.0
        )
        outstanding_share = np.where(amount > 0, outstanding / amount, 0.0)
        covered = np.where(outstanding > 0, collateral / outstanding, 1.0)
    out = loans[RISK_NUMERIC].astype("float64")
    out["emi_to_income"] = np.clip(emi_to_income, 0, 10)
    out["outstanding_share"] = np.clip(outstanding_share, 0, 1)
    out["unsecured_share"] = 1.0 - np.clip(covered, 0, 1)
    # Categories one-hot encoded here, over the contract's fixed category sets, so the model sees
    # numbers only (scikit-learn's encoder would turn a million Arrow strings into Python
    # objects at every fit and every prediction). Named "<column>_<value>", as OneHotEncoder
    # names them.
    for col in RISK_CATEGORICAL if one_hot else []:
        for value in CATEGORIES[col]:
            same = loans[col].eq(value).to_numpy(dtype=bool, na_value=False)
            out[f"{col}_{value}"] = same.astype("float64")
    return out


def model_source(loans: pd.DataFrame) -> pd.DataFrame:
    """The columns ``risk_inputs`` reads, with the categories as pandas categoricals over the
    contract's sets (codes from Arrow's ``index_in``; a value outside the set, or a missing one,
    has no category). ``risk_inputs`` of it equals ``risk_inputs`` of ``loans`` (tested), but
    taking rows of it (every fold, every chunk) moves one-byte codes instead of strings, and the
    one-hot comparison is on codes."""
    import pyarrow as pa
    import pyarrow.compute as pc

    columns: dict[str, object] = {c: loans[c] for c in RISK_NUMERIC}
    for col in RISK_CATEGORICAL:
        codes = pc.index_in(
            pa.array(loans[col].array, pa.large_string()),
            value_set=pa.array(CATEGORIES[col], pa.large_string()),
        )
        codes = np.asarray(codes.fill_null(-1).to_numpy(zero_copy_only=False), dtype="int8")
        columns[col] = pd.Categorical.from_codes(codes, categories=CATEGORIES[col])
    return pd.DataFrame(columns, index=loans.index, copy=False)


def one_hot_columns(columns: list[str] = RISK_CATEGORICAL) -> list[str]:
    """The one-hot input columns of ``risk_inputs`` for categorical ``columns``, in order."""
    return [f"{col}_{value}" for col in columns for value in CATEGORIES[col]]


def category_groups(columns: list[str]) -> dict[str, list[int]]:
    """Each categorical input's positions among one-hot ``columns`` ("<input>_<value>")."""
    return {
        col: [i for i, c in enumerate(columns) if c.startswith(f"{col}_")]
        for col in RISK_CATEGORICAL
        if any(c.startswith(f"{col}_") for c in columns)
    }
