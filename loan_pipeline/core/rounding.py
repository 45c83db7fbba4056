"""Numbers as a reader wants them on an asset page: rates and scores to 3 decimals, money to 2
(with thousands separators in tables), counts as whole numbers.

One place decides how a number is shown, by what it means (its name): the asset metadata, its
markdown tables and the model card all round through here. The stored tables keep every digit,
but for segment_profiles, itself a summary for reading, published rounded; only what is shown is
rounded. No pandas at import (the asset modules load this when the code
location loads, and that stays light).
"""

from __future__ import annotations

import math
from numbers import Integral, Real

from loan_pipeline.columns import INT_COLUMNS
from loan_pipeline.domain import INPUT_LABELS

RATE, MONEY, COUNT = "rate", "money", "count"
RATE_DECIMALS, MONEY_DECIMALS = 3, 2

# Amounts in currency units: the loan book's amount columns, and the losses computed from them.
MONEY_NAMES = frozenset(
    {name for name, (_label, how) in INPUT_LABELS.items() if how == "amount"}
    | {"Outstanding_Loan_Amount", "expected_shortfall", "expected_write_off"}
)
# Numbers of things (borrowers, loans, days, payments), whatever dtype a computation left them
# in (a count summed over partitions, or beside a NaN, comes back as a float).
COUNT_NAMES = frozenset(
    {c for c in INT_COLUMNS if c not in MONEY_NAMES}
    | {
        "borrowers",
        "bads",
        "resolved",
        "decile",
        "k",
        "segment_id",
        "worklist_rank",
        "open_loans",
        "legal",
        "rows",
        "snapshots",
        "fit_rows",
        "resamples",
        "folds",
        "fitting_sample",
        "resolved_loans",
        "bootstrap_replicates",
        "held_out_loans",
        "legal_capacity",
        "settlement_capacity",
        "source_line",
        "min_group",
    }
)

COUNT_SUFFIXES = ("_rows", "_count", "_loans", "_borrowers", "_resamples", "_replicates")


def kind_of(name: str) -> str:
    """``MONEY``, ``COUNT`` or ``RATE`` (every other number: a rate, a share, a score, an
    index), from a column's or a metadata entry's name."""
    if name in MONEY_NAMES or name.endswith(("_amount", "_balance", "_loss")):
        return MONEY
    if name in COUNT_NAMES or name.startswith("n_") or name.endswith(COUNT_SUFFIXES):
        return COUNT
    return RATE


def rounded(name: str, value):
    """``value`` rounded to what ``name`` means: a count as an int, money to 2 decimals, any
    other number to 3. A bool, text, a missing or infinite number, a list or a dict of numbers
    (each rounded by its own key, or by ``name`` in a list) come back alike."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, dict):
        return {k: rounded(str(k), v) if isinstance(k, str) else v for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [rounded(name, v) for v in value]
    if isinstance(value, Integral):
        return int(value)
    if not isinstance(value, Real) or not math.isfinite(value):
        return value
    kind = kind_of(name)
    if kind == COUNT and float(value).is_integer():
        return int(value)
    return round(float(value), MONEY_DECIMALS if kind == MONEY else RATE_DECIMALS)


def as_text(name: str, value) -> str:
    """``value`` as ``rounded`` shows it, as text (a count 1,234; money 1,234.50; a rate
    0.292; missing blank), for a table whose column mixes kinds of numbers."""
    value = rounded(name, value)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, bool) or not isinstance(value, Real):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    # + 0.0 turns a negative zero (a tiny negative rounded) into 0: "-0.000" reads as a sign
    return f"{value + 0.0:,.{MONEY_DECIMALS if kind_of(name) == MONEY else RATE_DECIMALS}f}"


def text_table(df) -> str:
    """A table of ``as_text`` cells (the first column a label, the others numbers as text) as
    markdown: numbers right-aligned, and shown as written (tabulate would re-read "0.500" as
    0.5, and a large number in exponent notation)."""
    return df.to_markdown(
        index=False, colalign=["left"] + ["right"] * (df.shape[1] - 1), disable_numparse=True
    )


def rounded_all(values: dict) -> dict:
    """Every number of a metadata dict rounded by its key (``rounded``); the rest as given."""
    return {key: rounded(key, value) for key, value in values.items()}


def column_format(name: str, integral: bool = False) -> str:
    """The tabulate float format of a column: a count (or a float column holding only whole
    numbers that means a count) without decimals, money with 2 and thousands separators, any
    other number with 3."""
    kind = kind_of(name)
    if kind == MONEY:
        return f",.{MONEY_DECIMALS}f"
    if kind == COUNT and integral:
        return ",.0f"
    return f".{RATE_DECIMALS}f"


def markdown(df, headers: dict[str, str] | None = None) -> str:
    """``df`` (pandas) as a markdown table, each numeric column rounded to what it means
    (``column_format``), missing values blank, ``headers`` renaming columns for the page only."""
    import numpy as np

    formats = []
    for name in df.columns:
        column = df[name]
        integral = False
        if column.dtype.kind in "iuf":
            values = column.to_numpy(dtype="float64", na_value=np.nan)
            finite = values[np.isfinite(values)]
            integral = column.dtype.kind in "iu" or bool(np.all(finite == np.round(finite)))
        formats.append(column_format(str(name), integral))
    # a missing number as a blank cell, not "nan" (tabulate leaves only None blank)
    shown = df.astype(object).where(df.notna(), None)
    if headers:
        shown = shown.rename(columns=headers)
    return shown.to_markdown(index=False, floatfmt=formats, missingval="")


def transposed_markdown(df, label: str, corner: str = "", unit: str | None = None) -> str:
    """A wide table turned on its side so it fits a page: a column per row of ``df`` (headed by
    its ``label``), a row per other column, each value as text rounded by its column's name
    (``as_text``), or every number alike as ``unit`` (a name, e.g. "sd" for standardised
    values: a rate's 3 decimals). Whatever the columns are called, the table stays as narrow
    as its rows are few."""
    import pandas as pd

    fields = [c for c in df.columns if c != label]
    body = {
        str(heading): [as_text(unit or str(f), v) for f, v in zip(fields, row, strict=True)]
        for heading, row in zip(df[label], df[fields].itertuples(index=False), strict=True)
    }
    return text_table(pd.DataFrame({corner or label: [str(f) for f in fields], **body}))
