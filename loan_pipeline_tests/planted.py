"""What the generator's planted relation (loan_pipeline/core/generator.py's docstring) should show
as reason codes:

    burden = 0.8 z_dpd + 0.6 z_missed + 0.5 z_emi + 0.5 z_share + 0.4 z_uncovered

with z_emi on ln(Monthly_EMI / Monthly_Income) (Monthly_EMI = Outstanding / Loan_Tenure),
z_share on Outstanding / Loan_Amount and z_uncovered on 1 - min(Collateral_Value / Outstanding, 1).
Each term may surface through a ratio or a column it is made of, on the side that raises burden
(or, for a borrower scored below the base rate, the other side, framed as lowering risk).
Deliberately absent: Age, Gender, Employment_Type, Num_Dependents, Interest_Rate, which the
docstring says have no effect.
"""

from __future__ import annotations

import re

# reason label -> the side of the average that raises burden
PLANTED_SIDES = {
    "Days past due": "high",
    "Missed payments": "high",
    "Instalment to income": "high",
    "Monthly income": "low",
    "Loan tenure (months)": "low",
    "Share of the loan still owed": "high",
    "Outstanding balance": "high",
    "Share of the balance without collateral": "high",
}
# Payment_History = Missed marks the rows with 4-12 missed payments
PLANTED_CATEGORIES = {"Payment history: Missed"}


def is_planted(kind: str) -> bool:
    """Whether a reason kind (``core.validation.reason_kinds``: "Days past due (high)") points at
    the planted relation, on the side it acts."""
    if kind in PLANTED_CATEGORIES:
        return True
    found = re.fullmatch(r"(?P<label>.+) \((?P<side>high|low)(?P<lowers>, lowers risk)?\)", kind)
    if found is None or found["label"] not in PLANTED_SIDES:
        return False
    raises = found["side"] == PLANTED_SIDES[found["label"]]
    return raises != bool(found["lowers"])
