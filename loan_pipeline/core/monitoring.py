"""Monitoring: who gets which strategy (fairness), and whether the book has drifted (PSI)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from loan_pipeline.domain import STRATEGIES, STRATEGY_LEGAL

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


# Per-group counts and sums the fairness report is computed from (``fairness_counts``).
STRATEGY_COUNTS = {s: f"n_{c.removeprefix('share_')}" for s, c in STRATEGY_COLUMNS.items()}
COUNT_COLUMNS = [
    "borrowers",
    *STRATEGY_COUNTS.values(),
    "with_strategy",  # borrowers with a strategy (any value; a missing one is left out)
    "scored",
    "score_sum",
    "resolved",
    "not_fully_recovered",
]


def _group_counts(
    group_type: str,
    codes: np.ndarray,
    labels: list[str],
    strategy: np.ndarray,
    score: np.ndarray,
    outcome: np.ndarray,
) -> pd.DataFrame:
    """``COUNT_COLUMNS`` for each group code 0..len(labels)-1 (np.bincount: one pass over the
    rows, no sub-frame per group), indexed by (group_type, group)."""
    n_groups = len(labels)
    keep = codes >= 0
    g, s, sc, out = codes[keep], strategy[keep], score[keep], outcome[keep]
    n_strategies = len(STRATEGIES)

    def count(mask: np.ndarray | None = None, weights: np.ndarray | None = None) -> np.ndarray:
        if mask is None:
            return np.bincount(g, weights=weights, minlength=n_groups)
        w = None if weights is None else weights[mask]
        return np.bincount(g[mask], weights=w, minlength=n_groups)

    named = s >= 0
    per_strategy = np.bincount(
        g[named] * n_strategies + s[named], minlength=n_groups * n_strategies
    ).reshape(n_groups, n_strategies)
    scored = ~np.isnan(sc)
    resolved = ~np.isnan(out)
    columns = {"borrowers": count()}
    columns |= {c: per_strategy[:, j] for j, c in enumerate(STRATEGY_COUNTS.values())}
    columns |= {
        "with_strategy": count(s != -2),
        "scored": count(scored),
        "score_sum": count(scored, sc).astype("float64"),
        "resolved": count(resolved),
        "not_fully_recovered": count(resolved & (out == 1.0)),
    }
    index = pd.MultiIndex.from_arrays(
        [[group_type] * n_groups, labels], names=["group_type", "group"]
    )
    return pd.DataFrame(columns, index=index)[COUNT_COLUMNS]


def fairness_rows(strategies: pd.DataFrame, loans: pd.DataFrame) -> pd.DataFrame:
    """The columns the fairness report reads, one row per borrower of ``strategies`` (a table,
    or one partition of it with the loan book's partition that holds the same borrowers)."""
    from loan_pipeline.core.frames import join_by_id

    return join_by_id(
        strategies[["Borrower_ID", "risk_score", "recovery_strategy"]],
        loans[["Borrower_ID", "Gender", "Age", "Recovery_Status"]],
    )


def fairness_counts(rows: pd.DataFrame) -> pd.DataFrame:
    """``COUNT_COLUMNS`` of the whole book (its row is always there), of each Gender and of
    each age band, of ``fairness_rows`` (a table or one partition): added up over partitions
    (``summaries.sum_frames``), they are the counts of the whole book."""
    status = rows["Recovery_Status"]
    outcome = np.where(
        status.isna().to_numpy(),
        np.nan,
        (status != "Fully Recovered").to_numpy(dtype=bool, na_value=False).astype(float),
    )
    strategy = _strategy_codes(rows["recovery_strategy"])
    score = rows["risk_score"].to_numpy(dtype="float64", na_value=np.nan)
    gender_codes, genders = _category_codes(rows["Gender"])
    band_codes, bands = _age_band_codes(rows["Age"])
    return pd.concat(
        [
            _group_counts(group_type, codes, labels, strategy, score, outcome)
            for group_type, codes, labels in (
                ("all", np.zeros(len(rows), dtype="int64"), ["all borrowers"]),
                ("Gender", gender_codes, genders),
                ("age_band", band_codes, bands),
            )
        ]
    )


def _summary(counts: pd.Series) -> dict:
    """One group's row of the fairness report, from its ``COUNT_COLUMNS``."""
    borrowers, with_strategy = int(counts["borrowers"]), int(counts["with_strategy"])
    scored, resolved = int(counts["scored"]), int(counts["resolved"])
    row: dict = {"borrowers": borrowers}
    for strategy, column in STRATEGY_COLUMNS.items():
        n = np.int64(counts[STRATEGY_COUNTS[strategy]])
        row[column] = float(n / np.int64(with_strategy)) if with_strategy else 0.0
    row["mean_score"] = float(counts["score_sum"] / scored) if scored else np.nan
    row["resolved"] = resolved
    row["observed_not_fully_recovered"] = (
        float(np.int64(counts["not_fully_recovered"]) / np.int64(resolved)) if resolved else np.nan
    )
    # binomial standard errors, so a gap can be read against the noise of a small group
    legal = row[STRATEGY_COLUMNS[STRATEGY_LEGAL]]
    row["share_legal_se"] = float(np.sqrt(legal * (1 - legal) / max(borrowers, 1)))
    observed = row["observed_not_fully_recovered"]
    row["observed_se"] = (
        float(np.sqrt(observed * (1 - observed) / resolved)) if resolved else np.nan
    )
    return row


def fairness_from_counts(counts: pd.DataFrame) -> pd.DataFrame:
    """The fairness report from the whole book's ``fairness_counts``: the whole book first,
    then the Gender groups and the age bands that have borrowers, each sorted by label."""
    rows = []
    kinds = counts.index.get_level_values("group_type")
    for group_type in ("all", "Gender", "age_band"):
        part = counts[kinds == group_type]
        for (kind, group), c in sorted(part.iterrows(), key=lambda item: item[0][1]):
            if kind == "all" or c["borrowers"]:
                rows.append({"group_type": kind, "group": group, **_summary(c)})
    table = pd.DataFrame(rows)
    overall = table.iloc[0]
    harsh = STRATEGY_COLUMNS[STRATEGY_LEGAL]
    table["harshest_gap"] = table[harsh] - overall[harsh]
    table["outcome_gap"] = (
        table["observed_not_fully_recovered"] - overall["observed_not_fully_recovered"]
    )
    table["unexplained_gap"] = table["harshest_gap"] - table["outcome_gap"].fillna(0.0)
    return table


# Out-of-fold scores are counted per group in this many bins for each group's ROC AUC.
GROUP_SCORE_BINS = 1024


def group_score_counts(rows: pd.DataFrame) -> dict[str, np.ndarray]:
    """Resolved loans of ``fairness_rows`` (a table or one partition) counted per group, class
    (not Fully Recovered or not) and score bin, with their scores summed per group: what each
    group's ROC AUC and calibration are computed from, added up over partitions. Groups in a
    fixed order (``score_groups``), so every partition's arrays line up."""
    from loan_pipeline.schemas import CATEGORIES

    status = rows["Recovery_Status"]
    score = rows["risk_score"].to_numpy(dtype="float64", na_value=np.nan)
    keep = status.notna().to_numpy() & ~np.isnan(score)
    y = (status != "Fully Recovered").to_numpy(dtype=bool, na_value=False).astype("int64")
    band_codes, _ = _age_band_codes(rows["Age"])
    member = [np.ones(len(rows), dtype=bool)]
    member += [
        rows["Gender"].eq(g).to_numpy(dtype=bool, na_value=False) for g in CATEGORIES["Gender"]
    ]
    member += [band_codes == b for b in range(len(AGE_BANDS))]
    bins = np.minimum(
        (np.nan_to_num(score) * GROUP_SCORE_BINS).astype("int64"), GROUP_SCORE_BINS - 1
    )
    counts = np.zeros((len(member), 2, GROUP_SCORE_BINS), dtype="int64")
    sums = np.zeros(len(member))
    for g, inside in enumerate(member):
        mine = inside & keep
        counts[g] = np.bincount(
            y[mine] * GROUP_SCORE_BINS + bins[mine], minlength=2 * GROUP_SCORE_BINS
        ).reshape(2, GROUP_SCORE_BINS)
        sums[g] = score[mine].sum()
    return {"counts": counts, "sums": sums}


def score_groups() -> list[tuple[str, str]]:
    """(group_type, group) of each row of ``group_score_counts``."""
    from loan_pipeline.schemas import CATEGORIES

    return (
        [("all", "all borrowers")]
        + [("Gender", g) for g in CATEGORIES["Gender"]]
        + [("age_band", label) for _, _, label in AGE_BANDS]
    )


def group_validation(counts: dict[str, np.ndarray]) -> pd.DataFrame:
    """Each group's ROC AUC of the out-of-fold scores and calibration-in-the-large (mean score
    and observed rate among its resolved loans), from ``group_score_counts`` added up."""
    from loan_pipeline.core.validation import binned_auc

    rows = []
    for (group_type, group), c, total in zip(
        score_groups(), counts["counts"], counts["sums"], strict=True
    ):
        n = int(c.sum())
        rows.append(
            {
                "group_type": group_type,
                "group": group,
                "roc_auc": binned_auc(c[0], c[1]),
                "mean_predicted": total / n if n else np.nan,
            }
        )
    return pd.DataFrame(rows)


def fairness_table(loans, strategies) -> pd.DataFrame:
    """Per Gender and per age band, next to the whole book: each strategy's rate, the mean
    score, and the observed rate of "not Fully Recovered" among resolved loans.

    ``unexplained_gap`` = (group's rate of the harshest strategy - overall rate) - (group's
    outcome rate - overall outcome rate): how much harsher (or softer) the group is treated than
    its outcomes alone would justify.

    Computed from per-group counts and sums (``fairness_counts``), a partition at a time when
    the tables are Dask frames (partitioned alike: each partition of the strategies is joined to
    the loan book's partition of the same borrowers) and added up: only the counts come back.
    """
    from loan_pipeline.core.partitions import combine, per_partition
    from loan_pipeline.core.summaries import add_arrays, sum_frames

    rows = per_partition(fairness_rows, strategies, loans)
    table = fairness_from_counts(combine(fairness_counts, sum_frames, rows))
    validation = group_validation(combine(group_score_counts, add_arrays, rows))
    table = table.merge(validation, on=["group_type", "group"], how="left")
    # observed over predicted among the resolved: 1 when the group's scores are calibrated
    table["observed_to_predicted"] = table["observed_not_fully_recovered"] / table["mean_predicted"]
    return table


def fairness_flags(table: pd.DataFrame, max_gap: float = 0.10, min_group: int = 30) -> pd.DataFrame:
    """Groups of at least ``min_group`` borrowers whose unexplained gap exceeds ``max_gap``."""
    groups = table[table["group_type"] != "all"]
    return groups[(groups["borrowers"] >= min_group) & (groups["unexplained_gap"].abs() > max_gap)]


# --- population stability ---------------------------------------------------------------------

PSI_EPSILON = 1e-4
PROFILE_BINS = 10


def stability_columns(loans: pd.DataFrame, scores: pd.DataFrame) -> pd.DataFrame:
    """The numeric model inputs (as given and engineered) and the risk score of each borrower
    of ``loans``: a table, or one partition of it with the scores' partition of the same
    borrowers."""
    from loan_pipeline.core.frames import lookup_by_id
    from loan_pipeline.core.risk import RISK_ENGINEERED, RISK_NUMERIC, risk_inputs

    current = risk_inputs(loans, one_hot=False)[RISK_NUMERIC + RISK_ENGINEERED]
    return current.assign(
        risk_score=lookup_by_id(scores.set_index("Borrower_ID")["risk_score"], loans["Borrower_ID"])
    )


def profiles(frame, bins: int = PROFILE_BINS, ranges: dict | None = None) -> dict[str, dict]:
    """``distribution_profile`` of every column of ``frame`` (a pandas or a Dask frame): the
    exact quantiles (``summaries.quantiles``, a few passes over the partitions), then one more
    pass to count the values between them. ``ranges``: the frame's ``value_ranges`` if known."""
    from loan_pipeline.core.partitions import combine
    from loan_pipeline.core.summaries import (
        add_arrays,
        bin_counts,
        merge_ranges,
        quantiles,
        value_ranges,
    )

    if ranges is None:
        ranges = combine(value_ranges, merge_ranges, frame)
    cuts = quantiles(frame, np.linspace(0, 1, bins + 1)[1:-1], ranges=ranges)
    edges = {c: np.unique(q) for c, q in cuts.items() if ranges[c][0]}
    counts = combine(bin_counts, add_arrays, frame, edges) if edges else {}
    return {
        c: {"edges": edges[c].tolist(), "shares": _shares_of(counts[c]).tolist()}
        if c in edges
        else {"edges": [], "shares": [1.0]}
        for c in cuts
    }


def distribution_profile(values: pd.Series, bins: int = PROFILE_BINS) -> dict:
    """Decile edges of ``values`` and the share of values in each bin (the reference for PSI)."""
    return profiles(values.to_frame("values"), bins)["values"]


def _shares_of(counts: np.ndarray) -> np.ndarray:
    return counts / max(counts.sum(), 1)


def psi_of_counts(reference: dict, counts: np.ndarray) -> float:
    """Population stability index of values counted in ``reference``'s bins (``bin_counts``)
    against its shares: sum over bins of (current - reference) x ln(current / reference)."""
    expected = np.clip(np.asarray(reference["shares"], dtype="float64"), PSI_EPSILON, None)
    actual = np.clip(_shares_of(counts), PSI_EPSILON, None)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def psi(reference: dict, values: pd.Series) -> float:
    """Population stability index of ``values`` against a reference profile."""
    from loan_pipeline.core.summaries import bin_counts

    counts = bin_counts(values.to_frame("values"), {"values": reference["edges"]})
    return psi_of_counts(reference, counts["values"])


def _previous_edges(previous: dict | None, columns) -> dict[str, list[float]]:
    return {c: previous[c]["edges"] for c in columns if (previous or {}).get(c)}


def _stability_rows(previous: dict | None, columns, counts: dict) -> pd.DataFrame:
    rows = []
    for column in columns:
        value = psi_of_counts(previous[column], counts[column]) if column in counts else np.nan
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


def stability_table(previous: dict | None, current) -> pd.DataFrame:
    """PSI of each column of ``current`` (a pandas or a Dask frame) against ``previous``
    profiles (NaN without one): its values counted in the previous bins, a partition at a time."""
    from loan_pipeline.core.partitions import combine
    from loan_pipeline.core.summaries import add_arrays, bin_counts

    edges = _previous_edges(previous, current.columns)
    counts = combine(bin_counts, add_arrays, current, edges) if edges else {}
    return _stability_rows(previous, current.columns, counts)


def stability_report(previous: dict | None, current, bins: int = PROFILE_BINS):
    """(``stability_table``, this run's ``profiles``) of ``current``: the first pass over the
    partitions counts the values in the previous bins and finds each column's range at once."""
    from loan_pipeline.core.partitions import combine
    from loan_pipeline.core.summaries import merge_ranges_and_bins, ranges_and_bins

    edges = _previous_edges(previous, current.columns)
    ranges, counts = combine(ranges_and_bins, merge_ranges_and_bins, current, edges)
    table = _stability_rows(previous, current.columns, counts)
    return table, profiles(current, bins, ranges=ranges)
