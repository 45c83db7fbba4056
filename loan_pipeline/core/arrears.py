"""Arrears buckets: the one rule the generator's follow-up, the history files and the roll rates
share (the names and day ranges, ``BUCKETS`` and ``BUCKET_DAYS``, are ``domain``'s).

A loan's bucket at a snapshot is ``resolved`` if its ``Recovery_Status`` is set (paid off,
settled or written off: it has left collections), else named by its ``Days_Past_Due``:
``current`` (0), ``1-30``, ``31-60``, ``61-90``, ``90+`` (91 and more). ``arrears_bucket`` names
them on a pandas frame; ``bucket_sql`` writes the same rule as a SQL expression, for the DuckDB
copy that writes each snapshot's history file (so the rule is said here once, not again in SQL).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from loan_pipeline.domain import BUCKET_COLUMN, BUCKET_DAYS, BUCKETS  # noqa: F401

RESOLVED = len(BUCKETS) - 1
OPEN_BUCKETS: list[str] = BUCKETS[:RESOLVED]


def bucket_codes(days_past_due, resolved) -> np.ndarray:
    """Each loan's bucket as its position in ``BUCKETS``, from its Days_Past_Due and whether its
    Recovery_Status is set (array-likes of the same length)."""
    dpd = np.asarray(days_past_due, dtype=np.int64)
    uppers = np.array([high for _, high in BUCKET_DAYS[:-1]])
    codes = np.searchsorted(uppers, dpd, side="left")
    return np.where(np.asarray(resolved, dtype=bool), RESOLVED, codes)


def arrears_bucket(book: pd.DataFrame) -> pd.Series:
    """Each loan's bucket (a name of ``BUCKETS``), indexed like ``book``, from its
    ``Days_Past_Due`` and ``Recovery_Status``."""
    codes = bucket_codes(book["Days_Past_Due"].to_numpy(), book["Recovery_Status"].notna())
    return pd.Series(np.asarray(BUCKETS)[codes], index=book.index, name="bucket")


def bucket_sql(days_past_due: str = "Days_Past_Due", status: str = "Recovery_Status") -> str:
    """``arrears_bucket`` as a SQL CASE expression on the columns named."""
    whens = [f"WHEN {status} IS NOT NULL THEN '{BUCKETS[RESOLVED]}'"]
    whens += [
        f"WHEN {days_past_due} <= {high} THEN '{name}'"
        for name, (_, high) in zip(OPEN_BUCKETS[:-1], BUCKET_DAYS[:-1], strict=True)
    ]
    return f"CASE {' '.join(whens)} ELSE '{OPEN_BUCKETS[-1]}' END"
