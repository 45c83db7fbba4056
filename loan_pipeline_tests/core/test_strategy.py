from __future__ import annotations

import pandas as pd
import pytest

from loan_pipeline.core.features import scale_features
from loan_pipeline.core.strategy import assign_strategy
from loan_pipeline.domain import STRATEGY_LEGAL, STRATEGY_REMINDERS, STRATEGY_SETTLEMENT


def test_notebook_bands_at_their_edges():
    scores = pd.Series([0.0, 0.4999, 0.5, 0.6, 0.75, 0.7501, 1.0])
    assert assign_strategy(scores).tolist() == [
        STRATEGY_REMINDERS,
        STRATEGY_REMINDERS,
        STRATEGY_SETTLEMENT,
        STRATEGY_SETTLEMENT,
        STRATEGY_SETTLEMENT,
        STRATEGY_LEGAL,
        STRATEGY_LEGAL,
    ]


def test_thresholds_are_configurable_and_checked():
    assert assign_strategy(pd.Series([0.3]), legal_above=0.25, settlement_from=0.1).tolist() == [
        STRATEGY_LEGAL
    ]
    with pytest.raises(ValueError, match="must not exceed"):
        assign_strategy(pd.Series([0.3]), legal_above=0.4, settlement_from=0.6)


def test_scaling_matches_population_std_and_survives_constant_columns():
    df = pd.DataFrame({"Borrower_ID": ["a", "b", "c"], "x": [1.0, 2.0, 3.0], "c": [5.0, 5.0, 5.0]})
    scaled, scaling = scale_features(df, ["x", "c"])
    assert scaled["x"].round(6).tolist() == [-1.224745, 0.0, 1.224745]
    assert scaled["c"].tolist() == [0.0, 0.0, 0.0]
    assert scaling.scales == [pytest.approx(0.816496580927726), 1.0]
    with pytest.raises(ValueError, match="not numeric columns of the loan book: nope"):
        scale_features(df, ["nope"])
