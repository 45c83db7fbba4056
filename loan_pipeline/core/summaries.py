"""Summaries of a table computed a partition at a time and merged: the one module for them.

On a Dask cluster the workers read the rows and only small summaries come back
(``partitions.summarise(partial, merge, frame)``); for a pandas frame the same functions run once,
on the whole frame (one part). Each summary is a pure function of one pandas frame and a merge of
the list of their results. Counts add up exactly; extents take the smallest and largest value;
moments are merged with the pairwise formulas of Chan, Golub and LeVeque, so a correlation from
partitions equals the one from the whole table to rounding (about 1e-15), whatever the
partitioning.

- ``add_counts``, ``add_elementwise``: the merges every kind of summary uses.
- ``label_counts``, ``extent``, ``co_moments``: counts per label, extents and co-moments (the
  charts).
- ``sum_frames``: per-group counts and sums added up over the partitions.
- ``value_ranges`` and ``bin_counts``: non-missing values, minimum and maximum, and counts in
  given bins, of each column.
- ``quantiles``: ``np.quantile`` (its default, linear method) of each column, exactly: the order
  statistics it interpolates are found by narrowing down, pass by pass, the range of values each
  one lies in (``order_statistics``), never by sorting a column in one place.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from loan_pipeline.core.partitions import summarise


def add_counts(parts: Iterable[Mapping]) -> dict:
    """Counts per key, added up over the parts."""
    total: dict = {}
    for part in parts:
        for key, n in part.items():
            total[key] = total.get(key, 0) + n
    return total


def add_elementwise(parts: list) -> Any:
    """Same-shaped arrays (bin counts, bin sums) added element by element, or dicts of them
    added key by key (the keys of the first part), in the parts' order. The result is a new
    array with the first part's dtype; the parts are left as they are."""
    if isinstance(parts[0], Mapping):
        return {key: add_elementwise([part[key] for part in parts]) for key in parts[0]}
    total = np.array(parts[0], copy=True)
    for part in parts[1:]:
        total += part
    return total


def label_codes(values: pd.Series, missing: str) -> tuple[np.ndarray, list[str]]:
    """Each row's label as a code into ``labels`` (sorted): the text of its value, or
    ``missing`` for a missing value (a value that reads ``missing`` is the same label). Works on
    text or category columns without a Python string per row."""
    if not isinstance(values.dtype, pd.CategoricalDtype):
        values = values.astype("category")
    names = np.array([str(c) for c in values.cat.categories] + [missing], dtype=object)
    labels, remap = np.unique(names, return_inverse=True)
    # a missing value has code -1: the last name, ``missing``
    codes = remap.astype(np.intp)[values.cat.codes.to_numpy()]
    return codes, labels.tolist()


def label_counts(frame: pd.DataFrame, missing: Mapping[str, str]) -> dict[tuple[str, ...], int]:
    """Rows per combination of the labels (``label_codes``) of the columns named in ``missing``
    (column -> label of its missing values); only combinations that occur."""
    coded = [label_codes(frame[column], label) for column, label in missing.items()]
    flat = np.zeros(len(frame), dtype=np.intp)
    sizes = []
    for codes, labels in coded:
        flat = flat * len(labels) + codes
        sizes.append(len(labels))
    counts = np.bincount(flat, minlength=int(np.prod(sizes)))
    present = np.flatnonzero(counts)
    where = np.unravel_index(present, sizes)
    return {
        tuple(labels[i] for (_, labels), i in zip(coded, cell, strict=True)): int(n)
        for cell, n in zip(zip(*where, strict=True), counts[present], strict=True)
    }


def finite(values: pd.Series) -> np.ndarray:
    """The column as floats, missing values as NaN."""
    return values.to_numpy(dtype=float, na_value=np.nan)


class Extent(NamedTuple):
    """How many finite values, and the smallest and largest (inf and -inf when none)."""

    n: int
    lo: float
    hi: float


def extent(values: np.ndarray) -> Extent:
    values = values[np.isfinite(values)]
    if not len(values):
        return Extent(0, np.inf, -np.inf)
    return Extent(len(values), float(values.min()), float(values.max()))


def merge_extents(parts: list[Extent]) -> Extent:
    return Extent(sum(p.n for p in parts), min(p.lo for p in parts), max(p.hi for p in parts))


# --------------------------------------------------------------------------------------------
# Pearson correlation over pairwise-complete rows
# --------------------------------------------------------------------------------------------


class CoMoments(NamedTuple):
    """Moments of numeric columns for a Pearson correlation over pairwise-complete rows: entry
    ``[i, j]`` is over the rows where columns i and j are both finite. ``n``: those rows;
    ``mean[i, j]``: the mean of column i over them; ``m2[i, j]``: the sum of squared deviations
    of column i from that mean; ``co[i, j]``: the sum of the products of the deviations of
    columns i and j. A column constant over the rows has exactly zero deviations."""

    columns: tuple[str, ...]
    rows: int
    n: np.ndarray
    mean: np.ndarray
    m2: np.ndarray
    co: np.ndarray


def _no_moments(columns: tuple[str, ...], rows: int = 0) -> CoMoments:
    p = len(columns)
    n = np.zeros((p, p), dtype=np.int64)
    return CoMoments(columns, rows, n, np.zeros((p, p)), np.zeros((p, p)), np.zeros((p, p)))


def co_moments(frame: pd.DataFrame, columns: list[str], chunk_rows: int = 1_000_000) -> CoMoments:
    """``CoMoments`` of ``columns`` of ``frame`` (missing and infinite values left out, pair by
    pair, as ``DataFrame.corr`` does), read ``chunk_rows`` rows at a time, so at most one
    chunk of the columns is held as floats."""
    columns = tuple(columns)
    total = _no_moments(columns)
    for start in range(0, len(frame), chunk_rows):
        rows = slice(start, start + chunk_rows)
        block = np.empty((min(chunk_rows, len(frame) - start), len(columns)), order="F")
        for j, column in enumerate(columns):
            block[:, j] = finite(frame[column].iloc[rows])
        total = merge_co_moments([total, _block_moments(block, columns)])
    return total._replace(rows=len(frame))


def _block_moments(block: np.ndarray, columns: tuple[str, ...]) -> CoMoments:
    """The moments of a float block, from the groups of rows that have the same columns
    present (one group when nothing is missing): within a group every pair has the same rows,
    so its moments are two-pass column moments and one cross-product; the groups are merged."""
    present = np.isfinite(block)
    if present.all():
        return _complete_moments(block, np.arange(len(columns)), columns)
    p = len(columns)
    if p <= 62:
        key = present.astype(np.int64) @ (np.int64(1) << np.arange(p, dtype=np.int64))
    else:
        key = np.unique(np.packbits(present, axis=1), axis=0, return_inverse=True)[1].ravel()
    order = np.argsort(key, kind="stable")
    ordered = key[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], len(order)]
    total = _no_moments(columns)
    for start, end in zip(starts, ends, strict=True):
        rows = order[start:end]
        cols = np.flatnonzero(present[rows[0]])
        if len(cols):
            group = _complete_moments(block[np.ix_(rows, cols)], cols, columns)
            total = merge_co_moments([total, group])
    return total


def _complete_moments(values: np.ndarray, cols: np.ndarray, columns: tuple[str, ...]):
    """Moments of a block without missing values (its columns are ``cols`` of ``columns``),
    two-pass with the rounding correction; ``values`` is overwritten."""
    m = len(values)
    constant = values.min(axis=0) == values.max(axis=0)
    mean = values.mean(axis=0)
    mean[constant] = values[0, constant]  # exactly the value: zero deviations
    values -= mean
    values[:, constant] = 0.0
    sums = values.sum(axis=0)
    m2 = np.einsum("ij,ij->j", values, values) - sums * sums / m
    co = values.T @ values - np.outer(sums, sums) / m
    moments = _no_moments(columns)
    cells = np.ix_(cols, cols)
    moments.n[cells] = m
    moments.mean[cells] = mean[:, None]
    moments.m2[cells] = m2[:, None]
    moments.co[cells] = co
    return moments


def merge_co_moments(parts: list[CoMoments]) -> CoMoments:
    """The moments of the parts' rows together (pairwise update of Chan et al.)."""
    total = parts[0]
    for part in parts[1:]:
        if part.columns != total.columns:
            raise ValueError(f"moments of different columns: {total.columns} and {part.columns}")
        total = _merge_two(total, part)
    return total


def _merge_two(a: CoMoments, b: CoMoments) -> CoMoments:
    n = a.n + b.n
    na, nb, nn = (x.astype(float) for x in (a.n, b.n, n))
    with np.errstate(divide="ignore", invalid="ignore"):
        delta = b.mean - a.mean
        weight = na * nb / nn
        mean = a.mean + delta * (nb / nn)
        m2 = a.m2 + b.m2 + delta * delta * weight
        co = a.co + b.co + delta * delta.T * weight
    # where one side has no rows the other's moments stand as they are (exactly)
    only_a, only_b = b.n == 0, a.n == 0
    mean = np.where(only_b, b.mean, np.where(only_a, a.mean, mean))
    m2 = np.where(only_b, b.m2, np.where(only_a, a.m2, m2))
    co = np.where(only_b, b.co, np.where(only_a, a.co, co))
    return CoMoments(a.columns, a.rows + b.rows, n, mean, m2, co)


def pearson(moments: CoMoments) -> pd.DataFrame:
    """The Pearson correlation matrix: NaN for a pair without two rows or where a column is
    constant over the pair's rows, 1 on the diagonal otherwise; clipped to [-1, 1]."""
    m2, m2_other = moments.m2, moments.m2.T
    valid = (moments.n >= 2) & (m2 > 0) & (m2_other > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = np.clip(moments.co / np.sqrt(m2 * m2_other), -1.0, 1.0)
    corr[~valid] = np.nan
    diagonal = np.diag_indices_from(corr)
    corr[diagonal] = np.where(valid[diagonal], 1.0, np.nan)
    index = pd.Index(list(moments.columns))
    return pd.DataFrame(corr, index=index, columns=index.copy())


# Bins of each histogram pass (each pass narrows a value's range about this many times), and
# the number of values in a range below which they are fetched and sorted instead.
HISTOGRAM_BINS = 256
FETCH_AT_MOST = 4096


def sum_frames(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """Per-partition frames of counts and sums, indexed by group, added up (a group that a
    partition lacks counts zero there). Groups in order of first appearance."""
    whole = pd.concat(parts)
    return whole.groupby(level=list(range(whole.index.nlevels)), sort=False).sum()


def _values(part: pd.DataFrame, column: str) -> np.ndarray:
    """A column's non-missing values as float64."""
    x = part[column].to_numpy(dtype="float64", na_value=np.nan)
    return x[~np.isnan(x)]


# --- ranges and bins ---------------------------------------------------------------------------


def value_ranges(part: pd.DataFrame) -> dict[str, np.ndarray]:
    """Per column: [non-missing values, minimum, maximum] (an empty column: [0, inf, -inf])."""
    out = {}
    for column in part.columns:
        x = _values(part, column)
        out[column] = np.array(
            [len(x), x.min() if len(x) else np.inf, x.max() if len(x) else -np.inf]
        )
    return out


def merge_ranges(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    stacked = {c: np.vstack([p[c] for p in parts]) for c in parts[0]}
    return {c: np.array([s[:, 0].sum(), s[:, 1].min(), s[:, 2].max()]) for c, s in stacked.items()}


def bin_counts(part: pd.DataFrame, edges: dict[str, list[float]]) -> dict[str, np.ndarray]:
    """Per column of ``edges``: its non-missing values in each bin, bin i holding
    edges[i-1] <= x < edges[i] (``len(edges) + 1`` bins, the first and last open-ended)."""
    out = {}
    for column, cuts in edges.items():
        cuts = np.asarray(cuts, dtype="float64")
        x = _values(part, column)
        out[column] = np.bincount(np.searchsorted(cuts, x, side="right"), minlength=len(cuts) + 1)
    return out


def ranges_and_bins(part: pd.DataFrame, edges: dict[str, list[float]]) -> tuple[dict, dict]:
    """``value_ranges`` and ``bin_counts`` in one pass over a partition."""
    return value_ranges(part), bin_counts(part, edges)


def merge_ranges_and_bins(parts: list[tuple[dict, dict]]) -> tuple[dict, dict]:
    return merge_ranges([r for r, _ in parts]), add_elementwise([b for _, b in parts])


# --- exact quantiles -----------------------------------------------------------------------------


def quantile_ranks(n: int, probabilities) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For ``n`` values: the 0-based ranks of the two order statistics each quantile lies
    between, and the interpolation weight, as ``np.quantile`` (method "linear") computes them."""
    q = np.atleast_1d(np.asarray(probabilities, dtype="float64"))
    virtual = (n - 1) * q
    below = np.floor(virtual)
    above = below + 1
    # numpy's bounds: at or past the last index, the last value; before the first, the first
    last = virtual >= n - 1
    below[last], above[last] = n - 1, n - 1
    first = virtual < 0
    below[first], above[first] = 0, 0
    gamma = virtual - np.where(last, -1, below)  # (its weight for the last value is moot)
    return below.astype("int64"), above.astype("int64"), gamma


def interpolate(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """numpy's ``_lerp``, the same floating-point operations, so the same result to the bit."""
    with np.errstate(over="ignore", invalid="ignore"):  # infinite ends: NaN, as numpy's
        diff = b - a
        out = a + diff * t
        late = t >= 0.5
        out[late] = (b - diff * (1 - t))[late]
    return out


def quantiles(
    frame, probabilities, ranges: dict[str, np.ndarray] | None = None, **narrowing
) -> dict:
    """``np.quantile(column.dropna(), probabilities)`` of every column of ``frame`` (a pandas
    frame or a Dask frame), exactly, from a few passes over the partitions. ``ranges``: the
    frame's ``value_ranges`` if already computed. A column with no values gets NaN.
    ``narrowing``: ``bins`` and ``fetch_at_most`` of ``order_statistics``."""
    if ranges is None:
        ranges = summarise(value_ranges, merge_ranges, frame)
    wanted = {}
    for column, (n, _, _) in ranges.items():
        if n:
            below, above, gamma = quantile_ranks(int(n), probabilities)
            wanted[column] = (below, above, gamma)
    found = order_statistics(
        frame,
        {c: np.concatenate([lo, hi]).tolist() for c, (lo, hi, _) in wanted.items()},
        ranges,
        **narrowing,
    )
    out = {}
    for column in ranges:
        if column not in wanted:
            out[column] = np.full(len(np.atleast_1d(probabilities)), np.nan)
            continue
        below, above, gamma = wanted[column]
        a = np.array([found[column][r] for r in below], dtype="float64")
        b = np.array([found[column][r] for r in above], dtype="float64")
        out[column] = interpolate(a, b, gamma)
    return out


@dataclass
class _Range:
    """Values ``lo <= x <= hi`` of a column: ``count`` of them, ``below`` smaller ones; the
    order statistics sought among them (0-based ranks over the whole column)."""

    lo: float
    hi: float
    below: int
    count: int
    ranks: list[int]


def order_statistics(
    frame,
    ranks: dict[str, list[int]],
    ranges: dict[str, np.ndarray],
    bins: int = HISTOGRAM_BINS,
    fetch_at_most: int = FETCH_AT_MOST,
) -> dict[str, dict[int, float]]:
    """The values at the given 0-based ``ranks`` of each column's sorted non-missing values
    (``ranges``: the frame's ``value_ranges``).

    Each rank starts in the column's whole range [min, max]. A pass over the partitions then
    either fetches a range's values (when it holds at most ``fetch_at_most``) or splits it into
    ``bins`` bins (at least 3), counting each bin's values and their least and greatest; the rank
    falls in one bin, whose least and greatest values are the next, narrower range. A bin is a
    monotone function of the value, so its values are exactly those between its least and
    greatest; a range whose least and greatest are equal is that value. Every split puts the
    range's two ends in different bins, so each pass narrows it, usually by orders of magnitude.
    """
    if bins < 3:
        raise ValueError("at least 3 bins a pass")
    found: dict[str, dict[int, float]] = {c: {} for c in ranks}
    pending: dict[str, list[_Range]] = {}
    for column, wanted in ranks.items():
        n, lo, hi = ranges[column]
        wanted = sorted(set(int(r) for r in wanted))
        if wanted and not (0 <= wanted[0] and wanted[-1] < n):
            raise ValueError(f"{column}: ranks outside 0..{int(n) - 1}")
        if wanted:
            pending[column] = [_Range(float(lo), float(hi), 0, int(n), wanted)]
    while True:
        plan: dict[str, list[tuple[float, float, bool]]] = {}
        for column, open_ranges in list(pending.items()):
            unresolved = []
            for r in open_ranges:
                if r.lo == r.hi:  # every value in it is the same
                    found[column].update(dict.fromkeys(r.ranks, r.lo))
                else:
                    unresolved.append(r)
            pending[column] = sorted(unresolved, key=lambda r: r.lo)
            if unresolved:
                plan[column] = [(r.lo, r.hi, r.count <= fetch_at_most) for r in pending[column]]
            else:
                del pending[column]
        if not plan:
            return found
        results = summarise(narrow, partial(merge_narrowed, bins=bins), frame, plan, bins)
        for column, open_ranges in list(pending.items()):
            narrower = []
            for r, result in zip(open_ranges, results[column], strict=True):
                if isinstance(result, np.ndarray):  # fetched
                    if len(result) != r.count:
                        raise RuntimeError(f"{column}: the partitions changed between passes")
                    values = np.sort(result)
                    found[column].update({k: float(values[k - r.below]) for k in r.ranks})
                    continue
                _, counts, lows, highs = result
                if counts.sum() != r.count:
                    raise RuntimeError(f"{column}: the partitions changed between passes")
                ends = np.cumsum(counts)
                where = np.searchsorted(ends, np.array(r.ranks) - r.below, side="right")
                for j in np.unique(where):
                    start = r.below + (int(ends[j - 1]) if j else 0)
                    inside = [k for k, w in zip(r.ranks, where, strict=True) if w == j]
                    narrower.append(
                        _Range(float(lows[j]), float(highs[j]), start, int(counts[j]), inside)
                    )
            pending[column] = narrower
            if not narrower:
                del pending[column]


def _bin_of(values: np.ndarray, lo: float, hi: float, bins: int) -> np.ndarray:
    """Bin 0..bins-1 of each value in [lo, hi] (lo < hi): non-decreasing in the value, ``lo``
    in the first bin and ``hi`` in the last. Where the width is not a usable finite number
    (infinite ends, or too small to halve), three bins: lo, between, hi."""
    width = hi * 0.5 - lo * 0.5  # halves, so that hi - lo cannot overflow
    if np.isfinite(width) and width > 0:
        scaled = np.floor((values * 0.5 - lo * 0.5) / width * bins)
        return np.clip(scaled, 0, bins - 1).astype("int64")
    return (values > lo).astype("int64") + (values >= hi)


def histogram(values: np.ndarray, lo: float, hi: float, bins: int):
    """Occupied bins of ``_bin_of``: (bins, counts, least value, greatest value)."""
    which = _bin_of(values, lo, hi, bins)
    counts = np.bincount(which, minlength=bins)
    lows = np.full(bins, np.inf)
    highs = np.full(bins, -np.inf)
    np.minimum.at(lows, which, values)
    np.maximum.at(highs, which, values)
    occupied = np.flatnonzero(counts)
    return occupied, counts[occupied], lows[occupied], highs[occupied]


def narrow(part: pd.DataFrame, plan: dict[str, list[tuple[float, float, bool]]], bins: int):
    """One pass of ``order_statistics`` over a partition: for each of a column's ranges, the
    values in it (``fetch``) or their ``histogram``."""
    out = {}
    for column, ranges in plan.items():
        x = _values(part, column)
        results = []
        for lo, hi, fetch in ranges:  # a few ranges: a mask each is cheaper than a search
            members = x[(x >= lo) & (x <= hi)]
            results.append(members if fetch else histogram(members, lo, hi, bins))
        out[column] = results
    return out


def merge_narrowed(parts: list[dict], bins: int) -> dict:
    out = {}
    for column in parts[0]:
        merged = []
        for results in zip(*(p[column] for p in parts), strict=True):
            if isinstance(results[0], np.ndarray):
                merged.append(np.concatenate(results))
                continue
            which = np.concatenate([r[0] for r in results])
            counts = np.zeros(bins, dtype="int64")
            np.add.at(counts, which, np.concatenate([r[1] for r in results]))
            lows = np.full(bins, np.inf)
            np.minimum.at(lows, which, np.concatenate([r[2] for r in results]))
            highs = np.full(bins, -np.inf)
            np.maximum.at(highs, which, np.concatenate([r[3] for r in results]))
            occupied = np.flatnonzero(counts)
            merged.append((occupied, counts[occupied], lows[occupied], highs[occupied]))
        out[column] = merged
    return out
