"""Monitoring: who gets which strategy (fairness), and whether the book has drifted (PSI)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from loan_pipeline.settings import STRATEGIES, STRATEGY_LEGAL

AGE_BANDS = [(0, 30, "under 30"), (30, 45, "30-44"), (45, 60, "45-59"), (60, 200, "60 and over")]
STRATEGY_COLUMNS = {
    s: f"share_{k}" for s, k in zip(STRATEGIES, ("legal", "settlement", "reminders"), strict=True)
}


def age_band(age: pd.Series) -> pd.Series:
    edges = [lo for lo, _, _ in AGE_BANDS] + [AGE_BANDS[-1][1]]
    labels = [label for _, _, label in AGE_BANDS]
    return pd.cut(age, bins=edges, right=False, labels=labels).astype(object)


def fairness_table(loans: pd.DataFrame, strategies: pd.DataFrame) -> pd.DataFrame:
    """Per Gender and per age band, next to the whole book: each strategy's rate, the mean
    score, and the observed rate of "not Fully Recovered" among resolved loans.

    ``unexplained_gap`` = (group's rate of the harshest strategy - overall rate) - (group's
    outcome rate - overall outcome rate): how much harsher (or softer) the group is treated than
    its outcomes alone would justify.
    """
    from loan_pipeline.core.frames import join_by_id

    df = join_by_id(
        strategies[["Borrower_ID", "risk_score", "recovery_strategy"]],
        loans[["Borrower_ID", "Gender", "Age", "Recovery_Status"]],
    )
    df["outcome"] = np.where(
        df["Recovery_Status"].isna(),
        np.nan,
        (df["Recovery_Status"] != "Fully Recovered").astype(float),
    )
    df["age_band"] = age_band(df["Age"])

    def summarise(frame: pd.DataFrame) -> dict:
        row = {"borrowers": len(frame)}
        shares = frame["recovery_strategy"].value_counts(normalize=True)
        for strategy, column in STRATEGY_COLUMNS.items():
            row[column] = float(shares.get(strategy, 0.0))
        row["mean_score"] = float(frame["risk_score"].mean())
        row["resolved"] = int(frame["outcome"].notna().sum())
        row["observed_not_fully_recovered"] = (
            float(frame["outcome"].mean()) if row["resolved"] else np.nan
        )
        # binomial standard errors, so a gap can be read against the noise of a small group
        legal = row[STRATEGY_COLUMNS[STRATEGY_LEGAL]]
        row["share_legal_se"] = float(np.sqrt(legal * (1 - legal) / max(row["borrowers"], 1)))
        observed = row["observed_not_fully_recovered"]
        row["observed_se"] = (
            float(np.sqrt(observed * (1 - observed) / row["resolved"]))
            if row["resolved"]
            else np.nan
        )
        return row

    overall = summarise(df)
    rows = [{"group_type": "all", "group": "all borrowers", **overall}]
    for group_type in ("Gender", "age_band"):
        for group, frame in df.groupby(group_type, sort=True, observed=True):
            rows.append({"group_type": group_type, "group": str(group), **summarise(frame)})
    table = pd.DataFrame(rows)
    harsh = STRATEGY_COLUMNS[STRATEGY_LEGAL]
    table["harshest_gap"] = table[harsh] - overall[harsh]
    table["outcome_gap"] = (
        table["observed_not_fully_recovered"] - overall["observed_not_fully_recovered"]
    )
    table["unexplained_gap"] = table["harshest_gap"] - table["outcome_gap"].fillna(0.0)
    return table


def fairness_flags(table: pd.DataFrame, max_gap: float = 0.10, min_group: int = 30) -> pd.DataFrame:
    """Groups of at least ``min_group`` borrowers whose unexplained gap exceeds ``max_gap``."""
    groups = table[table["group_type"] != "all"]
    return groups[(groups["borrowers"] >= min_group) & (groups["unexplained_gap"].abs() > max_gap)]


# --- population stability ---------------------------------------------------------------------

PSI_EPSILON = 1e-4


def distribution_profile(values: pd.Series, bins: int = 10) -> dict:
    """Decile edges of ``values`` and the share of values in each bin (the reference for PSI)."""
    x = values.dropna().to_numpy(dtype="float64")
    if len(x) == 0:
        return {"edges": [], "shares": [1.0]}
    edges = np.unique(np.quantile(x, np.linspace(0, 1, bins + 1)[1:-1]))
    return {"edges": edges.tolist(), "shares": _shares(x, edges).tolist()}


def _shares(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    counts = np.bincount(np.searchsorted(edges, x, side="right"), minlength=len(edges) + 1)
    return counts / max(counts.sum(), 1)


def psi(reference: dict, values: pd.Series) -> float:
    """Population stability index of ``values`` against a reference profile:
    sum over bins of (current - reference) x ln(current / reference)."""
    x = values.dropna().to_numpy(dtype="float64")
    expected = np.asarray(reference["shares"], dtype="float64")
    actual = _shares(x, np.asarray(reference["edges"], dtype="float64"))
    expected = np.clip(expected, PSI_EPSILON, None)
    actual = np.clip(actual, PSI_EPSILON, None)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def stability_table(previous: dict | None, current: pd.DataFrame) -> pd.DataFrame:
    """PSI of each column of ``current`` against ``previous`` profiles (NaN without one)."""
    rows = []
    for column in current.columns:
        ref = (previous or {}).get(column)
        value = psi(ref, current[column]) if ref else np.nan
        status = (
            "no previous run"
            if np.isnan(value)
            else "stable"
            if value < 0.1
            else "moderate shift"
            if value <= 0.25
            else "significant shift"
        )
        rows.append({"column": column, "psi": value, "status": status})
    return pd.DataFrame(rows)
