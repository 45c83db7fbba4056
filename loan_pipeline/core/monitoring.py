"""Monitoring: who gets which strategy (fairness), and whether the book has drifted (PSI)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from loan_pipeline.domain import (
    PSI_IS_BASELINE,
    PSI_MODERATE,
    PSI_MODERATE_SHIFT,
    PSI_NO_FROZEN_MODEL,
    PSI_NO_PREVIOUS,
    PSI_OTHER_FROZEN_MODEL,
    PSI_SIGNIFICANT,
    PSI_SIGNIFICANT_SHIFT,
    PSI_STABLE,
    RISK_NUMERIC,
    STRATEGIES,
    STRATEGY_LEGAL,
)

# Labelled so that they sort in age order as text too (a DuckDB ORDER BY, a spreadsheet's sort);
# the contract's youngest borrower is 18.
AGE_BANDS = [(18, 30, "18-29"), (30, 45, "30-44"), (45, 60, "45-59"), (60, 200, "60 and over")]
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
    # legal action by outcome: what the rate expected from a group's outcomes is made of
    "legal_not_fully_recovered",
    "legal_fully_recovered",
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
    legal = s == STRATEGIES.index(STRATEGY_LEGAL)
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
        "legal_not_fully_recovered": count(legal & resolved & (out == 1.0)),
        "legal_fully_recovered": count(legal & resolved & (out == 0.0)),
    }
    index = pd.MultiIndex.from_arrays(
        [[group_type] * n_groups, labels], names=["group_type", "group"]
    )
    return pd.DataFrame(columns, index=index)[COUNT_COLUMNS]


def fairness_rows(strategies: pd.DataFrame, loans: pd.DataFrame) -> pd.DataFrame:
    """The columns the fairness report reads, one row per borrower of ``strategies`` (a table,
    or one partition of it with the loan book's partition that holds the same borrowers)."""
    from loan_pipeline.core.joins import join_by_id

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


# The fairness report's columns, in reading order: who, the legal-action rate and how far it is
# from the book's and from what the group's outcomes would give, the other strategies, then the
# outcomes and the model's validation per group.
FAIRNESS_COLUMNS = [
    "group_type",
    "group",
    "borrowers",
    "share_legal",
    "share_legal_se",
    "legal_gap",
    "expected_share_legal",
    "unexplained_legal_gap",
    "share_settlement",
    "share_reminders",
    "mean_score",
    "resolved",
    "observed_not_fully_recovered",
    "observed_se",
    "outcome_gap",
    "roc_auc",
    "mean_predicted",
    "observed_to_predicted",
]


def _expected_legal(counts: pd.DataFrame, book: pd.Series) -> np.ndarray:
    """Each group's legal-action rate if each of its borrowers got legal action at the whole
    book's rate for borrowers of the same outcome (not Fully Recovered, Fully Recovered, open):
    the rate its outcomes alone would give, on the legal-action rate's own scale."""
    nfr = counts["not_fully_recovered"].to_numpy(dtype="float64")
    fr = counts["resolved"].to_numpy(dtype="float64") - nfr
    open_ = counts["borrowers"].to_numpy(dtype="float64") - nfr - fr
    legal = np.int64(book[STRATEGY_COUNTS[STRATEGY_LEGAL]])
    by_outcome = {
        "nfr": (book["legal_not_fully_recovered"], book["not_fully_recovered"]),
        "fr": (book["legal_fully_recovered"], book["resolved"] - book["not_fully_recovered"]),
    }
    by_outcome["open"] = (
        legal - by_outcome["nfr"][0] - by_outcome["fr"][0],
        book["borrowers"] - book["resolved"],
    )
    rate = {k: float(n / d) if d else 0.0 for k, (n, d) in by_outcome.items()}
    total = counts["borrowers"].to_numpy(dtype="float64")
    expected = nfr * rate["nfr"] + fr * rate["fr"] + open_ * rate["open"]
    return np.divide(expected, total, out=np.full(len(total), np.nan), where=total > 0)


def fairness_from_counts(counts: pd.DataFrame) -> pd.DataFrame:
    """The fairness report from the whole book's ``fairness_counts``: the whole book first,
    then the Gender groups (by label) and the age bands (youngest first) that have borrowers.

    Two gaps, each on one rate's scale: ``legal_gap`` (the group's legal-action rate minus the
    book's) and ``outcome_gap`` (its rate of not Fully Recovered minus the book's); and
    ``unexplained_legal_gap``, the legal-action rate minus ``expected_share_legal`` (the rate
    the group's outcome mix would give at the book's legal-action rate per outcome), both on
    the legal-action rate's scale, so that a group treated in line with its outcomes is at 0."""
    rows, kept = [], []
    kinds = counts.index.get_level_values("group_type")
    bands = {label: i for i, (_, _, label) in enumerate(AGE_BANDS)}
    for group_type in ("all", "Gender", "age_band"):
        part = counts[kinds == group_type]
        order = sorted(part.iterrows(), key=lambda item: (bands.get(item[0][1], -1), item[0][1]))
        for (kind, group), c in order:
            if kind == "all" or c["borrowers"]:
                rows.append({"group_type": kind, "group": group, **_summary(c)})
                kept.append((kind, group))
    table = pd.DataFrame(rows)
    overall = table.iloc[0]
    harsh = STRATEGY_COLUMNS[STRATEGY_LEGAL]
    table["legal_gap"] = table[harsh] - overall[harsh]
    table["outcome_gap"] = (
        table["observed_not_fully_recovered"] - overall["observed_not_fully_recovered"]
    )
    kept_counts = counts.loc[kept]
    table["expected_share_legal"] = _expected_legal(
        kept_counts, counts.loc[("all", "all borrowers")]
    )
    table["unexplained_legal_gap"] = table[harsh] - table["expected_share_legal"]
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

    ``unexplained_legal_gap`` = the group's legal-action rate - the rate its outcomes would give
    at the whole book's legal-action rate per outcome (``fairness_from_counts``): how much
    harsher (or softer) the group is treated than its outcomes alone would justify, in points
    of the legal-action rate.

    Computed from per-group counts and sums (``fairness_counts``), a partition at a time when
    the tables are Dask frames (partitioned alike: each partition of the strategies is joined to
    the loan book's partition of the same borrowers) and added up: only the counts come back.
    """
    from loan_pipeline.core.partitions import per_partition, summarise
    from loan_pipeline.core.summaries import add_elementwise, sum_frames

    rows = per_partition(fairness_rows, strategies, loans)
    table = fairness_from_counts(summarise(fairness_counts, sum_frames, rows))
    validation = group_validation(summarise(group_score_counts, add_elementwise, rows))
    table = table.merge(validation, on=["group_type", "group"], how="left")
    # observed over predicted among the resolved: 1 when the group's scores are calibrated
    table["observed_to_predicted"] = table["observed_not_fully_recovered"] / table["mean_predicted"]
    return table[FAIRNESS_COLUMNS]


def fairness_flags(table: pd.DataFrame, *, max_gap: float, min_group: int) -> pd.DataFrame:
    """Groups of at least ``min_group`` borrowers whose legal-action rate is further than
    ``max_gap`` (in rate points) from the rate their outcomes would give."""
    groups = table[table["group_type"] != "all"]
    gap = groups["unexplained_legal_gap"].abs()
    return groups[(groups["borrowers"] >= min_group) & (gap > max_gap)]


# --- population stability ---------------------------------------------------------------------
#
# Each input (a characteristic stability index, CSI) and each score (a population stability
# index, PSI) is compared twice: with the baseline, a snapshot kept with its frozen model (the
# first published run's, until another is pinned: io/baseline.py), and with the previous
# published run. Against the previous run alone a slow drift is "stable" at every step; against
# the baseline it adds up. The published score is refitted every run, which absorbs a drift (a
# rescaled input is standardised away), so the baseline's frozen model also scores every book:
# its PSI against its own scores on the baseline book is what the scores would have done had
# the model not been refitted.

PSI_EPSILON = 1e-4
PROFILE_BINS = 10
SCORE = "risk_score"  # the published score: this run's refitted model, out of fold
FROZEN_SCORE = "frozen_model_score"  # the baseline's frozen model scoring this book
# This run's own final model scoring this book: kept in the profile, not in the table, as the
# frozen score's reference should this snapshot be pinned as the baseline.
OWN_SCORE = "model_score"
MODEL_SHA256 = "model_sha256"  # in a model score's profile: the model that scored
WHAT = {
    SCORE: "score of this run's refitted model (out-of-fold, as published)",
    FROZEN_SCORE: "score of the baseline's frozen model",
}
INPUT = "model input"


def stability_columns(
    loans: pd.DataFrame, scores: pd.DataFrame, models: dict[str, object] | None = None
) -> pd.DataFrame:
    """The numeric model inputs (as given and engineered) and the risk score of each borrower
    of ``loans``: a table, or one partition of it with the scores' partition of the same
    borrowers; and per entry of ``models`` (column -> a fitted pipeline, or None for none) that
    model's score of each borrower, computed from the borrower's own row."""
    from loan_pipeline.core.joins import lookup_by_id
    from loan_pipeline.core.logistic import pipeline_scores
    from loan_pipeline.core.model_inputs import RISK_ENGINEERED, risk_inputs

    current = risk_inputs(loans, one_hot=False)[RISK_NUMERIC + RISK_ENGINEERED]
    current = current.assign(
        risk_score=lookup_by_id(scores.set_index("Borrower_ID")["risk_score"], loans["Borrower_ID"])
    )
    scorers = {c: m for c, m in (models or {}).items() if m is not None}
    scored = dict(zip(scorers, pipeline_scores(list(scorers.values()), loans), strict=True))
    for column in models or {}:
        current[column] = scored.get(column, np.nan)
    return current


def stability_frame(
    loans, scores, frozen: tuple[object, str], own: tuple[object, str]
) -> tuple[object, dict[str, str | None]]:
    """(``stability_columns`` of the book (a pandas or a Dask frame: per partition) with the
    scores of the baseline's ``frozen`` model and of this run's ``own`` model, the SHA-256 of
    the model behind each of those two columns (None: no model to score with)). A model is a
    (pipeline or None, SHA-256) pair; the same model scores once."""
    from loan_pipeline.core.partitions import per_partition

    digests = {
        column: digest if pipeline is not None else None
        for column, (pipeline, digest) in ((FROZEN_SCORE, frozen), (OWN_SCORE, own))
    }
    scorers = {FROZEN_SCORE: frozen[0]}
    if digests[OWN_SCORE] != digests[FROZEN_SCORE]:
        scorers[OWN_SCORE] = own[0]
    current = per_partition(stability_columns, loans, scores, scorers)
    if OWN_SCORE not in scorers:
        current = current.assign(**{OWN_SCORE: current[FROZEN_SCORE]})
    return current, digests


def profiles(frame, bins: int = PROFILE_BINS, ranges: dict | None = None) -> dict[str, dict]:
    """``distribution_profile`` of every column of ``frame`` (a pandas or a Dask frame): the
    exact quantiles (``summaries.quantiles``, a few passes over the partitions), then one more
    pass to count the values between them. ``ranges``: the frame's ``value_ranges`` if known."""
    from loan_pipeline.core.partitions import summarise
    from loan_pipeline.core.summaries import (
        add_elementwise,
        bin_counts,
        merge_ranges,
        quantiles,
        value_ranges,
    )

    if ranges is None:
        ranges = summarise(value_ranges, merge_ranges, frame)
    cuts = quantiles(frame, np.linspace(0, 1, bins + 1)[1:-1], ranges=ranges)
    edges = {c: np.unique(q) for c, q in cuts.items() if ranges[c][0]}
    counts = summarise(bin_counts, add_elementwise, frame, edges) if edges else {}
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


def psi_status(value: float) -> str:
    """How a PSI (or CSI) reads: below ``PSI_MODERATE`` stable, up to ``PSI_SIGNIFICANT`` a
    moderate shift, above it a significant one."""
    if value < PSI_MODERATE:
        return PSI_STABLE
    return PSI_MODERATE_SHIFT if value <= PSI_SIGNIFICANT else PSI_SIGNIFICANT_SHIFT


def _references(
    reference: dict | None, columns, digests: dict[str, str | None], none: str
) -> tuple[dict[str, dict], dict[str, str]]:
    """Of ``reference`` (a run's profiles; None, for the reason ``none``), the profile each of
    ``columns`` is compared with, and for the others why there is none. A model's score
    (``digests``: column -> the SHA-256 of the model that scored, None for no model) is compared
    only with the same model's scores."""
    found: dict[str, dict] = {}
    why: dict[str, str] = {}
    for column in columns:
        profile = (reference or {}).get(column)
        if column in digests and digests[column] is None:
            why[column] = PSI_NO_FROZEN_MODEL
        elif reference is None:
            why[column] = none
        elif not profile:  # profiled before this column was (an older run)
            why[column] = PSI_NO_PREVIOUS
        elif column in digests and profile.get(MODEL_SHA256) != digests[column]:
            why[column] = (
                PSI_NO_FROZEN_MODEL if profile.get(MODEL_SHA256) is None else PSI_OTHER_FROZEN_MODEL
            )
        else:
            found[column] = profile
    return found, why


def _regroup(counts: np.ndarray, fine: np.ndarray, coarse: list[float]) -> np.ndarray:
    """Values counted in the bins of the ``fine`` edges, counted in the bins of the ``coarse``
    edges (some of the fine ones): fine bin i (fine[i-1] <= x < fine[i]) lies inside coarse bin
    ``searchsorted(coarse, fine[i-1], "right")``, the first (x < fine[0]) inside the first."""
    coarse = np.asarray(coarse, dtype="float64")
    lower = np.concatenate([[-np.inf], fine])
    which = np.searchsorted(coarse, lower, side="right")
    return np.bincount(which, weights=counts, minlength=len(coarse) + 1).astype("int64")


def _compare(current, previous: dict | None, baseline: dict | None, digests: dict) -> tuple:
    """(``value_ranges`` of ``current``, the stability table): one pass over the partitions
    finds each column's range and counts its values in the bins of both references at once
    (in the bins of their edges together, then added up into each reference's)."""
    from loan_pipeline.core.partitions import summarise
    from loan_pipeline.core.summaries import merge_ranges_and_bins, ranges_and_bins

    columns = [c for c in current.columns if c != OWN_SCORE]
    against = {
        "baseline": _references(baseline, columns, digests, PSI_IS_BASELINE),
        "previous": _references(previous, columns, digests, PSI_NO_PREVIOUS),
    }
    edges = {}
    for found, _ in against.values():
        for column, profile in found.items():
            edges[column] = np.union1d(edges.get(column, []), profile["edges"])
    ranges, counts = summarise(ranges_and_bins, merge_ranges_and_bins, current, edges)
    rows = []
    for column in columns:
        row = {
            "column": column,
            "measure": "PSI" if column in WHAT else "CSI",
            "what": WHAT.get(column, INPUT),
        }
        for name, (found, why) in against.items():
            if column in found:
                reference = found[column]
                value = psi_of_counts(
                    reference, _regroup(counts[column], edges[column], reference["edges"])
                )
                row |= {f"psi_vs_{name}": value, f"status_vs_{name}": psi_status(value)}
            else:
                row |= {f"psi_vs_{name}": np.nan, f"status_vs_{name}": why[column]}
        rows.append(row)
    return ranges, pd.DataFrame(rows, columns=STABILITY_COLUMNS)


STABILITY_COLUMNS = [
    "column",
    "measure",
    "what",
    "psi_vs_baseline",
    "status_vs_baseline",
    "psi_vs_previous",
    "status_vs_previous",
]


def stability_table(
    current, previous: dict | None = None, baseline: dict | None = None, digests=None
) -> pd.DataFrame:
    """The CSI of each input and the PSI of each score of ``current`` (a pandas or a Dask
    frame, ``stability_columns``) against the ``baseline``'s profiles (None: this run is the
    baseline) and the ``previous`` run's (None: there is none), a partition at a time; NaN with
    the reason where there is nothing to compare with. ``digests``: for each column a model
    scored, that model's SHA-256 (None: no model to score with)."""
    return _compare(current, previous, baseline, digests or {})[1]


def stability_report(
    current,
    previous: dict | None = None,
    baseline: dict | None = None,
    digests: dict[str, str | None] | None = None,
    bins: int = PROFILE_BINS,
):
    """(``stability_table``, this run's ``profiles``) of ``current``: the first pass over the
    partitions counts the values in the references' bins and finds each column's range at
    once. A model score's profile names the model (``MODEL_SHA256``)."""
    digests = digests or {}
    ranges, table = _compare(current, previous, baseline, digests)
    profile = profiles(current, bins, ranges=ranges)
    for column, digest in digests.items():
        profile[column][MODEL_SHA256] = digest
    return table, profile


def significant_shifts(table: pd.DataFrame, against: str) -> dict[str, float]:
    """The inputs and the frozen model's score whose PSI against ``against`` ("baseline" or
    "previous") is above ``PSI_SIGNIFICANT``. The refitted model's score is not among them: a
    refit moves it for reasons of its own (and hides a drift), so it is reported, not judged."""
    value = table[f"psi_vs_{against}"]
    judged = table["column"] != SCORE
    shifted = table[judged & (value > PSI_SIGNIFICANT)]
    return {
        str(c): round(float(v), 3)
        for c, v in zip(shifted["column"], shifted[f"psi_vs_{against}"], strict=True)
    }


def drift_summary(table: pd.DataFrame) -> dict[str, float]:
    """The figures of the stability table one reads first: both scores' PSI against the
    baseline, and the largest input CSI against the baseline and the previous run."""
    rows = table.set_index("column")
    inputs = rows[rows["measure"] == "CSI"]
    return {
        "frozen_model_score_psi_vs_baseline": float(rows.at[FROZEN_SCORE, "psi_vs_baseline"]),
        "refitted_model_score_psi_vs_baseline": float(rows.at[SCORE, "psi_vs_baseline"]),
        "max_csi_vs_baseline": float(inputs["psi_vs_baseline"].max()),
        "max_csi_vs_previous": float(inputs["psi_vs_previous"].max()),
    }


# --- the baseline --------------------------------------------------------------------------------


def baseline_profiles(profile: dict) -> dict:
    """A run's profiles as a baseline's: its inputs and published score as they are, and as the
    frozen model's reference its own model's scores of its own book (``OWN_SCORE``: that model
    is the one a baseline pinned to the run freezes)."""
    out = {c: p for c, p in profile.items() if c not in (FROZEN_SCORE, OWN_SCORE)}
    if OWN_SCORE in profile:
        out[FROZEN_SCORE] = profile[OWN_SCORE]
    return out


def baseline_record(
    snapshot: str,
    profile: dict,
    model_sha256: str,
    frozen: bool,
    pinned_by: str,
    how: str,
    pinned_at: float,
) -> dict:
    """What ``monitoring/baseline/baseline.json`` says: the snapshot, when, by which run and
    how it became the baseline, the SHA-256 of its risk model (kept beside it) and its
    profiles. ``frozen``: the model has a pipeline to score with (the recommended method),
    whose scores of the snapshot's book must then be in ``profile``, made by that very model."""
    own = profile.get(OWN_SCORE) or {}
    if frozen and own.get(MODEL_SHA256) != model_sha256:
        raise ValueError(
            f"snapshot {snapshot} has no profile of its own risk model's scores "
            + (
                "(it was made before baselines were kept)"
                if not own
                else "(its profile and its risk model come from different runs)"
            )
            + ": pin a snapshot made by a full run since"
        )
    return {
        "snapshot": snapshot,
        "pinned_at": pinned_at,
        "pinned_by": pinned_by,
        "how": how,
        "model_sha256": model_sha256,
        "profiles": baseline_profiles(profile),
    }


def frozen_pipeline(model) -> object | None:
    """The pipeline a risk model scores a loan book with, to freeze: the recommended method's
    outcome model, fitted on every resolved loan. None for the notebook method, whose model
    reads the clustering features, not the loan book."""
    primary = getattr(model, "primary", None)
    return primary.estimator if primary is not None else None
