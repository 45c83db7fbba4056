"""What the charts need from the loan book (and from the risk scores and the segments): summaries
computed per partition and merged, the bins they are counted in, and the sample rows.

A book of any size, whole in this process or in partitions on a Dask cluster, gives the same
numbers, so the same picture (``core.charts.draw`` draws from what is here and nothing else):

1. summaries of the table, each a pure function of one pandas frame (a partition, or the whole
   table as its one part) and a merge of the per-partition results (``partitions.summarise``):
   counts per outcome, histogram counts on fixed edges, moments for the correlations, binned
   scores for the calibration. Edges that depend on the data (the loan amounts' range, the
   hexagon grid) come from a first pass of extents (``SUMMARIES``, one pass for every chart
   drawn); the second passes are ``loan_amount_summaries``, ``segment_summaries`` and
   ``calibration_summaries``;
2. for the point plots and the density curve, a reproducible sample of at most
   ``SAMPLE_LIMIT`` rows drawn by global position (``sample_positions``, fetched with
   ``partitions.take_positions``): the same rows in both modes.

Aggregates (counts, shares, correlations, histograms, hexbins, calibration deciles) use every
row; point plots and kernel density estimates use the sample. Missing labels are counted under a
label of their own (``OPEN_LABEL``, ``NOT_RECORDED``, ``UNASSIGNED_SEGMENT``), never dropped.

No plotting here (only matplotlib's arithmetic for the hexagon grid): the workers that compute
these summaries need neither pyplot nor seaborn.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from typing import NamedTuple

import matplotlib.transforms as mtransforms
import numpy as np
import pandas as pd

from loan_pipeline.core.partitions import per_partition, summarise, take_positions
from loan_pipeline.core.summaries import (
    CoMoments,
    Extent,
    add_counts,
    add_elementwise,
    co_moments,
    extent,
    finite,
    label_codes,
    label_counts,
    merge_co_moments,
    merge_extents,
)
from loan_pipeline.domain import HELD_OUT_SOURCES

__all__ = [
    "HEX_GRIDSIZE",
    "NOT_RECORDED",
    "OPEN_LABEL",
    "SAMPLE_LIMIT",
    "SAMPLE_SEED",
    "SCORE_HISTOGRAM_BINS",
    "SUMMARIES",
    "UNASSIGNED_SEGMENT",
    "AmountBins",
    "PlotSample",
    "ScoreBins",
    "book_summaries",
    "calibration_summaries",
    "hexagon_centres",
    "loan_amount_summaries",
    "missed_outcome_table",
    "plot_sample",
    "round_bins",
    "round_width",
    "sample_positions",
    "sample_rows",
    "segment_summaries",
    "wilson_interval",
]

# The labels missing values are counted and drawn under.
OPEN_LABEL = "Open (no outcome)"
NOT_RECORDED = "Not recorded"
UNASSIGNED_SEGMENT = "Unassigned"

SAMPLE_LIMIT = 20_000
SAMPLE_SEED = 20_240_601


# --------------------------------------------------------------------------------------------
# The sample rows
# --------------------------------------------------------------------------------------------


class PlotSample(NamedTuple):
    """A frame to draw points from, with how many rows it holds out of how many there were."""

    frame: pd.DataFrame
    n_shown: int
    n_total: int

    @property
    def is_sample(self) -> bool:
        return self.n_shown < self.n_total

    @property
    def note(self) -> str:
        """'sample of 20,000 of 10,000,000 borrowers' or 'all 500 borrowers'."""
        if self.is_sample:
            return f"sample of {self.n_shown:,} of {self.n_total:,} borrowers"
        return f"all {self.n_total:,} borrowers"


def sample_positions(
    n_total: int, limit: int = SAMPLE_LIMIT, random_state: int = SAMPLE_SEED
) -> np.ndarray:
    """The sorted positions of the rows to draw points from: every row up to ``limit`` rows,
    else ``limit`` positions drawn at random with a fixed seed. Positions count over the whole
    table, so the rows are the same whether it is whole or in partitions."""
    if n_total <= limit:
        return np.arange(n_total)
    rng = np.random.default_rng(random_state)
    return np.sort(rng.choice(n_total, size=limit, replace=False))


def plot_sample(
    frame: pd.DataFrame, limit: int = SAMPLE_LIMIT, random_state: int = SAMPLE_SEED
) -> PlotSample:
    """Return ``frame`` itself when it has at most ``limit`` rows, else a reproducible random
    sample of ``limit`` rows (``sample_positions``; original row order kept), with the sizes."""
    n_total = len(frame)
    if n_total <= limit:
        return PlotSample(frame, n_total, n_total)
    positions = sample_positions(n_total, limit, random_state)
    return PlotSample(frame.iloc[positions], limit, n_total)


def sample_rows(frame, n_total: int, columns: list[str]) -> pd.DataFrame:
    """``columns`` of the sample rows (``sample_positions``) of ``frame`` (``n_total`` rows), as
    one small pandas frame."""
    return take_positions(frame[columns], sample_positions(n_total)).reset_index(drop=True)


# --------------------------------------------------------------------------------------------
# One pass over the loan book for the summaries of every chart drawn
# --------------------------------------------------------------------------------------------


def _each(frame: pd.DataFrame, partials: tuple) -> dict:
    """Every summary ``name -> partial(frame, *args)`` of one part."""
    return {name: partial(frame, *args) for name, partial, args in partials}


def _merge_each(merges: dict, parts: list[dict]) -> dict:
    return {name: merge([part[name] for part in parts]) for name, merge in merges.items()}


def _summarise(frame, wanted: dict[str, tuple]) -> dict:
    """``name -> (partial, merge, args)``: every summary of ``frame`` from one pass over its
    partitions (``partitions.summarise``)."""
    partials = tuple((name, partial, args) for name, (partial, _, args) in wanted.items())
    merges = {name: merge for name, (_, merge, _) in wanted.items()}
    return summarise(_each, functools.partial(_merge_each, merges), frame, partials)


def book_summaries(loans, names: Iterable[str]) -> dict:
    """The summaries ``names`` (of ``SUMMARIES``) of the loan book, merged, and its number of
    ``rows``, from one pass over its partitions; empty (the book not read) when no name is
    given."""
    wanted: dict[str, tuple] = {"rows": (len, sum, ())}
    wanted |= {name: SUMMARIES[name] for name in names}
    return _summarise(loans, wanted) if len(wanted) > 1 else {}


# --------------------------------------------------------------------------------------------
# The loan amounts
# --------------------------------------------------------------------------------------------

HEX_GRIDSIZE = 45


def amount_extents(loans: pd.DataFrame) -> dict:
    """First pass of the loan-amount chart: the extent of the finite loan amounts, and of the
    complete (income, amount) pairs, with the pairs' moments for their Pearson correlation."""
    amounts = finite(loans["Loan_Amount"])
    income = finite(loans["Monthly_Income"])
    pairs = np.isfinite(amounts) & np.isfinite(income)
    return {
        "amounts": extent(amounts),
        "income": extent(income[pairs]),
        "pair_amounts": extent(amounts[pairs]),
        "moments": co_moments(loans, ["Monthly_Income", "Loan_Amount"]),
    }


def merge_amount_extents(parts: list[dict]) -> dict:
    merges = dict.fromkeys(["amounts", "income", "pair_amounts"], merge_extents)
    return _merge_each(merges | {"moments": merge_co_moments}, parts)


class AmountBins(NamedTuple):
    """The second pass of the loan-amount chart: ``bins`` equal histogram bins over ``range``,
    each of a round width (``width``) and together just covering the amounts; beyond
    SAMPLE_LIMIT complete pairs, the pairs counted per hexagon of the grid of ``hexagons``
    (matplotlib's hexbin extent), else the pairs themselves (few) collected."""

    bins: int
    range: tuple[float, float]
    hexagons: tuple[float, float, float, float] | None

    @property
    def width(self) -> float:
        return (self.range[1] - self.range[0]) / self.bins


def round_width(width: float) -> float:
    """The smallest of 1, 2, 2.5 and 5 times a power of ten that is at least ``width`` (> 0):
    a bin width a reader can state ("per 200k")."""
    power = 10.0 ** math.floor(math.log10(width))
    return next(step * power for step in (1, 2, 2.5, 5, 10) if step * power >= width * (1 - 1e-9))


def round_bins(lo: float, hi: float, n_bins: int) -> tuple[int, tuple[float, float]]:
    """About ``n_bins`` bins of a round width (``round_width``) on multiples of it, the first
    holding ``lo``, the last ``hi``: the histogram ends within one bin of the data."""
    width = round_width((hi - lo) / n_bins if hi > lo else max(abs(hi), 1.0) / 10)
    start = math.floor(lo / width) * width
    bins = max(round((math.ceil(hi / width) * width - start) / width), 1)
    # min and max: no amount lost to a rounding error in the last digit of an edge
    return bins, (min(start, lo), max(start + bins * width, hi))


def _amount_bins_plan(extents: dict, kde_values: np.ndarray) -> AmountBins:
    # as many bins as numpy's 'auto' rule gives the sample, within [10, 50]
    n_bins = int(np.clip(len(np.histogram_bin_edges(kde_values, bins="auto")) - 1, 10, 50))
    amounts: Extent = extents["amounts"]
    # round edges, so that the chart can state the width ("share of loans per 200k"), ending
    # within a bin of the data; numpy's (0, 1) when there is no amount
    n_bins, value_range = round_bins(amounts.lo, amounts.hi, n_bins) if amounts.n else (10, (0, 1))
    hexagons = None
    if extents["moments"].n[0, 1] > SAMPLE_LIMIT:
        hexagons = _hexagon_extent(extents["income"], extents["pair_amounts"])
    return AmountBins(n_bins, value_range, hexagons)


def amount_bins(loans: pd.DataFrame, plan: AmountBins) -> dict:
    """Histogram counts of the finite loan amounts on the plan's edges, and the complete
    (income, amount) pairs counted per hexagon, or listed (in row order) when they are few."""
    amounts = finite(loans["Loan_Amount"])
    histogram = np.histogram(amounts[np.isfinite(amounts)], bins=plan.bins, range=plan.range)[0]
    income = finite(loans["Monthly_Income"])
    pairs = np.isfinite(amounts) & np.isfinite(income)
    if plan.hexagons is not None:
        return {
            "histogram": histogram,
            "hexagons": hexagon_counts(income[pairs], amounts[pairs], plan.hexagons),
        }
    return {"histogram": histogram, "pairs": np.column_stack([income[pairs], amounts[pairs]])}


def merge_amount_bins(parts: list[dict]) -> dict:
    merged = {"histogram": add_elementwise([p["histogram"] for p in parts])}
    if "hexagons" in parts[0]:
        merged["hexagons"] = add_elementwise([p["hexagons"] for p in parts])
    else:
        merged["pairs"] = np.concatenate([p["pairs"] for p in parts])
    return merged


def _hexagon_extent(x: Extent, y: Extent) -> tuple[float, float, float, float]:
    """The extent ``Axes.hexbin`` gives points of these extents: their range, widened when
    singular (matplotlib's own rule)."""
    nonsingular = getattr(mtransforms, "_nonsingular", None) or mtransforms.nonsingular
    xmin, xmax = nonsingular(*((x.lo, x.hi) if x.n else (0, 1)), expander=0.1)
    ymin, ymax = nonsingular(*((y.lo, y.hi) if y.n else (0, 1)), expander=0.1)
    return (float(xmin), float(xmax), float(ymin), float(ymax))


def _hexagon_grid(hex_extent: tuple[float, float, float, float]):
    """``Axes.hexbin``'s grid for ``gridsize=HEX_GRIDSIZE``: columns, rows, origin and steps."""
    nx = HEX_GRIDSIZE
    ny = int(nx / math.sqrt(3))
    xmin, xmax, ymin, ymax = hex_extent
    padding = 1.0e-9 * (xmax - xmin)
    xmin -= padding
    xmax += padding
    return nx, ny, xmin, ymin, (xmax - xmin) / nx, (ymax - ymin) / ny


def hexagon_counts(
    x: np.ndarray, y: np.ndarray, hex_extent: tuple[float, float, float, float]
) -> np.ndarray:
    """Points per hexagon, in the order of the cells ``Axes.hexbin(x, y, gridsize=HEX_GRIDSIZE,
    extent=hex_extent)`` draws (matplotlib's arithmetic, step for step), so counts of
    partitions add up to the counts of the whole."""
    nx, ny, xmin, ymin, sx, sy = _hexagon_grid(hex_extent)
    nx1, ny1 = nx + 1, ny + 1
    ix = (x - xmin) / sx
    iy = (y - ymin) / sy
    ix1 = np.round(ix).astype(int)
    iy1 = np.round(iy).astype(int)
    ix2 = np.floor(ix).astype(int)
    iy2 = np.floor(iy).astype(int)
    i1 = np.where((0 <= ix1) & (ix1 < nx1) & (0 <= iy1) & (iy1 < ny1), ix1 * ny1 + iy1 + 1, 0)
    i2 = np.where((0 <= ix2) & (ix2 < nx) & (0 <= iy2) & (iy2 < ny), ix2 * ny + iy2 + 1, 0)
    nearer_first = (ix - ix1) ** 2 + 3.0 * (iy - iy1) ** 2 < (ix - ix2 - 0.5) ** 2 + 3.0 * (
        iy - iy2 - 0.5
    ) ** 2
    first = np.bincount(i1[nearer_first], minlength=1 + nx1 * ny1)[1:]
    second = np.bincount(i2[~nearer_first], minlength=1 + nx * ny)[1:]
    return np.concatenate([first, second])


def hexagon_centres(hex_extent: tuple[float, float, float, float]) -> np.ndarray:
    """The centre of every cell of ``hexagon_counts``, as ``Axes.hexbin`` places them."""
    nx, ny, xmin, ymin, sx, sy = _hexagon_grid(hex_extent)
    nx1, ny1 = nx + 1, ny + 1
    centres = np.zeros((nx1 * ny1 + nx * ny, 2))
    centres[: nx1 * ny1, 0] = np.repeat(np.arange(nx1), ny1)
    centres[: nx1 * ny1, 1] = np.tile(np.arange(ny1), nx1)
    centres[nx1 * ny1 :, 0] = np.repeat(np.arange(nx) + 0.5, ny)
    centres[nx1 * ny1 :, 1] = np.tile(np.arange(ny), nx) + 0.5
    centres[:, 0] *= sx
    centres[:, 1] *= sy
    centres[:, 0] += xmin
    centres[:, 1] += ymin
    return centres


def _kde_sample(sample: pd.DataFrame, extents: dict) -> PlotSample:
    """The finite loan amounts of the sample rows, out of every finite amount."""
    values = finite(sample["Loan_Amount"])
    values = values[np.isfinite(values)]
    return PlotSample(pd.DataFrame({"Loan_Amount": values}), len(values), extents["amounts"].n)


def loan_amount_summaries(
    loans, extents: dict, sample: pd.DataFrame
) -> tuple[PlotSample, AmountBins, dict]:
    """The second pass of the loan-amount chart, after the extents (``amount_extents``) and the
    sample rows: the density curve's sample, the plan of the bins (their number from the
    sample), and the histogram and hexagon (or pair) counts on them over every row."""
    kde = _kde_sample(sample, extents)
    plan = _amount_bins_plan(extents, kde.frame["Loan_Amount"].to_numpy())
    binned = summarise(amount_bins, merge_amount_bins, loans, plan)
    return kde, plan, binned


# --------------------------------------------------------------------------------------------
# Recovery outcomes
# --------------------------------------------------------------------------------------------


def outcome_counts(loans: pd.DataFrame) -> dict[tuple[str], int]:
    """Loans per recovery outcome (missing: OPEN_LABEL)."""
    return label_counts(loans, {"Recovery_Status": OPEN_LABEL})


def history_outcome_counts(loans: pd.DataFrame) -> dict[tuple[str, str], int]:
    """Loans per (payment history, recovery outcome); missing ones labelled NOT_RECORDED and
    OPEN_LABEL."""
    return label_counts(loans, {"Payment_History": NOT_RECORDED, "Recovery_Status": OPEN_LABEL})


def missed_outcome_counts(loans: pd.DataFrame) -> dict[tuple[float | None, str], int]:
    """Loans per (number of missed payments, recovery outcome label), the number as a float,
    None for a missing one; counted with one ``np.bincount`` over integer codes."""
    codes, labels = label_codes(loans["Recovery_Status"], OPEN_LABEL)
    missed = loans["Num_Missed_Payments"]
    known = missed.notna().to_numpy()
    row_codes, values = pd.factorize(missed[known], sort=True)
    width = len(labels)
    cells = np.bincount(
        row_codes.astype(np.intp) * width + codes[known], minlength=len(values) * width
    )
    counts: dict[tuple[float | None, str], int] = {
        (float(values[cell // width]), labels[cell % width]): int(cells[cell])
        for cell in np.flatnonzero(cells)
    }
    unrecorded = np.bincount(codes[~known], minlength=width)
    counts |= {(None, labels[j]): int(unrecorded[j]) for j in np.flatnonzero(unrecorded)}
    return counts


def missed_outcome_table(cells: dict, levels: list[str]) -> pd.DataFrame:
    """Loans per number of missed payments (rows, sorted; loans without a count left out) and
    outcome (columns, ``levels``): the table

        DataFrame({"missed": missed, "status": status}).dropna(subset=["missed"])
        .groupby(["missed", "status"], observed=True).size().unstack("status", fill_value=0)
        .reindex(columns=levels, fill_value=0).sort_index()

    from ``missed_outcome_counts`` (the counts as floats)."""
    missed = sorted({m for m, _ in cells if m is not None})
    row = {m: i for i, m in enumerate(missed)}
    column = {level: j for j, level in enumerate(levels)}
    table = np.zeros((len(missed), len(levels)), dtype=np.int64)
    for (m, status), n in cells.items():
        if m is not None:
            table[row[m], column[status]] += n
    return pd.DataFrame(
        table,
        index=pd.Index(missed, dtype=float, name="missed"),
        columns=pd.Index(levels, name="status"),
    )


def wilson_interval(
    successes: np.ndarray, n: np.ndarray, z: float = 1.959964
) -> tuple[np.ndarray, np.ndarray]:
    """The Wilson score interval (95 % by default) of each share ``successes / n``: unlike the
    normal approximation it stays within [0, 1] and is wide, not zero, at 0 of 3 or 3 of 3
    (Wilson 1927; Brown, Cai & DasGupta 2001). ``n`` > 0."""
    k = np.asarray(successes, dtype="float64")
    n = np.asarray(n, dtype="float64")
    share = k / n
    centre = (share + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z / (1 + z**2 / n) * np.sqrt(share * (1 - share) / n + z**2 / (4 * n**2))
    # the share always inside its interval, whatever the rounding in the last digit
    return np.clip(centre - half, 0.0, share), np.clip(centre + half, share, 1.0)


# --------------------------------------------------------------------------------------------
# Borrower segments
# --------------------------------------------------------------------------------------------


def _segment_per_loan(loan_ids: pd.Series, segment_ids: pd.Series, names: pd.Series) -> pd.Series:
    """Left join of loans to segments on Borrower_ID, returning each loan's segment name
    ('Unassigned' when the borrower has none). The same result as a many-to-one
    DataFrame.merge, done as a hash lookup (3x faster at 10M rows), with a fast path when
    segments lists the same borrowers in the same order as loans (how the pipeline builds
    it): then only an element-wise comparison is needed, and the uniqueness of Borrower_ID
    is the schemas' guarantee rather than re-checked here."""
    from loan_pipeline.core.joins import same_ids

    if not isinstance(loan_ids.dtype, pd.CategoricalDtype) and same_ids(loan_ids, segment_ids):
        positions = np.arange(len(loan_ids))  # compared as Arrow strings: no Python objects
    else:
        loan_values = np.asarray(loan_ids, dtype=object)
        segment_values = np.asarray(segment_ids, dtype=object)
        index = pd.Index(segment_values)
        if not index.is_unique:
            duplicated = index[index.duplicated()].unique()[:5].tolist()
            raise ValueError(f"segments has more than one row for Borrower_ID(s) {duplicated}")
        if isinstance(loan_ids.dtype, pd.CategoricalDtype):
            per_category = index.get_indexer(loan_ids.cat.categories)
            codes = loan_ids.cat.codes.to_numpy()
            positions = np.where(codes >= 0, per_category[codes], -1)
        else:
            positions = index.get_indexer(loan_values)
    labels = pd.Categorical(names).add_categories([UNASSIGNED_SEGMENT])
    # One extra trailing entry so that position -1 (borrower not found) maps to Unassigned.
    label_codes = np.append(labels.codes, labels.categories.get_loc(UNASSIGNED_SEGMENT))
    segment = pd.Categorical.from_codes(label_codes[positions], categories=labels.categories)
    return pd.Series(segment, index=loan_ids.index, name="segment_name")


def _segment_names(segments: pd.DataFrame) -> pd.Series:
    names = segments["segment_name"]
    return names if pd.api.types.is_string_dtype(names) else names.astype(str)


def segment_rows(loans: pd.DataFrame, segments: pd.DataFrame) -> pd.DataFrame:
    """Each loan's income, amount and segment name ('Unassigned' when its borrower has none),
    from the loans and the segments (whole tables, or aligned partitions of them)."""
    segment = _segment_per_loan(
        loans["Borrower_ID"], segments["Borrower_ID"], _segment_names(segments)
    )
    return pd.DataFrame(
        {
            "Monthly_Income": loans["Monthly_Income"].to_numpy(),
            "Loan_Amount": loans["Loan_Amount"].to_numpy(),
            "segment_name": segment.array,
        }
    )


def segment_sizes(rows: pd.DataFrame) -> dict[str, int]:
    """Loans per segment name (``segment_rows``), only the names that occur."""
    sizes = rows["segment_name"].value_counts(sort=False)
    return {str(name): int(n) for name, n in sizes.items() if n > 0}


def segment_labels(segments: pd.DataFrame) -> pd.DataFrame:
    """The distinct (segment_id, segment_name) pairs."""
    return pd.DataFrame(
        {
            "segment_id": segments["segment_id"].to_numpy(),
            "segment_name": _segment_names(segments).array,
        }
    ).drop_duplicates()


def segment_order(parts: list[pd.DataFrame]) -> list[str]:
    """Segment names by segment id (then name), each once."""
    return (
        pd.concat(parts, ignore_index=True)
        .drop_duplicates()
        .sort_values(["segment_id", "segment_name"])["segment_name"]
        .drop_duplicates()
        .tolist()
    )


def segment_summaries(loans, segments) -> tuple[list[str], dict[str, int], pd.DataFrame]:
    """The names in segment-id order, the segment sizes over every loan (each partition of the
    loans joined to its own partition of the segments), and the sample rows (income, amount,
    segment name)."""
    rows = per_partition(
        segment_rows,
        loans[["Borrower_ID", "Monthly_Income", "Loan_Amount"]],
        segments[["Borrower_ID", "segment_id", "segment_name"]],
    )
    sizes = summarise(segment_sizes, add_counts, rows)
    seg_order = summarise(segment_labels, segment_order, segments[["segment_id", "segment_name"]])
    sample = take_positions(rows, sample_positions(sum(sizes.values())))
    return seg_order, sizes, sample.reset_index(drop=True)


# --------------------------------------------------------------------------------------------
# Correlations
# --------------------------------------------------------------------------------------------


def _numeric_columns(loans: pd.DataFrame) -> list[str]:
    """Every int/float column except identifiers (text columns are not numeric anyway)."""
    # select_dtypes on the empty head: the same dtype rules without copying every row.
    return [
        c
        for c in loans.iloc[:0].select_dtypes("number").columns
        if not str(c).lower().endswith("_id") and str(c).lower() != "id"
    ]


def numeric_moments(loans: pd.DataFrame) -> CoMoments:
    """The moments of every numeric column (``_numeric_columns``), pairwise complete."""
    return co_moments(loans, _numeric_columns(loans))


# --------------------------------------------------------------------------------------------
# Calibration
# --------------------------------------------------------------------------------------------

# Scores are binned on [0, 1] into this many bins (a power of two: the bin of a score is exact)
# to find the deciles; the rows of the few bins a decile boundary falls in are fetched to place
# them exactly, unless there are more than BOUNDARY_ROW_LIMIT of them (heavily tied scores in a
# very large book): then those bins are split between the deciles in proportion.
SCORE_BINS = 2**14
BOUNDARY_ROW_LIMIT = 200_000
SCORE_HISTOGRAM_BINS = 20


class ScoreBins(NamedTuple):
    """The held-out scores (with an observed outcome) binned: how many rows, and per fine bin
    of the finite scores their number, score sum and outcome sum; and the 20-bin histogram of
    the scores on [0, 1]."""

    held_out: int
    counts: np.ndarray
    score_sums: np.ndarray
    observed_sums: np.ndarray
    histogram: np.ndarray


def _held_out_scores(scores: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, int]:
    """The finite scores of the held-out rows with an outcome, their outcomes, and how many
    such rows there are (finite score or not)."""
    outcome = scores["not_fully_recovered"]
    held = (scores["score_source"].isin(HELD_OUT_SOURCES) & outcome.notna()).to_numpy(dtype=bool)
    score = finite(scores["risk_score"])[held]
    observed = finite(outcome)[held]
    scored = np.isfinite(score)
    return score[scored], observed[scored], int(held.sum())


def _score_bin(score: np.ndarray) -> np.ndarray:
    return np.clip(np.floor(score * SCORE_BINS), 0, SCORE_BINS - 1).astype(np.intp)


def score_bins(scores: pd.DataFrame) -> ScoreBins:
    score, observed, held_out = _held_out_scores(scores)
    where = _score_bin(score)
    return ScoreBins(
        held_out,
        np.bincount(where, minlength=SCORE_BINS),
        np.bincount(where, weights=score, minlength=SCORE_BINS),
        np.bincount(where, weights=observed, minlength=SCORE_BINS),
        np.histogram(score, bins=SCORE_HISTOGRAM_BINS, range=(0, 1))[0],
    )


def merge_score_bins(parts: list[ScoreBins]) -> ScoreBins:
    return ScoreBins(
        sum(p.held_out for p in parts),
        *(add_elementwise([p[i] for p in parts]) for i in range(1, len(ScoreBins._fields))),
    )


def score_rows(scores: pd.DataFrame, wanted: np.ndarray) -> np.ndarray:
    """(bin, score, outcome) of the held-out rows whose score falls in the ``wanted`` bins, in
    row order."""
    score, observed, _ = _held_out_scores(scores)
    where = _score_bin(score)
    keep = np.isin(where, wanted)
    return np.column_stack([where[keep], score[keep], observed[keep]])


def decile_ends(m: int, q: int) -> np.ndarray:
    """Where each of the ``q`` groups of ``pd.qcut(ranks, q)`` of ``m`` ranks ends (exclusive,
    0-based in score order): rank r (1-based) is in group k when
    (m - 1) k / q < r - 1 <= (m - 1) (k + 1) / q, rank 1 in the first. Exact integer arithmetic:
    pandas' floating-point quantiles put a rank that falls exactly on a group boundary into
    the next group instead (e.g. 4 ranks in 3 groups: 1, 1, 2 rows, here 2, 1, 1)."""
    return np.array([1 + ((m - 1) * (k + 1)) // q for k in range(q)], dtype=np.int64)


def _split_bins(counts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """The bins a boundary between two deciles falls inside (rows of the bin on both sides)."""
    stop = np.cumsum(counts)
    start = stop - counts
    inner = ends[:-1]
    where = np.searchsorted(stop, inner, side="right")  # the bin holding row `inner`
    return np.unique(where[start[where] < inner])


def decile_means(binned: ScoreBins, q: int, rows: np.ndarray | None) -> pd.DataFrame:
    """Mean score, mean outcome and rows of each decile of the held-out scores by rank (ties in
    order of appearance), from the bins; ``rows``: the rows of the split bins, in row order
    (``score_rows``), or None to split those bins in proportion."""
    counts = binned.counts
    ends = decile_ends(int(counts.sum()), q)
    stop = np.cumsum(counts)
    start = stop - counts
    split = _split_bins(counts, ends)
    whole = np.setdiff1d(np.flatnonzero(counts), split)
    decile = np.searchsorted(ends, start[whole], side="right")
    # as floats: with no whole bin at all (every row in a split bin, e.g. a constant score)
    # numpy's bincount of nothing is integer, and the sums added below are fractions
    n, score, observed = (
        np.bincount(decile, weights=w[whole], minlength=q).astype("float64")
        for w in (counts, binned.score_sums, binned.observed_sums)
    )
    for b in split:
        if rows is None:
            first = np.r_[0, ends[:-1]]
            overlap = np.clip(np.minimum(stop[b], ends) - np.maximum(start[b], first), 0, None)
            share = overlap / counts[b]
            n += overlap
            score += share * binned.score_sums[b]
            observed += share * binned.observed_sums[b]
            continue
        inside = rows[rows[:, 0] == b]
        if len(inside) != counts[b]:
            raise ValueError(f"score bin {b}: {len(inside)} rows fetched, {counts[b]} counted")
        inside = inside[np.argsort(inside[:, 1], kind="stable")]  # ties in row order
        where = np.searchsorted(ends, start[b] + np.arange(len(inside)), side="right")
        n += np.bincount(where, minlength=q)
        score += np.bincount(where, weights=inside[:, 1], minlength=q)
        observed += np.bincount(where, weights=inside[:, 2], minlength=q)
    used = n > 0
    return pd.DataFrame(
        {"predicted": score[used] / n[used], "observed": observed[used] / n[used], "n": n[used]}
    )


def calibration_summaries(scores, bins: int) -> tuple[ScoreBins, pd.DataFrame | None, int]:
    """The held-out scores binned, the mean score and outcome of each of their ``q`` deciles
    (None when no held-out score is finite), and ``q``: ``bins``, or the number of held-out
    scores when there are fewer."""
    binned = summarise(score_bins, merge_score_bins, scores)
    q = min(bins, binned.held_out)
    deciles = None
    if binned.counts.sum():
        split = _split_bins(binned.counts, decile_ends(int(binned.counts.sum()), q))
        rows = None
        if len(split) and binned.counts[split].sum() <= BOUNDARY_ROW_LIMIT:
            rows = summarise(score_rows, np.concatenate, scores, split)
        deciles = decile_means(binned, q, rows)
    return binned, deciles, q


# The summaries of the loan book the charts are drawn from (a chart names those it needs:
# ``Chart.summaries``), computed in one pass for every chart drawn:
# name -> (partial, merge, extra arguments).
SUMMARIES: dict[str, tuple] = {
    "amount_extents": (amount_extents, merge_amount_extents, ()),
    "history_outcomes": (history_outcome_counts, add_counts, ()),
    "missed_outcomes": (missed_outcome_counts, add_counts, ()),
    "outcomes": (outcome_counts, add_counts, ()),
    "numeric": (numeric_moments, merge_co_moments, ()),
}
