"""The fitted risk model's types: ``RiskModel`` (what the risk_model asset stores) and the
``OutcomeModel`` each of its recommended models is, with the scores it gives.

Stored models are pickles, and a pickle names a class by its module: ``models/risk_model.pkl``
of every kept snapshot and the drift baseline's frozen model, carried from snapshot to snapshot,
load only while these classes are ``loan_pipeline.core.risk``'s. So they stay here, and the
fitting, the evaluation and the scoring live in modules of their own (``risk_methods``,
``outcome_model``, ``evaluation``, ``scoring``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from loan_pipeline.core.folds import folds_and_draws
from loan_pipeline.core.logistic import probability
from loan_pipeline.core.model_inputs import TARGETS, risk_inputs
from loan_pipeline.core.runtime import single_threaded


@dataclass
class OutcomeModel:
    """One outcome model with its out-of-fold evaluation.

    Each borrower's fold comes from its Borrower_ID alone (``folds_and_draws``), so a borrower's
    out-of-fold score is computed wherever its row is (the fold models travel with the model),
    and the fitting samples are the same rows whether the book is one frame or in partitions.
    """

    target: str
    estimator: object  # the logistic pipeline fitted on (a sample of) all resolved loans
    explainer: object  # the same pipeline: reason codes decompose the score's own log-odds
    fold_estimators: list  # fold k's pipeline, fitted without fold k: its borrowers' scores
    folds: int
    seed: int
    metrics: dict[str, float]
    calibration: pd.DataFrame
    coefficients: pd.DataFrame
    center: np.ndarray  # mean transformed input of the training loans (reason codes)
    gains: pd.DataFrame | None = None  # decile gains table of the out-of-fold scores
    signs: pd.DataFrame | None = None  # each coefficient against its univariate direction

    @property
    def signs_agree(self) -> bool:
        return self.signs is None or bool(self.signs["agrees"].all())

    def observed(self, loans: pd.DataFrame) -> np.ndarray:
        """The 0/1 target of each loan (NaN: open loan)."""
        column, rule = TARGETS[self.target]
        status = loans[column]
        out = rule(status).to_numpy(dtype="float64", na_value=np.nan)
        out[status.isna().to_numpy()] = np.nan
        return out

    def out_of_fold(self, loans: pd.DataFrame, X: pd.DataFrame | None = None) -> np.ndarray:
        """Each resolved loan's score from the fold model that never saw it (NaN: open loan).
        ``X``: ``risk_inputs`` of ``loans``, when the caller has it already."""
        resolved = loans[TARGETS[self.target][0]].notna().to_numpy()
        fold, _ = folds_and_draws(loans["Borrower_ID"], self.folds, self.seed)
        out = np.full(len(loans), np.nan)
        X = risk_inputs(loans) if X is None else X
        with single_threaded():
            for k, fitted in enumerate(self.fold_estimators):
                rows = np.flatnonzero(resolved & (fold == k))
                if len(rows):
                    out[rows] = probability(fitted, X.iloc[rows])
        return out


@dataclass
class RiskModel:
    """The fitted risk model(s) with their evaluation."""

    method: str
    estimator: object
    features: list[str]
    target: str
    metrics: dict[str, float] = field(default_factory=dict)
    test_ids: list[str] = field(default_factory=list)  # notebook: the held-out borrowers
    labels: pd.Series | None = None  # notebook: Borrower_ID -> training label
    primary: OutcomeModel | None = None  # recommended: not Fully Recovered
    secondary: OutcomeModel | None = None  # recommended: Written Off
    beats_baseline: bool = True
    min_skill: float = 0.0
    excluded: dict[str, str] = field(default_factory=dict)
    # the rules-based fallback's evidence: the outcome rate by arrears band
    # (``validation.arrears_evidence``), shown beside the model's own
    fallback_evidence: pd.DataFrame | None = None

    @property
    def signs_agree(self) -> bool:
        """Every coefficient of the model that sets the strategies agrees in sign with its
        input's own relation to the outcome (always so for the notebook's forest, which has
        none)."""
        return self.primary is None or self.primary.signs_agree

    def contradicting_signs(self) -> dict[str, float]:
        """The inputs whose coefficient in the model that sets the strategies contradicts their
        own relation to the outcome, each with its coefficient to four decimals."""
        signs = self.primary.signs if self.primary is not None else None
        if signs is None:
            return {}
        wrong = signs[~signs["agrees"]]
        return dict(zip(wrong["input"], wrong["coefficient"].round(4), strict=True))

    @property
    def usable(self) -> bool:
        """The strategies may use the scores: better than the base rate, reasons right-signed."""
        return self.beats_baseline and self.signs_agree
