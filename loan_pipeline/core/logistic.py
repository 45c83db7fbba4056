"""The outcome model's logistic pipeline: how it is built, and how it scores a borrower (row by
row, so a score does not depend on which other rows are scored with it)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from loan_pipeline.core import model_inputs
from loan_pipeline.core.model_inputs import (
    LOG_COLUMNS,
    category_groups,
    risk_inputs,
)
from loan_pipeline.core.runtime import parallel_map


def logistic_pipeline(
    numeric: list[str], categorical: list[str], C: float = 1.0, constrain: bool = True
):
    """Inputs -> standardised numbers (logs of the heavy-tailed amounts; one weight-of-evidence
    column per categorical input) -> the sign-constrained logistic regression."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    from loan_pipeline.core.signed import CategoryRisk, SignConstrainedLogisticRegression

    logged = [c for c in numeric if c in LOG_COLUMNS]
    plain = [c for c in numeric if c not in LOG_COLUMNS]
    parts = []
    if logged:
        parts.append(
            (
                "log",
                Pipeline(
                    [
                        ("log1p", FunctionTransformer(np.log1p, feature_names_out="one-to-one")),
                        ("scale", StandardScaler()),
                    ]
                ),
                logged,
            )
        )
    if plain:
        parts.append(("num", StandardScaler(), plain))
    if categorical:  # one-hot (risk_inputs): one weight-of-evidence column per input
        parts.append(("cat", CategoryRisk(category_groups(categorical)), categorical))
    return Pipeline(
        [
            ("prepare", ColumnTransformer(parts, verbose_feature_names_out=False)),
            ("model", SignConstrainedLogisticRegression(C=C, constrain=constrain)),
        ]
    )


def probability(pipeline, X: pd.DataFrame, prepared: np.ndarray | None = None) -> np.ndarray:
    """A fitted logistic pipeline's probability of the positive class: its ``predict_proba``
    (to the last bit or two), computed row by row (each row's own sum of coefficient x input),
    so a borrower's score does not depend on which other rows are scored with it: a book scored
    whole and in partitions gives the same numbers, bit for bit. ``prepared``: ``X`` through
    the pipeline's preparation, when the caller has it already."""
    if prepared is None:
        prepared = pipeline.named_steps["prepare"].transform(X)
    model = pipeline.named_steps["model"]
    z = (np.asarray(prepared, dtype="float64") * model.coef_[0]).sum(axis=1) + model.intercept_[0]
    return 1.0 / (1.0 + np.exp(-z))


def pipeline_scores(pipelines: list, loans: pd.DataFrame) -> list[np.ndarray]:
    """Each fitted pipeline's score of every borrower of ``loans`` (a frame, or one partition of
    it): ``probability``, so the same bits in any partitioning. ``SCORE_CHUNK`` rows at a time,
    side by side on the cores, so memory stays bounded on a large book; a chunk's inputs are
    made once for all the pipelines (they cost about as much as a pipeline's scoring)."""
    out = [np.empty(len(loans)) for _ in pipelines]

    def chunk(start: int) -> None:
        rows = loans.iloc[start : start + model_inputs.SCORE_CHUNK]
        X = risk_inputs(rows)
        for scores, pipeline in zip(out, pipelines, strict=True):
            scores[start : start + len(rows)] = probability(pipeline, X)

    parallel_map(chunk, range(0, len(loans), model_inputs.SCORE_CHUNK))
    return out
