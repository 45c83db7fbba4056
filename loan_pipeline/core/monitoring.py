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


def _age_band_codes(age: pd.Series) -> tuple[np.ndarray, list[str]]:
    """Index into AGE_BANDS per borrower (-1 outside every band or missing), and the labels."""
    edges = np.array([lo for lo, _, _ in AGE_BANDS] + [AGE_BANDS[-1][1]], dtype="float64")
    x = age.to_numpy(dtype="float64", na_value=np.nan)
    codes = np.searchsorted(edges, x, side="right") - 1
    codes[np.isnan(x) | (codes >= len(AGE_BANDS))] = -1
    return codes, [label for _, _, label in AGE_BANDS]


def _category_codes(values: pd.Series) -> tuple[np.ndarray, list[str]]:
    """Codes into the sorted distinct values (-1 for missing), as ``groupby(sort=True)`` orders
    its groups; Arrow's dictionary encoding, not a hash of Python objects."""
    codes, uniques = pd.factorize(values, sort=True)
    return np.asarray(codes, dtype="int64"), [str(u) for u in uniques]


def _strategy_codes(chosen: pd.Series) -> np.ndarray:
    """Index into STRATEGIES per borrower; -1 for another value, -2 for none (value_counts,
    which the shares follow, leaves missing values out of the denominator)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    text = pa.array(chosen.astype("string[pyarrow]"), pa.large_string())
    found = pc.index_in(text, value_set=pa.array(STRATEGIES, pa.large_string()))
    codes = found.fill_null(-1).to_numpy(zero_copy_only=False).astype("int64")
    codes[chosen.isna().to_numpy()] = -2
    return codes


def _group_summaries(
    codes: np.ndarray,
    n_groups: int,
    strategy: np.ndarray,
    score: np.ndarray,
    outcome: np.ndarray,
) -> list[dict]:
    """``summarise`` of the fairness table for each group code 0..n_groups-1, from counts and
    sums (np.bincount): one pass over the book, no sub-frame per group."""
    keep = codes >= 0
    g, s, sc, out = codes[keep], strategy[keep], score[keep], outcome[keep]
    n_strategies = len(STRATEGIES)

    def count(mask: np.ndarray | None = None, weights: np.ndarray | None = None) -> np.ndarray:
        if mask is None:
            return np.bincount(g, weights=weights, minlength=n_groups)
        w = None if weights is None else weights[mask]
        return np.bincount(g[mask], weights=w, minlength=n_groups)

    borrowers = count()
    named = s >= 0
    per_strategy = np.bincount(
        g[named] * n_strategies + s[named], minlength=n_groups * n_strategies
    ).reshape(n_groups, n_strategies)
    has_strategy = count(s != -2)
    scored = ~np.isnan(sc)
    score_n, score_sum = count(scored), count(scored, sc)
    resolved_mask = ~np.isnan(out)
    resolved, outcome_sum = count(resolved_mask), count(resolved_mask, out)
    rows = []
    for i in range(n_groups):
        row = {"borrowers": int(borrowers[i])}
        for j, column in enumerate(STRATEGY_COLUMNS.values()):
            row[column] = float(per_strategy[i, j] / has_strategy[i]) if has_strategy[i] else 0.0
        row["mean_score"] = float(score_sum[i] / score_n[i]) if score_n[i] else np.nan
        row["resolved"] = int(resolved[i])
        row["observed_not_fully_recovered"] = (
            float(outcome_sum[i] / resolved[i]) if resolved[i] else np.nan
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
        rows.append(row)
    return rows


def fairness_table(loans: pd.DataFrame, strategies: pd.DataFrame) -> pd.DataFrame:
    """Per Gender and per age band, next to the whole book: each strategy's rate, the mean
    score, and the observed rate of "not Fully Recovered" among resolved loans.

    ``unexplained_gap`` = (group's rate of the harshest strategy - overall rate) - (group's
    outcome rate - overall outcome rate): how much harsher (or softer) the group is treated than
    its outcomes alone would justify.

    Computed from per-group counts and sums over code arrays, so a ten-million-row book costs a
    few arrays of numbers, not a copy of the book per group.
    """
    from loan_pipeline.core.frames import join_by_id

    df = join_by_id(
        strategies[["Borrower_ID", "risk_score", "recovery_strategy"]],
        loans[["Borrower_ID", "Gender", "Age", "Recovery_Status"]],
    )
    status = df["Recovery_Status"]
    outcome = np.where(
        status.isna().to_numpy(),
        np.nan,
        (status != "Fully Recovered").to_numpy(dtype=bool, na_value=False).astype(float),
    )
    strategy = _strategy_codes(df["recovery_strategy"])
    score = df["risk_score"].to_numpy(dtype="float64", na_value=np.nan)

    def summaries(codes: np.ndarray, n: int) -> list[dict]:
        return _group_summaries(codes, n, strategy, score, outcome)

    overall = summaries(np.zeros(len(df), dtype="int64"), 1)[0]
    rows = [{"group_type": "all", "group": "all borrowers", **overall}]
    gender_codes, genders = _category_codes(df["Gender"])
    band_codes, bands = _age_band_codes(df["Age"])
    for group_type, codes, labels in (
        ("Gender", gender_codes, genders),
        ("age_band", band_codes, bands),
    ):
        stats = summaries(codes, len(labels))
        # groupby's order: sorted by label, only groups that occur
        for i in sorted(range(len(labels)), key=lambda i: labels[i]):
            if stats[i]["borrowers"]:
                rows.append({"group_type": group_type, "group": labels[i], **stats[i]})
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
