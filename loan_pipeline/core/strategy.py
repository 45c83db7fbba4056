"""Risk score -> recovery strategy."""

from __future__ import annotations

import numpy as np
import pandas as pd

from loan_pipeline.settings import STRATEGY_LEGAL, STRATEGY_REMINDERS, STRATEGY_SETTLEMENT


def assign_strategy(
    scores: pd.Series, legal_above: float = 0.75, settlement_from: float = 0.50
) -> pd.Series:
    """The notebook's bands: score > ``legal_above`` -> legal action; ``settlement_from`` <= score
    <= ``legal_above`` -> settlement offers; below -> automated reminders."""
    if settlement_from > legal_above:
        raise ValueError(
            f"settlement_from ({settlement_from}) must not exceed legal_above ({legal_above})"
        )
    s = scores.to_numpy(dtype="float64")
    chosen = np.select(
        [s > legal_above, s >= settlement_from],
        [STRATEGY_LEGAL, STRATEGY_SETTLEMENT],
        default=STRATEGY_REMINDERS,
    )
    return pd.Series(chosen, index=scores.index, name="recovery_strategy", dtype=object)


def rules_based_strategy(
    loans: pd.DataFrame,
    legal_days: int = 90,
    legal_missed: int = 6,
    settlement_days: int = 30,
    settlement_missed: int = 2,
) -> pd.Series:
    """The fallback when no model beats the base rate: a policy on arrears alone.

    Days_Past_Due > ``legal_days`` or Num_Missed_Payments >= ``legal_missed`` -> legal action;
    Days_Past_Due > ``settlement_days`` or Num_Missed_Payments >= ``settlement_missed`` ->
    settlement offers; otherwise automated reminders.
    """
    dpd = loans["Days_Past_Due"].to_numpy()
    missed = loans["Num_Missed_Payments"].to_numpy()
    chosen = np.select(
        [
            (dpd > legal_days) | (missed >= legal_missed),
            (dpd > settlement_days) | (missed >= settlement_missed),
        ],
        [STRATEGY_LEGAL, STRATEGY_SETTLEMENT],
        default=STRATEGY_REMINDERS,
    )
    return pd.Series(chosen, index=loans.index, name="recovery_strategy", dtype=object)


def rules_based_reasons(
    loans: pd.DataFrame,
    legal_days: int = 90,
    legal_missed: int = 6,
    settlement_days: int = 30,
    settlement_missed: int = 2,
) -> pd.Series:
    """Why the fallback policy chose each borrower's strategy, in words."""
    dpd = loans["Days_Past_Due"].to_numpy()
    missed = loans["Num_Missed_Payments"].to_numpy()
    words = np.select(
        [
            dpd > legal_days,
            missed >= legal_missed,
            dpd > settlement_days,
            missed >= settlement_missed,
        ],
        [
            f"Days_Past_Due > {legal_days}",
            f"Num_Missed_Payments >= {legal_missed}",
            f"Days_Past_Due > {settlement_days}",
            f"Num_Missed_Payments >= {settlement_missed}",
        ],
        default=f"Days_Past_Due <= {settlement_days} and Num_Missed_Payments < {settlement_missed}",
    )
    return pd.Series(words, index=loans.index, dtype=object)
