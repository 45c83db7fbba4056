"""The contracts of the tables that compare two snapshots: roll rates, the forecast, cure
rates, the back-test and the challenger's uplift."""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa
from pandera.typing.pandas import Series

from loan_pipeline.domain import (
    BACKTEST_GROUPINGS,
    BUCKETS,
    CURE_DIMENSIONS,
    FROM_BUCKETS,
    STRATEGIES,
    TO_BUCKETS,
)
from loan_pipeline.schemas.loan_book import text
from loan_pipeline.schemas.outputs import probability


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
