"""Summaries of a table made a partition at a time and merged.

Each summary is a pure function of one pandas frame (a partition, or a whole table: the same
thing in one part) and a merge of the list of their results, the pair that
``partitions.combine(partial, merge, frame)`` takes. Counts add up exactly; extents take the
smallest and largest value; moments are merged with the pairwise formulas of Chan, Golub and
LeVeque, so a correlation from partitions equals the one from the whole table to rounding
(about 1e-15), whatever the partitioning.

The merges every kind of summary uses live here (``add_counts``, ``add_elementwise``);
``summaries.py`` and ``risk.py`` import them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

import numpy as np
import pandas as pd


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
