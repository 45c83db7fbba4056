"""Joining per-borrower tables.

Every per-borrower table of a run (validated loans, features, segments, scores, strategies) is
derived from the validated loans in their order, and each has a unique Borrower_ID (its schema
checks it). Joining two such tables is then a matter of putting columns side by side; a hash join
on a million string keys costs seconds. These helpers check that the ids line up (one vectorised
comparison) and join by position when they do, by key otherwise: the result is the same.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

KEY = "Borrower_ID"


def same_ids(left: pd.Series, right: pd.Series) -> bool:
    """True when both columns list the same ids in the same order (no missing id)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if len(left) != len(right):
        return False
    try:
        a, b = pa.array(left, pa.large_string()), pa.array(right, pa.large_string())
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # not text ids: compare by key instead
        return False
    if a.null_count or b.null_count:
        return False
    return bool(pc.all(pc.equal(a, b)).as_py()) if len(a) else True


def join_by_id(left: pd.DataFrame, right: pd.DataFrame, key: str = KEY) -> pd.DataFrame:
    """``left.merge(right, on=key, how="left", validate="one_to_one")``; positional when the ids
    line up. Both tables are expected to have unique ids (their schemas check it)."""
    if same_ids(left[key], right[key]):
        extra = right.drop(columns=key).reset_index(drop=True)
        return pd.concat([left.reset_index(drop=True), extra], axis=1)
    return left.merge(right, on=key, how="left", validate="one_to_one")


def lookup_by_id(values: pd.Series, ids: pd.Series) -> np.ndarray:
    """``values.reindex(ids).to_numpy()`` for a Series indexed by id; positional when its index
    lists ``ids`` in order."""
    if same_ids(pd.Series(values.index), ids):
        return values.to_numpy()
    return values.reindex(ids).to_numpy()


def text_from_codes(labels: list[str | None], codes: np.ndarray) -> pd.arrays.ArrowStringArray:
    """``labels[codes]`` as Arrow-backed strings (None in ``labels`` gives a missing value),
    built from the small label table: no Python object per row."""
    import pyarrow as pa

    table = pa.array(labels, pa.large_string())
    return pd.arrays.ArrowStringArray(table.take(pa.array(np.asarray(codes, dtype="int64"))))
