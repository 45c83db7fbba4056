"""The contracts of the tables a run makes from the loan book: features, segments, scores,
strategies, capacity, fairness and drift."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.typing.pandas import Series

from loan_pipeline.domain import (
    ARMS,
    NO_STABLE_SEGMENTATION,
    POLICIES,
    PSI_MODERATE,
    PSI_SIGNIFICANT,
    PSI_STATUSES,
    STABLE_SEGMENTATION,
    STRATEGIES,
)
from loan_pipeline.schemas.loan_book import text

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
