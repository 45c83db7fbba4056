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


def column_scaling(loans: pd.DataFrame, columns: list[str]) -> Scaling:
    """Each column's mean and population standard deviation (1 for a constant column, so it
    maps to zeros instead of dividing by zero), one column at a time."""
    unknown = [c for c in columns if c not in loans.columns]
    if unknown:
        raise ValueError(
            f"feature column(s) not numeric columns of the loan book: {', '.join(unknown)}"
        )
    means, scales = [], []
    for column in columns:
        values = loans[column].to_numpy(dtype="float64")
        scale = float(values.std())
        means.append(float(values.mean()))
        scales.append(scale if scale != 0 else 1.0)
    return Scaling(list(columns), means, scales)


def scale_features(loans: pd.DataFrame, columns: list[str]) -> tuple[pd.DataFrame, Scaling]:
    """Standardise ``columns`` to zero mean and unit variance, keyed by Borrower_ID.

    Same arithmetic as scikit-learn's ``StandardScaler`` (population std; a constant column
    gets scale 1). Built column by column, so a large book needs one column of scratch memory,
    not a copy of the whole matrix.
    """
    scaling = column_scaling(loans, columns)
    data: dict[str, object] = {"Borrower_ID": loans["Borrower_ID"].array}
    for column, mean, scale in zip(columns, scaling.means, scaling.scales, strict=True):
        data[column] = (loans[column].to_numpy(dtype="float64") - mean) / scale
    return pd.DataFrame(data), scaling


def feature_matrix(scaled: pd.DataFrame) -> np.ndarray:
    """The numeric part of a scaled-features frame, in column order."""
    return scaled.drop(columns="Borrower_ID").to_numpy(dtype="float64")
