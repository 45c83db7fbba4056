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
