"""One code path for a table in memory and a table in partitions on a Dask cluster.

The pipeline's per-borrower work is pure pandas functions of a frame. Here they are applied to
a whole pandas frame (a plain call) or to every partition of a Dask frame (``map_partitions``),
so both give the same rows; and summaries are computed per partition and combined, so a whole
book never has to sit in one process. Nothing here imports Dask unless it is handed a Dask frame.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd


def is_dask(frame: object) -> bool:
    """Is ``frame`` a Dask collection (decided without importing Dask)?"""
    return type(frame).__module__.split(".")[0] == "dask"


def per_partition(
    func: Callable[..., pd.DataFrame], frame, *args: Any, label: str | None = None, **kwargs: Any
):
    """``func(frame, *args, **kwargs)`` for a pandas frame; for a Dask frame, the same call on
    every partition (lazy), its tasks named ``label`` (default: the function's name) in the
    cluster's task stream and logs. The result's columns and dtypes are ``func`` applied to the
    empty frame, so ``func`` must accept zero rows."""
    if not is_dask(frame):
        return func(frame, *args, **kwargs)
    import dask

    others = [a for a in args if is_dask(a)]
    if any(o.npartitions != frame.npartitions for o in others):
        raise ValueError(
            f"{func.__name__}: the tables are not partitioned alike ("
            + ", ".join(str(f.npartitions) for f in [frame, *others])
            + " partitions); they must all be made from the same loan-book partitions"
        )
    meta = func(frame._meta, *[a._meta if is_dask(a) else a for a in args], **kwargs)
    # Another Dask frame is taken partition by partition alongside (the tables made from the
    # loan book's partitions are partitioned alike: see ``aligned``). An argument that is an
    # object (a fitted model) becomes one task of the graph, sent once to each worker that needs
    # it, not copied into every partition's task.
    shipped = [a if is_dask(a) or _is_scalar(a) else dask.delayed(a, pure=True) for a in args]
    return frame.map_partitions(
        func,
        *shipped,
        meta=meta,
        align_dataframes=False,
        enforce_metadata=False,
        token=label or func.__name__,
        **kwargs,
    )


def _is_scalar(value: object) -> bool:
    """None, text, a number or a bool: put into each partition's task as it is."""
    return value is None or isinstance(value, str | int | float | bool)


def summarise(
    partial: Callable[..., Any],
    merge: Callable[[list[Any]], Any],
    frame,
    *args: Any,
    piece_rows: int | None = None,
    split_every: int | None = None,
) -> Any:
    """``merge([partial(part, *args) for each partition])``: a summary of the whole frame from
    per-partition summaries, computed now.

    For pandas, one part: the frame itself, or (``piece_rows``) slices of that many rows side by
    side, one core each. For Dask, ``split_every``: when ``merge`` gives what ``partial`` gives
    (sums of arrays), the parts are merged that many at a time on the workers, so the process
    receives one summary, not one per partition."""
    if not is_dask(frame):
        if piece_rows is None or len(frame) <= piece_rows:
            return merge([partial(frame, *args)])
        from loan_pipeline.core.runtime import parallel_map

        starts = range(0, len(frame), piece_rows)
        return merge(parallel_map(lambda s: partial(frame.iloc[s : s + piece_rows], *args), starts))
    import dask

    parts = [dask.delayed(partial)(p, *args) for p in frame.to_delayed()]
    while split_every and len(parts) > split_every:
        parts = [
            dask.delayed(merge)(parts[i : i + split_every])
            for i in range(0, len(parts), split_every)
        ]
    return merge(list(dask.compute(*parts)))


def collect(frame) -> pd.DataFrame:
    """The frame as one pandas frame (computed, for a Dask frame): only for what is small."""
    return frame.compute() if is_dask(frame) else frame


def partition_lengths(frame) -> list[int]:
    """Rows in each partition (one entry for a pandas frame)."""
    return summarise(len, list, frame)


def take_positions(frame, positions) -> pd.DataFrame:
    """The rows at ``positions`` (sorted, 0-based over the whole frame in partition order) as
    one pandas frame: the same rows whether the frame is whole or in partitions, so a sample
    drawn by position is the same sample in both."""
    import numpy as np

    positions = np.asarray(positions, dtype="int64")
    if not is_dask(frame):
        return frame.iloc[positions]
    import dask

    lengths = partition_lengths(frame)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype("int64")
    parts = frame.to_delayed()
    wanted = []
    for part, start, n in zip(parts, starts, lengths, strict=True):
        inside = positions[(positions >= start) & (positions < start + n)] - start
        if len(inside):
            wanted.append(dask.delayed(lambda p, i: p.iloc[i])(part, inside))
    if not wanted:
        return frame._meta
    return pd.concat(dask.compute(*wanted), ignore_index=False)


def value_counts(frame: pd.DataFrame, columns: list[str]) -> pd.Series:
    """Rows per combination of ``columns`` (a frame or one partition)."""
    return frame.groupby(columns, observed=True).size()


def sum_counts(parts: list[pd.Series]) -> pd.Series:
    """Per-partition ``value_counts`` added up."""
    return pd.concat(parts).groupby(level=list(range(parts[0].index.nlevels))).sum()


def score_sum(frame: pd.DataFrame, column: str = "risk_score"):
    """(sum, count) of a column's values (missing ones left out): a mean from partitions."""
    import numpy as np

    values = frame[column].to_numpy(dtype="float64")
    present = ~np.isnan(values)
    return np.array([values[present].sum(), present.sum()])
