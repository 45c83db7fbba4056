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


def column_moments(loans: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Per column: rows, mean and variance (population) of a frame or one partition of it."""
    unknown = [c for c in columns if c not in loans.columns]
    if unknown:
        raise ValueError(
            f"feature column(s) not numeric columns of the loan book: {', '.join(unknown)}"
        )
    rows = []
    for column in columns:
        values = loans[column].to_numpy(dtype="float64")
        n = len(values)
        rows.append(
            (column, n, float(values.mean()) if n else 0.0, float(values.var()) if n else 0.0)
        )
    return pd.DataFrame(rows, columns=["column", "n", "mean", "var"])


def scaling_from_moments(parts: list[pd.DataFrame]) -> Scaling:
    """The standardisation of the whole frame from its parts' moments (Chan et al.'s pairwise
    update; one part: its own mean and standard deviation, exactly). A constant column gets
    scale 1, so it maps to zeros instead of dividing by zero."""
    columns = list(parts[0]["column"])
    means, scales = [], []
    for i in range(len(columns)):
        n, mean, m2 = 0, 0.0, 0.0
        if len(parts) == 1:
            n, mean, var = (parts[0][c].iloc[i] for c in ("n", "mean", "var"))
            scale = float(np.sqrt(var))
        else:
            for part in parts:
                nb, mb, vb = (part[c].iloc[i] for c in ("n", "mean", "var"))
                if nb == 0:
                    continue
                delta = mb - mean
                total = n + nb
                mean += delta * nb / total
                m2 += vb * nb + delta * delta * n * nb / total
                n = total
            scale = float(np.sqrt(m2 / n)) if n else 0.0
        means.append(float(mean))
        scales.append(scale if scale != 0 else 1.0)
    return Scaling(columns, means, scales)


def column_scaling(loans: pd.DataFrame, columns: list[str]) -> Scaling:
    """Each column's mean and population standard deviation (1 for a constant column), from
    per-partition moments when ``loans`` is a Dask frame."""
    from loan_pipeline.core.partitions import summarise

    return summarise(column_moments, scaling_from_moments, loans, columns)


def apply_scaling(loans: pd.DataFrame, scaling: Scaling) -> pd.DataFrame:
    """``scaling``'s columns standardised, keyed by Borrower_ID (a frame or one partition).
    Built column by column, so a large book needs one column of scratch memory, not a copy of
    the whole matrix."""
    data: dict[str, object] = {"Borrower_ID": loans["Borrower_ID"].array}
    for column, mean, scale in zip(scaling.columns, scaling.means, scaling.scales, strict=True):
        data[column] = (loans[column].to_numpy(dtype="float64") - mean) / scale
    return pd.DataFrame(data)


def scale_features(loans: pd.DataFrame, columns: list[str]) -> tuple[pd.DataFrame, Scaling]:
    """Standardise ``columns`` to zero mean and unit variance, keyed by Borrower_ID: the same
    arithmetic as scikit-learn's ``StandardScaler`` (population std; a constant column gets
    scale 1). ``loans`` may be a Dask frame: the scaling is then computed from per-partition
    moments, and the result is scaled partition by partition."""
    from loan_pipeline.core.partitions import per_partition

    scaling = column_scaling(loans, columns)
    return per_partition(apply_scaling, loans, scaling), scaling


def feature_matrix(scaled: pd.DataFrame) -> np.ndarray:
    """The numeric part of a scaled-features frame, in column order."""
    return scaled.drop(columns="Borrower_ID").to_numpy(dtype="float64")
