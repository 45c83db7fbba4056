"""Applying a contract: a table checked in place, and a failure described by source, column,
rule and example rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandera.pandas as pa

# --- applying a schema -----------------------------------------------------------------------


class SchemaViolation(ValueError):
    """A table broke its contract; the message names the source, columns, rules and examples."""


def _show(value: object) -> str:
    return repr(value.item() if isinstance(value, np.generic) else value)


# Columns each table-wide rule reads, so its failures name them (and show their values).
TABLE_RULE_COLUMNS: dict[str, list[str]] = {
    "outstanding_within_loan": ["Outstanding_Loan_Amount", "Loan_Amount"],
}


def describe_failures(
    err: pa.errors.SchemaErrors,
    df: pd.DataFrame,
    model: type[pa.DataFrameModel],
    source: str,
    examples: int = 5,
) -> str:
    """One line per (column, rule): how many rows failed and up to ``examples`` of them."""
    cases = err.failure_cases
    table_wide = cases["schema_context"].eq("DataFrameSchema") & cases["index"].notna()
    lines = [f"{source}: rows failed the {model.Config.name} schema"]
    for check, group in cases[table_wide].groupby("check", sort=False):
        columns = TABLE_RULE_COLUMNS.get(str(check), [])
        rows = pd.unique(group["index"])
        shown = []
        for idx in rows[:examples]:
            values = ", ".join(f"{c}={_show(df.at[idx, c])}" for c in columns if c in df.columns)
            shown.append(f"row {idx}: {values}" if values else f"row {idx}")
        lines.append(
            f"  column {'/'.join(columns) or '<table>'}, rule {check}: {len(rows)} row(s); e.g. "
            + "; ".join(shown)
        )
    for (column, check), group in cases[~table_wide].groupby(
        ["column", "check"], sort=False, dropna=False
    ):
        column = "<table>" if pd.isna(column) else column
        rows = group.head(examples)
        shown = ", ".join(
            f"row {idx}: {_show(val)}" if pd.notna(idx) else _show(val)
            for idx, val in zip(rows["index"], rows["failure_case"], strict=True)
        )
        lines.append(f"  column {column}, rule {check}: {len(group)} row(s); e.g. {shown}")
    return "\n".join(lines)


def validate(df: pd.DataFrame, model: type[pa.DataFrameModel], source: str) -> pd.DataFrame:
    """Validate every rule at once (lazy) and raise one readable :class:`SchemaViolation`.

    In place: every caller validates the frame its step has just built, so pandera's defensive
    deep copy buys nothing and costs time and a second copy of the table at the step's peak
    (docs/performance.md). With copy-on-write on, a
    coerced column replaces the frame's own, never a column another frame shares.

    A Dask frame is validated partition by partition as the cluster computes it (lazily): a rule
    across rows (a unique id) then holds within each partition."""
    from loan_pipeline.core.partitions import is_dask, per_partition

    if is_dask(df):  # each partition as it is computed, on the worker computing it
        return per_partition(validate, df, model, source, label=f"validate_{source}")
    try:
        return model.validate(df, lazy=True, inplace=True)
    except pa.errors.SchemaErrors as err:
        raise SchemaViolation(describe_failures(err, df, model, source)) from None
