"""Summaries of a table that are computed a partition at a time and then merged, so that on a
Dask cluster the workers read the rows and only small summaries come back (``partitions.combine``);
for a pandas frame the same functions run once, on the whole frame.

- ``sum_frames``: per-group counts and sums added up over the partitions.
- ``value_ranges`` and ``bin_counts``: non-missing values, minimum and maximum, and counts in
  given bins, of each column.
- ``quantiles``: ``np.quantile`` (its default, linear method) of each column, exactly: the order
  statistics it interpolates are found by narrowing down, pass by pass, the range of values each
  one lies in (``order_statistics``), never by sorting a column in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd

from loan_pipeline.core.aggregates import add_elementwise
from loan_pipeline.core.partitions import combine

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
        ranges = combine(value_ranges, merge_ranges, frame)
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
        results = combine(narrow, partial(merge_narrowed, bins=bins), frame, plan, bins)
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
