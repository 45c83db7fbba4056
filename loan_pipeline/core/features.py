"""Feature selection and standardisation."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Scaling:
    """The fitted standardisation: per-feature mean and scale (population standard deviation)."""

    columns: list[str]
    means: list[float]
    scales: list[float]


def scale_features(loans: pd.DataFrame, columns: list[str]) -> tuple[pd.DataFrame, Scaling]:
    """Standardise ``columns`` to zero mean and unit variance, keyed by Borrower_ID.

    Same arithmetic as scikit-learn's ``StandardScaler`` (population std; a constant column
    gets scale 1 so it maps to zeros instead of dividing by zero).
    """
    unknown = [c for c in columns if c not in loans.columns]
    if unknown:
        raise ValueError(f"feature column(s) not in the loan book: {', '.join(unknown)}")
    values = loans[columns].to_numpy(dtype="float64")
    means = values.mean(axis=0)
    scales = values.std(axis=0)
    scales[scales == 0] = 1.0
    scaled = pd.DataFrame((values - means) / scales, columns=columns, index=loans.index)
    scaled.insert(0, "Borrower_ID", loans["Borrower_ID"].to_numpy())
    return scaled.reset_index(drop=True), Scaling(list(columns), means.tolist(), scales.tolist())


def feature_matrix(scaled: pd.DataFrame) -> np.ndarray:
    """The numeric part of a scaled-features frame, in column order."""
    return scaled.drop(columns="Borrower_ID").to_numpy(dtype="float64")
