"""The strategy back-test against an independent computation on a small hand-made pair of
snapshots, and the planted strategy effect of the follow-up generator recovered, within its
interval, when strategies overlap in score (a randomised assignment)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from loan_pipeline.core import backtest as bt
from loan_pipeline.core.follow_up import follow_up, outcome_probabilities
from loan_pipeline.core.generator import generate_loan_book
from loan_pipeline.domain import STRATEGIES, STRATEGY_LEGAL, STRATEGY_REMINDERS, STRATEGY_SETTLEMENT

LEGAL, SETTLE, REMIND = STRATEGY_LEGAL, STRATEGY_SETTLEMENT, STRATEGY_REMINDERS
OPTIONS = {"reference": REMIND, "partial_share": 0.4, "band_width": 0.5}

# at t: B1-B6 open with a strategy, B7 already resolved, B8 open without a strategy, B9 open and
# gone at t+1; at t+1: B1-B5 resolved, B6 still open, B10 new
PREVIOUS = pd.DataFrame(
    {
        "Borrower_ID": [f"B{i}" for i in range(1, 10)],
        "recovery_strategy": [LEGAL, LEGAL, REMIND, REMIND, LEGAL, REMIND, REMIND, None, SETTLE],
        "risk_score": [0.9, 0.2, 0.3, 0.1, 0.5, 0.2, 0.1, 0.3, 0.7],
        "segment_name": ["a", "a", "a", "b", "b", "b", "a", "a", "b"],
        "Outstanding_Loan_Amount": [100.0, 200.0, 300.0, 400.0, 500.0, 600.0, 7.0, 8.0, 9.0],
        "Recovery_Status": [None] * 6 + ["Written Off", None, None],
    }
)
CURRENT = pd.DataFrame(
    {
        "Borrower_ID": ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B10"],
        "Recovery_Status": [
            "Fully Recovered",
            "Written Off",
            "Fully Recovered",
            "Partially Recovered",
            "Partially Recovered",
            None,
            "Written Off",
            "Fully Recovered",
            None,
        ],
    }  # fmt: skip
)


def test_counts_shares_balances_and_differences_by_hand():
    table = bt.strategy_backtest(PREVIOUS, CURRENT, **OPTIONS).set_index(
        ["group_by", "group", "recovery_strategy"]
    )
    # cohort: B1 (legal, band 0.5-1.0, FR, 100), B2 (legal, 0.0-0.5, WO, 200), B3 (reminders,
    # 0.0-0.5, FR, 300), B4 (reminders, 0.0-0.5, PR, 400), B5 (legal, 0.5-1.0, PR, 500)
    legal = table.loc[("all", "all", LEGAL)]
    assert (legal["resolved"], legal["fully_recovered"], legal["partially_recovered"]) == (3, 1, 1)
    assert legal["balance_t"] == 800.0
    assert legal["recovered_balance"] == pytest.approx(100 + 0.4 * 500)
    assert legal["recovery_rate"] == pytest.approx(300 / 800)
    remind = table.loc[("all", "all", REMIND)]
    assert (remind["resolved"], remind["fully_recovered"]) == (2, 1)
    assert remind["recovered_balance"] == pytest.approx(300 + 0.4 * 400)
    assert np.isnan(remind["difference"])
    assert legal["difference"] == pytest.approx(1 / 3 - 1 / 2)
    # the bands: only 0.0-0.5 holds both (legal B2 WO; reminders B3 FR, B4 PR)
    low = table.loc[("score_band", "0.0-0.5", LEGAL)]
    assert (low["resolved"], low["fully_recovered"], low["reference_resolved"]) == (1, 0, 2)
    assert low["difference"] == pytest.approx(-0.5)
    high = table.loc[("score_band", "0.5-1.0", LEGAL)]
    assert (high["resolved"], high["reference_resolved"]) == (2, 0)
    assert np.isnan(high["difference"])
    # pooled over the bands with both: only B2's band, so the same difference, n of that band
    pooled = table.loc[("band_adjusted", "bands with both", LEGAL)]
    assert (pooled["resolved"], pooled["reference_resolved"]) == (1, 2)
    assert pooled["difference"] == pytest.approx(-0.5)
    assert SETTLE not in table.index.get_level_values("recovery_strategy")  # B9 left the book
    segment_b = table.loc[("segment_name", "b", LEGAL)]
    assert (segment_b["resolved"], segment_b["reference_resolved"]) == (1, 1)
    assert bt.cycle_counts(PREVIOUS, CURRENT) == {
        "borrowers_at_t": 9,
        "already_resolved_at_t": 1,
        "open_without_strategy": 1,
        "open_with_strategy": 7,
        "resolved_in_cycle": 5,
        "still_open": 1,
        "left_the_book": 1,
    }


def test_intervals_are_wilson_and_newcombe():
    table = bt.strategy_backtest(PREVIOUS, CURRENT, **OPTIONS)
    row = table[(table["group_by"] == "all") & (table["recovery_strategy"] == LEGAL)].iloc[0]
    # Wilson, 1 of 3, written out: centre (p + z²/2n) / (1 + z²/n) ± ...
    z, p, n = 1.959964, 1 / 3, 3
    centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z / (1 + z**2 / n) * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((centre - half, centre + half), 1e-5)
    # Newcombe's hybrid: d - sqrt((p1 - l1)² + (u2 - p2)²), with the reminders' 1 of 2
    p2, n2 = 0.5, 2
    c2 = (p2 + z**2 / (2 * n2)) / (1 + z**2 / n2)
    h2 = z / (1 + z**2 / n2) * np.sqrt(p2 * (1 - p2) / n2 + z**2 / (4 * n2**2))
    low = (p - p2) - np.sqrt((p - (centre - half)) ** 2 + ((c2 + h2) - p2) ** 2)
    high = (p - p2) + np.sqrt(((centre + half) - p) ** 2 + (p2 - (c2 - h2)) ** 2)
    assert (row["difference_low"], row["difference_high"]) == pytest.approx((low, high), 1e-5)


def test_score_bands_have_fixed_edges():
    scores = pd.Series([0.0, 0.0999, 0.1, 0.75, 0.9999, 1.0])
    assert bt.score_band(scores, 0.1).tolist() == [
        "0.0-0.1", "0.0-0.1", "0.1-0.2", "0.7-0.8", "0.9-1.0", "0.9-1.0",
    ]  # fmt: skip
    assert bt.score_band(pd.Series([0.3, 0.8]), 0.25).tolist() == ["0.25-0.50", "0.75-1.00"]


def test_nothing_resolved_gives_an_empty_table_and_says_so():
    still_open = CURRENT.assign(Recovery_Status=None)
    table = bt.strategy_backtest(PREVIOUS.iloc[:6], still_open.iloc[:6], **OPTIONS)
    assert table.empty and list(table.columns) == bt.BACKTEST_COLUMNS
    assert bt.headline(table) == "no borrower with a strategy at t was resolved at t+1"


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="reference strategy"):
        bt.strategy_backtest(PREVIOUS, CURRENT, **{**OPTIONS, "reference": "calls"})
    with pytest.raises(ValueError, match="partial recovery share"):
        bt.strategy_backtest(PREVIOUS, CURRENT, **{**OPTIONS, "partial_share": 1.5})


def test_a_planted_effect_is_recovered_when_strategies_overlap_in_score():
    """A randomised assignment (every strategy in every band): the band-adjusted difference of
    settlement over reminders contains the planted effect's expected size (the mean of p' - p
    over the settlement loans resolving, from the generator's own probabilities) and excludes
    0; legal action, with no effect, is within its interval of the expected difference too."""
    book = generate_loan_book(30_000, seed=3, open_fraction=1.0)
    rng = np.random.default_rng(4)
    strategies = pd.DataFrame(
        {"Borrower_ID": book["Borrower_ID"], "recovery_strategy": rng.choice(STRATEGIES, len(book))}
    )
    later = follow_up(book, 5, strategies=strategies, strategy_effect={SETTLE: 0.10})
    p = outcome_probabilities(book)[:, 0]
    previous = book.assign(
        recovery_strategy=strategies["recovery_strategy"],
        risk_score=1 - p,  # a perfectly calibrated score: the bands are bands of true risk
        segment_name="all",
    )
    table = bt.strategy_backtest(
        previous, later, reference=REMIND, partial_share=0.5, band_width=0.1
    )
    adjusted = table[table["group_by"] == "band_adjusted"]
    pooled = adjusted[adjusted["reference_strategy"] == REMIND].set_index("recovery_strategy")
    resolved = (
        later["Recovery_Status"].notna().to_numpy() & book["Recovery_Status"].isna().to_numpy()
    )
    settle = resolved & (strategies["recovery_strategy"] == SETTLE).to_numpy()
    planted = float(np.mean(np.minimum(p[settle] + 0.10, 1) - p[settle]))
    assert 0.08 < planted <= 0.10
    row = pooled.loc[SETTLE]
    assert row["difference_low"] <= planted <= row["difference_high"]
    assert row["difference_low"] > 0  # the effect is seen, not only allowed
    legal = pooled.loc[LEGAL]
    assert legal["difference_low"] <= 0 <= legal["difference_high"]
    # every other pair, pooled the same way: settlement beats legal action by the planted effect
    # for the same risk, and legal action falls short of settlement by as much
    pairs = adjusted.set_index(["recovery_strategy", "reference_strategy"])
    assert sorted(pairs.index) == sorted((s, r) for s in STRATEGIES for r in STRATEGIES if s != r)
    settle_vs_legal = pairs.loc[(SETTLE, LEGAL)]
    assert settle_vs_legal["difference_low"] <= planted <= settle_vs_legal["difference_high"]
    assert settle_vs_legal["difference_low"] > 0
    legal_vs_settle = pairs.loc[(LEGAL, SETTLE)]
    assert legal_vs_settle["difference_low"] <= -planted <= legal_vs_settle["difference_high"]
    assert legal_vs_settle["difference_high"] < 0
    # the rows against the configured reference are the ones the band rows hold
    assert pairs.loc[(SETTLE, REMIND), "difference"] == row["difference"]
    said = bt.headline(table)
    assert (
        f"settlement vs legal action, same score band: Fully Recovered "
        f"{settle_vs_legal['difference']:+.3f}" in said
    )
    assert said.index("vs reminders") < said.index("settlement vs legal action")
    # the crude difference agrees too: the assignment was random, so risk is balanced
    crude = table[(table["group_by"] == "all") & (table["recovery_strategy"] == SETTLE)].iloc[0]
    assert crude["difference_low"] <= planted <= crude["difference_high"]
