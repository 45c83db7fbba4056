"""The capacity gain curve: for a worklist of each size, from nobody to the whole book, the share
of the bad balance it would have caught, ranking by expected loss against ranking by the score.

Measured on resolved loans whose score was made without seeing them (out-of-fold: a held-out
comparison, not the model marking its own homework). "Bad" is the outcome itself: the
outstanding balance of the loans not fully recovered (Partially Recovered or Written Off), and
for the second pair of curves the balance of the loans written off.

Whole in this process or in partitions on a Dask cluster, the curve comes from the same summary
(``partitions.summarise``): per ranking key, the held-out loans counted, and their bad balance
added up, in bins of the key. A bin is the key's float64 bits with the last
``52 - MANTISSA_BITS`` bits of its mantissa dropped: bins are monotone in the key, fixed
whatever the book (no first pass for a range), and 1/1024 of a value wide (relative). Every bin
edge is an exact point of the curve (all loans above it against the bad balance above it); the
curve between two edges is a straight line, as if the loans of one bin were tied.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from loan_pipeline.domain import (
    GAIN_STRATEGY_COLUMNS,
    HELD_OUT_SOURCES,
    STRATEGY_LEGAL,
    STRATEGY_SETTLEMENT,
)

MANTISSA_BITS = 10
# the worklist sizes of the table: every whole percent of the book
GRID = 101

# curve column -> (what the borrowers are ranked by, what is caught)
CURVES: dict[str, tuple[str, str]] = {
    "shortfall_ranked": ("expected_shortfall", "not_recovered"),
    "score_ranked": ("risk_score", "not_recovered"),
    "write_off_ranked": ("expected_write_off", "written_off"),
    "write_off_score_ranked": ("p_written_off", "written_off"),
}
# the worklist sizes marked on the curve: the current policy's legal-action count, and its
# legal-action and settlement count
MARK_LEGAL = "legal action now"
MARK_WORKED = "legal action + settlement now"


def gain_rows(strategies: pd.DataFrame, scores: pd.DataFrame, loans: pd.DataFrame) -> pd.DataFrame:
    """Per borrower (a book, or aligned partitions of the three tables): the ranking keys, the
    balance, the strategy, whether the score is held out with a known outcome, and the
    outcome."""
    from loan_pipeline.core.joins import join_by_id

    rows = join_by_id(
        join_by_id(strategies[GAIN_STRATEGY_COLUMNS], scores[["Borrower_ID", "score_source"]]),
        loans[["Borrower_ID", "Recovery_Status"]],
    )
    status = rows["Recovery_Status"]
    resolved = status.notna().to_numpy(dtype=bool)
    held_out = rows["score_source"].isin(HELD_OUT_SOURCES).to_numpy(dtype=bool) & resolved
    written_off = (status == "Written Off").to_numpy(dtype=bool, na_value=False)
    fully = (status == "Fully Recovered").to_numpy(dtype=bool, na_value=False)
    return pd.DataFrame(
        {
            **{key: rows[key].to_numpy(dtype="float64") for key, _ in CURVES.values()},
            "balance": rows["Outstanding_Loan_Amount"].to_numpy(dtype="float64"),
            "legal": (rows["recovery_strategy"] == STRATEGY_LEGAL).to_numpy(dtype=bool),
            "settlement": (rows["recovery_strategy"] == STRATEGY_SETTLEMENT).to_numpy(dtype=bool),
            "held_out": held_out,
            "not_recovered": resolved & ~fully,
            "written_off": written_off,
        }
    )


def key_bins(values: np.ndarray) -> np.ndarray:
    """The bin of each key (>= 0): larger keys, larger (or equal) bins."""
    values = np.where(values > 0, values, 0.0)  # -0.0 as 0.0: its bits would sort first
    return values.view(np.int64) >> (52 - MANTISSA_BITS)


def gain_summary(rows: pd.DataFrame) -> dict:
    """What the curves are drawn from, for one part: borrowers, their strategies, and per curve
    the held-out loans and their bad balance per bin of its key (loans without a value of the
    key left out: the notebook method has no write-off score)."""
    held = rows[rows["held_out"]]
    curves = {}
    for curve, (key, caught) in CURVES.items():
        values = held[key].to_numpy()
        scored = ~np.isnan(values)
        bins, where = np.unique(key_bins(values[scored]), return_inverse=True)
        bad = (held["balance"] * held[caught]).to_numpy()[scored]
        curves[curve] = pd.DataFrame(
            {
                "rows": np.bincount(where, minlength=len(bins)),
                "bad": np.bincount(where, bad, len(bins)),
            },
            index=bins,
        )
    return {
        "borrowers": len(rows),
        "legal": int(rows["legal"].sum()),
        "settlement": int(rows["settlement"].sum()),
        "held_out": len(held),
        "curves": curves,
    }


def merge_gain_summaries(parts: list[dict]) -> dict:
    counts = {c: sum(p[c] for p in parts) for c in ("borrowers", "legal", "settlement", "held_out")}
    curves = {
        curve: pd.concat([p["curves"][curve] for p in parts]).groupby(level=0).sum()
        for curve in CURVES
    }
    return counts | {"curves": curves}


def captured(binned: pd.DataFrame, worked: np.ndarray) -> np.ndarray:
    """The share of the bad balance caught by the first ``worked`` loans (any real numbers of
    them) in the order of the bins, largest key first; NaN when there is no bad balance."""
    ordered = binned.sort_index(ascending=False)
    rows = np.concatenate([[0], np.cumsum(ordered["rows"].to_numpy())])
    bad = np.concatenate([[0.0], np.cumsum(ordered["bad"].to_numpy())])
    if bad[-1] <= 0:
        return np.full(len(worked), np.nan)
    return np.interp(worked, rows, bad) / bad[-1]


def gain_table(summary: dict, grid: int = GRID) -> pd.DataFrame:
    """The curves at every ``1 / (grid - 1)`` of the book and at the current policy's two
    worklist sizes (``mark``). A worklist of a share s of the book is measured as the first s of
    the held-out loans."""
    book = summary["borrowers"]
    shares = list(np.linspace(0.0, 1.0, grid))
    marks = [""] * grid
    if book:
        shares += [summary["legal"] / book, (summary["legal"] + summary["settlement"]) / book]
        marks += [MARK_LEGAL, MARK_WORKED]
    share = np.array(shares)
    table = pd.DataFrame(
        {
            "capacity_share": share,
            "borrowers": np.rint(share * book).astype("int64"),
            **{
                curve: captured(summary["curves"][curve], share * summary["held_out"])
                for curve in CURVES
            },
            "mark": pd.array([m or None for m in marks], dtype="string[pyarrow]"),
        }
    )
    return table.sort_values("capacity_share", kind="stable", ignore_index=True)


def measure_gains(strategies, scores, loans, grid: int = GRID) -> tuple[pd.DataFrame, dict]:
    """The gain table of a book (pandas frames, or Dask frames partitioned alike), and its
    summary's counts (borrowers, strategies, held-out loans)."""
    from loan_pipeline.core.partitions import per_partition, summarise

    rows = per_partition(gain_rows, strategies, scores, loans)
    summary = summarise(gain_summary, merge_gain_summaries, rows)
    counts = {k: v for k, v in summary.items() if k != "curves"}
    return gain_table(summary, grid), counts
