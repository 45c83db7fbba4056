"""Collections over time: roll rates, their flow forecast and cure rates between two snapshots.

Pure functions on one-row-per-borrower frames of two consecutive snapshots of the book, t
(``previous``) and t+1 (``current``), each with ``Borrower_ID``, the arrears bucket
(``domain.BUCKET_COLUMN``, named by ``core.arrears``) and the balance
(``Outstanding_Loan_Amount``); cure rates also read ``Days_Past_Due``, ``Recovery_Status`` and
the groups (``segment_name``, ``recovery_strategy``). docs/method.md ("Roll rates and cure
rates") gives the formulas; in short:

* ``roll_rate_matrix``: per (from_bucket at t, to_bucket at t+1) the borrowers and the balance
  that moved, and their shares of the from-bucket. A borrower at t missing at t+1 moves to
  ``LEFT_BOOK``; one at t+1 missing at t comes from ``NEW_TO_BOOK``, a from-row of its own (its
  shares are the newcomers' mix), so the rates of the buckets at t are not diluted by borrowers
  who were not there. Every borrower of either snapshot is counted once; each from-row's shares
  sum to 1.
* ``flow_forecast``: next cycle's expected mix, the mix at t+1 moved once more by the same
  rates.
* ``cure_rates``: of the borrowers delinquent at t (an open loan, Days_Past_Due > 0), the share
  current or Fully Recovered at t+1, with a Wilson interval, overall and per group at t.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from loan_pipeline.core.chart_summaries import wilson_interval
from loan_pipeline.domain import (
    BUCKET_COLUMN,
    BUCKETS,
    CURE_ALL,
    FROM_BUCKETS,
    LEFT_BOOK,
    NEW_TO_BOOK,
    TO_BUCKETS,
)

ID = "Borrower_ID"
BALANCE = "Outstanding_Loan_Amount"
CURED_STATUS = "Fully Recovered"  # with the current bucket, what counts as a cure
CURE_BY: tuple[str, ...] = (BUCKET_COLUMN, "segment_name", "recovery_strategy")
NO_GROUP = "(none)"  # a delinquent borrower without a value of the group, counted under this

MATRIX_COLUMNS = ["from_bucket", "to_bucket", "borrowers", "balance", "share", "balance_share"]
FORECAST_COLUMNS = [
    "bucket",
    "borrowers_now",
    "balance_now",
    "expected_borrowers",
    "expected_balance",
    "expected_share",
    "without_rates",
]
CURE_COLUMNS = [
    "dimension",
    "group",
    "delinquent",
    "left_the_book",
    "observed",
    "cured",
    "cured_to_current",
    "cured_fully_recovered",
    "cure_rate",
    "ci_low",
    "ci_high",
]


def _borrowers(frame: pd.DataFrame, columns: list[str], which: str) -> pd.DataFrame:
    """``frame``'s ``columns``, checked: present, one row per borrower, buckets known."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"the {which} snapshot lacks the columns {missing}")
    out = frame[columns].copy()
    out[ID] = out[ID].astype(str)
    if out[ID].duplicated().any():
        raise ValueError(f"the {which} snapshot names a borrower more than once")
    if BUCKET_COLUMN in columns:
        unknown = sorted(set(out[BUCKET_COLUMN].dropna().astype(str)) - set(BUCKETS))
        if unknown or out[BUCKET_COLUMN].isna().any():
            raise ValueError(
                f"the {which} snapshot has arrears buckets outside {BUCKETS}: "
                f"{unknown or ['(empty)']}"
            )
        out[BUCKET_COLUMN] = out[BUCKET_COLUMN].astype(str)
    return out


def empty_matrix() -> pd.DataFrame:
    """A matrix with no rows (nothing to compare), with the matrix's columns and dtypes."""
    return pd.DataFrame(
        {
            "from_bucket": pd.Series([], dtype="string"),
            "to_bucket": pd.Series([], dtype="string"),
            "borrowers": pd.Series([], dtype="int64"),
            "balance": pd.Series([], dtype="float64"),
            "share": pd.Series([], dtype="float64"),
            "balance_share": pd.Series([], dtype="float64"),
        }
    )


def roll_rate_matrix(previous: pd.DataFrame, current: pd.DataFrame) -> pd.DataFrame:
    """The roll-rate matrix from ``previous`` (t) to ``current`` (t+1), as a long table: one row
    per from_bucket that has borrowers (``FROM_BUCKETS`` order) and every to_bucket
    (``TO_BUCKETS`` order, zeros included) with ``borrowers`` (a count), ``balance`` (the
    balance that moved: at t, or at t+1 for a newcomer), ``share`` (borrowers over the
    from-row's borrowers) and ``balance_share`` (balance over the from-row's balance; empty
    when that is 0)."""
    columns = [ID, BUCKET_COLUMN, BALANCE]
    before = _borrowers(previous, columns, "previous")
    after = _borrowers(current, columns, "current")
    both = before.merge(after, on=ID, how="outer", suffixes=("_t", "_t1"), indicator=True)
    gone, new = both["_merge"] == "left_only", both["_merge"] == "right_only"
    moves = pd.DataFrame(
        {
            "from_bucket": both[f"{BUCKET_COLUMN}_t"].where(~new, NEW_TO_BOOK),
            "to_bucket": both[f"{BUCKET_COLUMN}_t1"].where(~gone, LEFT_BOOK),
            # what moved is the balance the borrower had in its from-bucket; a newcomer had
            # none at t, so its balance at t+1
            "balance": both[f"{BALANCE}_t"].where(~new, both[f"{BALANCE}_t1"]).astype(float),
        }
    )
    grouped = moves.groupby(["from_bucket", "to_bucket"]).agg(
        borrowers=("balance", "size"), balance=("balance", "sum")
    )
    present = [b for b in FROM_BUCKETS if b in set(moves["from_bucket"])]
    grid = pd.MultiIndex.from_product([present, TO_BUCKETS], names=["from_bucket", "to_bucket"])
    if grouped.index.difference(grid).size:  # impossible by construction: said, not assumed
        raise AssertionError(f"moves outside the grid: {list(grouped.index.difference(grid))}")
    matrix = grouped.reindex(grid, fill_value=0).reset_index()
    if matrix.empty:
        return empty_matrix()
    row = matrix.groupby("from_bucket", sort=False)[["borrowers", "balance"]].transform("sum")
    matrix["borrowers"] = matrix["borrowers"].astype("int64")
    matrix["share"] = matrix["borrowers"] / row["borrowers"]
    matrix["balance_share"] = (matrix["balance"] / row["balance"]).where(row["balance"] > 0)
    for column in ("from_bucket", "to_bucket"):
        matrix[column] = matrix[column].astype("string")
    return matrix[MATRIX_COLUMNS]


def bucket_mix(snapshot: pd.DataFrame) -> pd.DataFrame:
    """Borrowers and balance per bucket of one snapshot (every bucket of ``BUCKETS``, zeros
    included): the mix ``flow_forecast`` moves on."""
    rows = _borrowers(snapshot, [ID, BUCKET_COLUMN, BALANCE], "current")
    mix = rows.groupby(BUCKET_COLUMN).agg(
        borrowers=(ID, "size"), balance=(BALANCE, lambda s: float(s.astype(float).sum()))
    )
    mix = mix.reindex(BUCKETS, fill_value=0)
    mix.index.name = "bucket"
    mix["borrowers"] = mix["borrowers"].astype("int64")
    mix["balance"] = mix["balance"].astype(float)
    return mix.reset_index()


def flow_forecast(matrix: pd.DataFrame, current_mix: pd.DataFrame) -> pd.DataFrame:
    """Next cycle's expected bucket mix: ``current_mix`` (``bucket_mix`` of t+1) moved by the
    matrix's rates, assumed the same next cycle (a Markov chain's one step).

    expected_borrowers[to] = sum over b of borrowers_now[b] x share[b, to];
    expected_balance[to] = sum over b of balance_now[b] x balance_share[b, to] (share where the
    from-row's balance was 0). Rows: ``TO_BUCKETS`` (``LEFT_BOOK``: the expected leavers).
    Newcomers are not forecast: their number is no rate of the book. A bucket with borrowers now
    but none at t has no observed rates: its borrowers are assumed to stay where they are, and
    counted in ``without_rates``. expected_share: expected_borrowers over the borrowers now."""
    mix = current_mix.set_index("bucket").reindex(BUCKETS, fill_value=0)
    rates = matrix[matrix["from_bucket"] != NEW_TO_BOOK]
    share = rates.pivot(index="from_bucket", columns="to_bucket", values="share")
    balance_share = rates.pivot(index="from_bucket", columns="to_bucket", values="balance_share")
    share = share.reindex(index=BUCKETS, columns=TO_BUCKETS)
    balance_share = balance_share.reindex(index=BUCKETS, columns=TO_BUCKETS).fillna(share)
    observed = share.notna().all(axis=1)
    stay = pd.DataFrame(np.eye(len(BUCKETS), len(TO_BUCKETS)), index=BUCKETS, columns=TO_BUCKETS)
    keep = np.broadcast_to(observed.to_numpy()[:, None], share.shape)
    share = share.where(keep, stay)
    balance_share = balance_share.where(keep, stay)
    counts = mix["borrowers"].astype(float).to_numpy()
    balances = mix["balance"].astype(float).to_numpy()
    expected = counts @ share.to_numpy()
    expected_balance = balances @ balance_share.to_numpy()
    now = mix.reindex(TO_BUCKETS, fill_value=0)
    total = counts.sum()
    without = pd.Series(np.where(observed, 0, counts), index=BUCKETS).reindex(
        TO_BUCKETS, fill_value=0
    )
    return pd.DataFrame(
        {
            "bucket": pd.array(TO_BUCKETS, dtype="string"),
            "borrowers_now": now["borrowers"].astype("int64").to_numpy(),
            "balance_now": now["balance"].astype(float).to_numpy(),
            "expected_borrowers": expected,
            "expected_balance": expected_balance,
            "expected_share": expected / total if total else np.full(len(TO_BUCKETS), np.nan),
            "without_rates": without.astype("int64").to_numpy(),
        }
    )


def empty_forecast() -> pd.DataFrame:
    """A forecast with no rows (nothing to compare), with the forecast's columns and dtypes."""
    dtypes = ["string", "int64", "float64", "float64", "float64", "float64", "int64"]
    return pd.DataFrame(
        {c: pd.Series([], dtype=d) for c, d in zip(FORECAST_COLUMNS, dtypes, strict=True)}
    )


def cure_rates(
    previous: pd.DataFrame, current: pd.DataFrame, by: Sequence[str] = CURE_BY
) -> pd.DataFrame:
    """Cure rates from ``previous`` (t) to ``current`` (t+1): of the borrowers delinquent at t
    (blank Recovery_Status, Days_Past_Due > 0), those still on the book at t+1 (``observed``)
    and, of these, the ``cured``: current (an open loan, 0 days past due) or Fully Recovered at
    t+1. ``cure_rate`` = cured / observed, with its 95 % Wilson interval (empty when nobody was
    observed). A delinquent borrower who left the book has no outcome to see: counted in
    ``left_the_book``, outside the rate. One row for the whole delinquent book (dimension
    ``CURE_ALL``), then one per value at t of each column of ``by`` (a missing value counted
    under ``NO_GROUP``)."""
    before = _borrowers(
        previous, list(dict.fromkeys([ID, "Days_Past_Due", "Recovery_Status", *by])), "previous"
    )
    after = _borrowers(current, [ID, BUCKET_COLUMN, "Recovery_Status"], "current").rename(
        columns={BUCKET_COLUMN: "bucket_t1", "Recovery_Status": "status_t1"}
    )
    delinquent = before[
        before["Recovery_Status"].isna() & (before["Days_Past_Due"].astype(float) > 0)
    ]
    joined = delinquent.merge(after, on=ID, how="left", indicator=True)
    flags = pd.DataFrame(
        {
            "delinquent": 1,
            "left_the_book": (joined["_merge"] == "left_only").astype(int),
            "cured_to_current": (joined["bucket_t1"] == BUCKETS[0]).fillna(False).astype(int),
            "cured_fully_recovered": (
                (joined["status_t1"] == CURED_STATUS).fillna(False).astype(int)
            ),
        }
    )
    parts = [flags.sum().to_frame().T.assign(dimension=CURE_ALL, group=CURE_ALL)]
    for column in by:
        groups = joined[column].astype("string").fillna(NO_GROUP).to_numpy()
        summed = flags.groupby(groups).sum()
        order = [b for b in BUCKETS if b in summed.index] if column == BUCKET_COLUMN else None
        summed = summed.loc[order] if order is not None else summed.sort_index()
        parts.append(summed.rename_axis("group").reset_index().assign(dimension=column))
    table = pd.concat(parts, ignore_index=True)
    for column in ("delinquent", "left_the_book", "cured_to_current", "cured_fully_recovered"):
        table[column] = table[column].astype("int64")
    table["observed"] = table["delinquent"] - table["left_the_book"]
    table["cured"] = table["cured_to_current"] + table["cured_fully_recovered"]
    seen = table["observed"].to_numpy()
    low, high = wilson_interval(table["cured"].to_numpy(), np.maximum(seen, 1))
    table["cure_rate"] = np.where(seen > 0, table["cured"] / np.maximum(seen, 1), np.nan)
    table["ci_low"] = np.where(seen > 0, low, np.nan)
    table["ci_high"] = np.where(seen > 0, high, np.nan)
    for column in ("dimension", "group"):
        table[column] = table[column].astype("string")
    return table[CURE_COLUMNS]


def empty_cure_rates() -> pd.DataFrame:
    """Cure rates with no rows (nothing to compare), with the table's columns and dtypes."""
    dtypes = ["string", "string", *["int64"] * 6, *["float64"] * 3]
    return pd.DataFrame(
        {c: pd.Series([], dtype=d) for c, d in zip(CURE_COLUMNS, dtypes, strict=True)}
    )


def rows_sum_to_one(matrix: pd.DataFrame, tolerance: float = 1e-9) -> list[str]:
    """The from-rows of ``matrix`` whose shares (or balance shares, where the row has a
    balance) do not sum to 1 within ``tolerance``: empty when the matrix is sound."""
    bad = []
    for origin, row in matrix.groupby("from_bucket", sort=False):
        if abs(row["share"].sum() - 1) > tolerance:
            bad.append(f"{origin}: shares sum to {row['share'].sum():.6f}")
        if row["balance"].sum() > 0 and abs(row["balance_share"].sum() - 1) > tolerance:
            bad.append(f"{origin}: balance shares sum to {row['balance_share'].sum():.6f}")
    return bad


def matrix_markdown(matrix: pd.DataFrame) -> str:
    """The matrix as a markdown grid: a row per from_bucket, a column per to_bucket, each cell
    "share (n)", and the row's n; for an asset page."""
    if matrix.empty:
        return "(no matrix)"
    cells = matrix.assign(
        cell=[f"{s:.3f} ({n})" for s, n in zip(matrix["share"], matrix["borrowers"], strict=True)]
    )
    grid = cells.pivot(index="from_bucket", columns="to_bucket", values="cell")
    rows = [b for b in FROM_BUCKETS if b in grid.index]
    grid = grid.reindex(index=rows, columns=TO_BUCKETS)
    totals = matrix.groupby("from_bucket")["borrowers"].sum()
    head = "| from \\ to | n | " + " | ".join(TO_BUCKETS) + " |"
    lines = [head, "|" + " --- |" * (len(TO_BUCKETS) + 2)]
    for origin in rows:
        cells_ = " | ".join(str(v) for v in grid.loc[origin])
        lines.append(f"| {origin} | {int(totals[origin])} | {cells_} |")
    return "\n".join(lines)
