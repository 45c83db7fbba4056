"""The strategy back-test: what happened, during one cycle, to the loans each strategy was applied
to, by strategy and score band (and by segment), and each strategy against a reference strategy
for the same risk.

Pure functions on one-row-per-borrower frames of two consecutive snapshots (the history files'
columns): t (``previous``: ``Borrower_ID``, ``recovery_strategy``, ``risk_score``,
``segment_name``, ``Outstanding_Loan_Amount``, ``Recovery_Status``) and t+1 (``current``:
``Borrower_ID``, ``Recovery_Status``). docs/method.md ("Strategy back-test") gives the method; in
short:

* the cohort: borrowers with a strategy and an open loan at t (blank Recovery_Status) whose loan
  is resolved at t+1. Loans already resolved at t are left out (their outcome came before the
  strategy), as are those still open at t+1 and those who left the book (no outcome seen); all
  are counted (``cycle_counts``);
* per strategy and group: the outcome mix, the Fully Recovered share with its Wilson interval,
  the balance at t and the recovered balance, an assumption (the book records no amounts
  recovered): Fully Recovered recovers the balance at t, Partially Recovered a share of it,
  Written Off nothing;
* per group, each strategy's Fully Recovered share minus the reference strategy's with Newcombe's
  hybrid score interval; over the score bands holding both, the difference standardised to the
  strategy's own mix of bands, with a Wald interval on Agresti-Caffo-adjusted shares;
* that pooled difference for every pair of strategies as well (legal action against settlement,
  settlement against legal action, ...): the ``band_adjusted`` rows, one per strategy and
  reference that share a score band, so whether legal notices recover more than settlements for
  the same risk is read off one row whatever the configured reference.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import norm

from loan_pipeline.core.chart_summaries import wilson_interval

# its checks of a snapshot (columns present, one row per borrower), the roll rates' own
from loan_pipeline.core.roll_rates import _borrowers
from loan_pipeline.domain import BACKTEST_GROUPINGS, STRATEGIES, STRATEGY_SHORT

ID = "Borrower_ID"
BALANCE = "Outstanding_Loan_Amount"
STATUS = "Recovery_Status"
STRATEGY = "recovery_strategy"
FULLY, PARTIALLY, WRITTEN_OFF = "Fully Recovered", "Partially Recovered", "Written Off"
OUTCOMES = [FULLY, PARTIALLY, WRITTEN_OFF]
Z95 = float(norm.ppf(0.975))

# the groupings of the long table: every resolved borrower of a strategy ("all", its crude
# share), per score band at t, per segment at t, and the score bands pooled, standardised
BY_ALL, BY_BAND, BY_SEGMENT, BY_ADJUSTED = BACKTEST_GROUPINGS
ALL_GROUP = "all"
ADJUSTED_GROUP = "bands with both"
NO_SEGMENT = "(none)"

BACKTEST_COLUMNS = [
    "group_by",
    "group",
    STRATEGY,
    "resolved",
    "fully_recovered",
    "partially_recovered",
    "written_off",
    "share_fully_recovered",
    "ci_low",
    "ci_high",
    "share_partially_recovered",
    "share_written_off",
    "balance_t",
    "recovered_balance",
    "recovery_rate",
    "reference_strategy",
    "reference_resolved",
    "difference",
    "difference_low",
    "difference_high",
]
_DTYPES = {
    "group_by": "string",
    "group": "string",
    STRATEGY: "string",
    "resolved": "int64",
    "fully_recovered": "int64",
    "partially_recovered": "int64",
    "written_off": "int64",
    "reference_strategy": "string",
    "reference_resolved": "int64",
}


def score_band(scores: pd.Series, width: float) -> pd.Series:
    """Each score's band of fixed ``width`` on [0, 1], labelled '0.7-0.8': [a, a + width), the
    last band closed at 1. Fixed edges, not quantiles: a band means the same predicted risk in
    every snapshot and for every strategy."""
    if not 0 < width <= 1:
        raise ValueError(f"the score band width must be in (0, 1], not {width}")
    bands = int(np.ceil(1 / width - 1e-9))
    s = scores.astype(float).to_numpy()
    index = np.clip(np.floor(s / width + 1e-9), 0, bands - 1).astype(int)
    # as many decimals as the width is written with (0.1 -> 1, 0.25 -> 2): exact edges
    written = f"{width:g}"
    digits = max(1, len(written.split(".")[1]) if "." in written else 0)
    labels = [f"{i * width:.{digits}f}-{min((i + 1) * width, 1):.{digits}f}" for i in range(bands)]
    return pd.Series(np.asarray(labels)[index], index=scores.index, dtype="string")


def resolved_cohort(
    previous: pd.DataFrame, current: pd.DataFrame, *, band_width: float
) -> pd.DataFrame:
    """The borrowers the back-test is of: a strategy and an open loan at t, resolved at t+1. One
    row each: Borrower_ID, recovery_strategy, score_band, segment_name (at t), balance_t, and
    the outcome at t+1."""
    before = _borrowers(
        previous, [ID, STRATEGY, "risk_score", "segment_name", BALANCE, STATUS], "previous"
    )
    after = _borrowers(current, [ID, STATUS], "current")
    open_at_t = before[before[STATUS].isna() & before[STRATEGY].notna()]
    joined = open_at_t.merge(after.rename(columns={STATUS: "outcome"}), on=ID, how="inner")
    cohort = joined[joined["outcome"].notna()]
    unknown = sorted(set(cohort["outcome"].astype(str)) - set(OUTCOMES))
    if unknown:
        raise ValueError(f"outcomes at t+1 outside {OUTCOMES}: {unknown}")
    return pd.DataFrame(
        {
            ID: cohort[ID].to_numpy(),
            STRATEGY: cohort[STRATEGY].astype("string").to_numpy(),
            BY_BAND: score_band(cohort["risk_score"], band_width).to_numpy(),
            BY_SEGMENT: cohort["segment_name"].astype("string").fillna(NO_SEGMENT).to_numpy(),
            "balance_t": cohort[BALANCE].astype(float).to_numpy(),
            "outcome": cohort["outcome"].astype(str).to_numpy(),
        }
    )


def cycle_counts(previous: pd.DataFrame, current: pd.DataFrame) -> dict[str, int]:
    """Where every borrower of t went, for the asset page: the back-test's cohort and those left
    out (already resolved at t, no strategy, still open at t+1, left the book)."""
    before = _borrowers(previous, [ID, STRATEGY, STATUS], "previous")
    after = _borrowers(current, [ID, STATUS], "current").set_index(ID)[STATUS]
    open_ = before[STATUS].isna()
    with_strategy = open_ & before[STRATEGY].notna()
    status_t1 = before[ID].map(after)
    present = before[ID].isin(after.index)
    return {
        "borrowers_at_t": len(before),
        "already_resolved_at_t": int((~open_).sum()),
        "open_without_strategy": int((open_ & before[STRATEGY].isna()).sum()),
        "open_with_strategy": int(with_strategy.sum()),
        "resolved_in_cycle": int((with_strategy & present & status_t1.notna()).sum()),
        "still_open": int((with_strategy & present & status_t1.isna()).sum()),
        "left_the_book": int((with_strategy & ~present).sum()),
    }


def strategy_backtest(
    previous: pd.DataFrame,
    current: pd.DataFrame,
    *,
    reference: str,
    partial_share: float,
    band_width: float,
) -> pd.DataFrame:
    """The back-test as one long table: a row per (group_by, group, strategy) with borrowers
    resolved, the outcome counts and shares, the Fully Recovered share's 95 % Wilson interval,
    the balance at t, the recovered balance (Fully Recovered: the balance at t; Partially
    Recovered: ``partial_share`` of it; Written Off: 0) and its rate on the balance, and the
    difference of the Fully Recovered share from the ``reference`` strategy's in the same group
    (with its 95 % interval; empty for the reference itself and where the group has no
    reference borrower).

    group_by: ``all`` (crude: no adjustment for risk), ``score_band`` (risk_score at t in bands
    of ``band_width``), ``segment_name`` (at t), ``band_adjusted`` (one row per strategy and
    reference strategy, the configured ``reference`` first, then every other strategy as the
    reference: the strategy's borrowers in the bands that also hold the reference's, the
    difference averaged over those bands weighted by the strategy's own borrowers; a pair with
    no band holding both has no row)."""
    if reference not in STRATEGIES:
        raise ValueError(f"the reference strategy must be one of {STRATEGIES}, not {reference!r}")
    if not 0 <= partial_share <= 1:
        raise ValueError(f"the partial recovery share must be in [0, 1], not {partial_share}")
    cohort = resolved_cohort(previous, current, band_width=band_width)
    cohort["recovered"] = cohort["balance_t"] * cohort["outcome"].map(
        {FULLY: 1.0, PARTIALLY: partial_share, WRITTEN_OFF: 0.0}
    )
    parts = [
        _summarise(cohort.assign(group=ALL_GROUP), BY_ALL),
        _by_band(cohort),
        _summarise(cohort.rename(columns={BY_SEGMENT: "group"}), BY_SEGMENT),
    ]
    parts = [_against(part, reference) for part in parts]
    # pooled over the bands holding both: against the reference, then every other pair
    for other in [reference, *(s for s in STRATEGIES if s != reference)]:
        # the band table is the same for every reference: only the comparison is redone
        bands = parts[1] if other == reference else _against(parts[1].copy(), other)
        parts.append(_adjusted(cohort, bands, other))
    parts = [p for p in parts if not p.empty]
    if not parts:  # nobody resolved: nothing to count, the table's columns all the same
        return empty_backtest()
    table = pd.concat(parts, ignore_index=True)
    for column, dtype in _DTYPES.items():
        table[column] = table[column].astype(dtype)
    return table[BACKTEST_COLUMNS]


def empty_backtest() -> pd.DataFrame:
    """A back-test with no rows (nothing to compare), with the table's columns and dtypes."""
    return pd.DataFrame(
        {c: pd.Series([], dtype=_DTYPES.get(c, "float64")) for c in BACKTEST_COLUMNS}
    )


def newcombe_interval(
    k1: np.ndarray, n1: np.ndarray, k2: np.ndarray, n2: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The 95 % interval of k1/n1 - k2/n2 by Newcombe's hybrid score method (1998, method 10):
    built from each share's Wilson interval, so it stays in [-1, 1] and is not zero-width at
    0 of n or n of n, where the Wald interval fails. n1, n2 > 0."""
    p1, p2 = np.asarray(k1, float) / n1, np.asarray(k2, float) / n2
    l1, u1 = wilson_interval(k1, n1, z=Z95)
    l2, u2 = wilson_interval(k2, n2, z=Z95)
    d = p1 - p2
    return d - np.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2), d + np.sqrt(
        (u1 - p1) ** 2 + (p2 - l2) ** 2
    )


def _by_band(cohort: pd.DataFrame) -> pd.DataFrame:
    return _summarise(cohort.rename(columns={BY_BAND: "group"}), BY_BAND)


def _summarise(cohort: pd.DataFrame, group_by: str) -> pd.DataFrame:
    """Counts, shares, balances per (group, strategy) of ``cohort``."""
    if cohort.empty:
        return pd.DataFrame()
    flags = pd.DataFrame(
        {
            "group": cohort["group"].to_numpy(),
            STRATEGY: cohort[STRATEGY].to_numpy(),
            "resolved": 1,
            "fully_recovered": (cohort["outcome"] == FULLY).astype(int).to_numpy(),
            "partially_recovered": (cohort["outcome"] == PARTIALLY).astype(int).to_numpy(),
            "written_off": (cohort["outcome"] == WRITTEN_OFF).astype(int).to_numpy(),
            "balance_t": cohort["balance_t"].to_numpy(),
            "recovered_balance": cohort["recovered"].to_numpy(),
        }
    )
    table = flags.groupby(["group", STRATEGY]).sum().reset_index()
    # strategies in the policy's order (legal action first), groups in their own (bands rise)
    table["_order"] = table[STRATEGY].map({s: i for i, s in enumerate(STRATEGIES)})
    table = table.sort_values(["group", "_order"], kind="stable").drop(columns="_order")
    n = table["resolved"].to_numpy()
    table["share_fully_recovered"] = table["fully_recovered"] / n
    table["ci_low"], table["ci_high"] = wilson_interval(table["fully_recovered"], n, z=Z95)
    table["share_partially_recovered"] = table["partially_recovered"] / n
    table["share_written_off"] = table["written_off"] / n
    table["recovery_rate"] = (table["recovered_balance"] / table["balance_t"]).where(
        table["balance_t"] > 0
    )
    table.insert(0, "group_by", group_by)
    return table.reset_index(drop=True)


def _against(table: pd.DataFrame, reference: str) -> pd.DataFrame:
    """Each row's Fully Recovered share minus the reference strategy's in the same group."""
    if table.empty:
        return table
    ref = table[table[STRATEGY] == reference].set_index("group")
    k2 = table["group"].map(ref["fully_recovered"])
    n2 = table["group"].map(ref["resolved"])
    compared = n2.notna() & (table[STRATEGY] != reference)
    n2_ = n2.fillna(1).to_numpy(float)
    k2_ = k2.fillna(0).to_numpy(float)
    low, high = newcombe_interval(table["fully_recovered"], table["resolved"], k2_, n2_)
    table["reference_strategy"] = reference
    table["reference_resolved"] = n2.fillna(0).astype("int64")
    table["difference"] = np.where(compared, table["share_fully_recovered"] - k2_ / n2_, np.nan)
    table["difference_low"] = np.where(compared, low, np.nan)
    table["difference_high"] = np.where(compared, high, np.nan)
    return table


def _adjusted(cohort: pd.DataFrame, bands: pd.DataFrame, reference: str) -> pd.DataFrame:
    """Per strategy other than the reference, over the bands holding both: the counts of its
    borrowers there, and the band differences averaged with weights w_b = n_b / sum n_b (its own
    borrowers: 'had these borrowers been given the reference'), variance sum w_b^2 (v_b + v_rb),
    each v the Agresti-Caffo-adjusted binomial variance p~(1-p~)/(n+2), p~ = (k+1)/(n+2), so a
    band of 0 of 3 does not count as certain."""
    rows = []
    if bands.empty:
        return pd.DataFrame()
    shared = bands[bands["difference"].notna()]
    for strategy in [s for s in STRATEGIES if s in set(shared[STRATEGY])]:  # the policy's order
        part = shared[shared[STRATEGY] == strategy]
        mine = cohort[(cohort[STRATEGY] == strategy) & cohort[BY_BAND].isin(part["group"])]
        summary = _summarise(mine.assign(group=ADJUSTED_GROUP), BY_ADJUSTED)
        w = part["resolved"].to_numpy(float) / part["resolved"].sum()
        n1, k1 = part["resolved"].to_numpy(float), part["fully_recovered"].to_numpy(float)
        n2 = part["reference_resolved"].to_numpy(float)
        k2 = n2 * (part["share_fully_recovered"].to_numpy() - part["difference"].to_numpy())
        difference = float(np.sum(w * part["difference"].to_numpy()))
        variance = np.sum(w**2 * (_adjusted_variance(k1, n1) + _adjusted_variance(k2, n2)))
        half = Z95 * float(np.sqrt(variance))
        summary["reference_strategy"] = reference
        summary["reference_resolved"] = int(n2.sum())
        summary["difference"] = difference
        summary["difference_low"] = max(difference - half, -1.0)
        summary["difference_high"] = min(difference + half, 1.0)
        rows.append(summary)
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()


def _adjusted_variance(k: np.ndarray, n: np.ndarray) -> np.ndarray:
    p = (k + 1) / (n + 2)
    return p * (1 - p) / (n + 2)


def configured_reference(table: pd.DataFrame) -> str:
    """The reference strategy the back-test was configured with (that of its crude rows; the
    ``band_adjusted`` rows hold every pair)."""
    return str(table.loc[table["group_by"] != BY_ADJUSTED, "reference_strategy"].iloc[0])


def headline(table: pd.DataFrame) -> str:
    """The comparison managers read first, in a sentence per pair of strategies: the
    band-adjusted difference of each strategy from the configured reference (or why there is
    none), then every other pair sharing a score band."""
    if table.empty:
        return "no borrower with a strategy at t was resolved at t+1"
    reference = configured_reference(table)
    adjusted = table[table["group_by"] == BY_ADJUSTED].set_index([STRATEGY, "reference_strategy"])
    against_reference = [(s, reference) for s in STRATEGIES if s != reference]
    others = [
        (s, r) for r in STRATEGIES if r != reference for s in STRATEGIES if s != r
    ]  # every other pair, in the policy's order
    lines = []
    for strategy, other in against_reference + [p for p in others if p in adjusted.index]:
        name, ref = (STRATEGY_SHORT.get(x, x) for x in (strategy, other))
        if (strategy, other) not in adjusted.index:
            lines.append(
                f"{name} vs {ref}: no score band holds both (strategies assigned by score), "
                "no comparison for the same risk"
            )
            continue
        row = adjusted.loc[(strategy, other)]
        lines.append(
            f"{name} vs {ref}, same score band: Fully Recovered {row['difference']:+.3f} "
            f"(95% interval {row['difference_low']:+.3f} to {row['difference_high']:+.3f}; "
            f"{int(row['resolved'])} vs {int(row['reference_resolved'])} borrowers)"
        )
    return "; ".join(lines)
