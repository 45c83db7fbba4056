"""Risk score -> recovery strategy."""

from __future__ import annotations

import numpy as np
import pandas as pd

from loan_pipeline.domain import POLICY_MODEL, STRATEGIES


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
    chosen = np.select([s > legal_above, s >= settlement_from], [0, 1], default=2)
    return _text(STRATEGIES, chosen, scores.index, "recovery_strategy")


def _text(labels: list[str], codes: np.ndarray, index: pd.Index, name: str | None) -> pd.Series:
    """``labels[codes]`` as an Arrow-backed text Series (no Python string per borrower)."""
    from loan_pipeline.core.frames import text_from_codes

    return pd.Series(text_from_codes(labels, codes), index=index, name=name)


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
        [0, 1],
        default=2,
    )
    return _text(STRATEGIES, chosen, loans.index, "recovery_strategy")


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
    words = [
        f"Days_Past_Due > {legal_days}",
        f"Num_Missed_Payments >= {legal_missed}",
        f"Days_Past_Due > {settlement_days}",
        f"Num_Missed_Payments >= {settlement_missed}",
        f"Days_Past_Due <= {settlement_days} and Num_Missed_Payments < {settlement_missed}",
    ]
    chosen = np.select(
        [
            dpd > legal_days,
            missed >= legal_missed,
            dpd > settlement_days,
            missed >= settlement_missed,
        ],
        [0, 1, 2, 3],
        default=4,
    )
    return _text(words, chosen, loans.index, None)


def strategy_table(
    loans: pd.DataFrame,
    segments: pd.DataFrame,
    scores: pd.DataFrame,
    policy: str,
    legal_above: float = 0.75,
    settlement_from: float = 0.50,
    **fallback: int,
) -> pd.DataFrame:
    """One row per borrower: ids, segment, score, strategy, policy and the three reasons, from
    the loan book (ids and arrears), the segments and the scores (a whole book, or one aligned
    partition of each). ``policy``: the score bands, or the rules-based fallback on arrears
    (``fallback``: its thresholds) with the rule that fired as the reason."""
    from loan_pipeline.core.frames import join_by_id, text_from_codes

    table = join_by_id(
        join_by_id(
            loans[["Borrower_ID", "Loan_ID", "Days_Past_Due", "Num_Missed_Payments"]], segments
        ),
        scores[["Borrower_ID", "risk_score", "reason_1", "reason_2", "reason_3"]],
    )
    if policy == POLICY_MODEL:
        strategy = assign_strategy(
            table["risk_score"], legal_above=legal_above, settlement_from=settlement_from
        )
    else:
        strategy = rules_based_strategy(table, **fallback)
        # the reasons are the rule that fired, not the (unused) model's
        table["reason_1"] = rules_based_reasons(table, **fallback).array
        none = text_from_codes([None], np.zeros(len(table), dtype="int64"))
        table["reason_2"] = none
        table["reason_3"] = none
    table = table.drop(columns=["Days_Past_Due", "Num_Missed_Payments"])
    table.insert(table.columns.get_loc("risk_score") + 1, "recovery_strategy", strategy.array)
    table.insert(
        table.columns.get_loc("recovery_strategy") + 1,
        "policy",
        text_from_codes([policy], np.zeros(len(table), dtype="int64")),
    )
    return table
