"""Files for people: the CSV export the collections team opens in a spreadsheet."""

from __future__ import annotations

import io

import pandas as pd

# A spreadsheet treats a cell starting with one of these as a formula (CSV injection).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
_FORMULA_START = "^[" + "".join("\\" + p if p in "-" else p for p in FORMULA_PREFIXES) + "]"


def _neutralised_arrow(df: pd.DataFrame):
    """``df`` as an Arrow table, text cells a spreadsheet would run as a formula quoted."""
    import pyarrow as pa
    import pyarrow.compute as pc

    table = pa.Table.from_pandas(df, preserve_index=False)
    for i, field in enumerate(table.schema):
        if pa.types.is_null(field.type):
            table = table.set_column(i, field.name, table.column(i).cast(pa.string()))
        elif pa.types.is_string(field.type) or pa.types.is_large_string(field.type):
            column = table.column(i)
            risky = pc.fill_null(pc.match_substring_regex(column, _FORMULA_START), False)
            if pc.any(risky).as_py():
                quote, nothing = pa.scalar("'", field.type), pa.scalar("", field.type)
                quoted = pc.binary_join_element_wise(quote, column, nothing)
                table = table.set_column(i, field.name, pc.if_else(risky, quoted, column))
    return table


def neutralise_formulas(df: pd.DataFrame) -> pd.DataFrame:
    """Prefix text cells that a spreadsheet would run as a formula with a single quote.

    Only text columns are touched; numbers (a negative amount, say) stay numbers. The OWASP
    advice: the quote makes the spreadsheet show the cell as text, and the value stays readable.
    """
    from loan_pipeline.store.tables import arrow_to_pandas

    return arrow_to_pandas(_neutralised_arrow(df))


def write_csv(df: pd.DataFrame, sink) -> None:
    """Write the export as UTF-8 CSV to ``sink`` (a binary file), formulas neutralised, by
    Arrow's CSV writer, streamed batch by batch."""
    import pyarrow.csv as csv

    csv.write_csv(_neutralised_arrow(df), sink, csv.WriteOptions(quoting_style="needed"))


def write_export(table, sink) -> None:
    """``write_csv`` of a whole frame, or of a Dask frame one partition at a time (one header),
    so the export of a book of any size streams through this process."""
    from loan_pipeline.core.partitions import is_dask

    if not is_dask(table):
        write_csv(table, sink)
        return
    import pyarrow.csv as csv

    options = csv.WriteOptions(quoting_style="needed")
    for i in range(table.npartitions):
        part = table.get_partition(i).compute()
        if i:
            options = csv.WriteOptions(quoting_style="needed", include_header=False)
        csv.write_csv(_neutralised_arrow(part), sink, options)


def to_csv_bytes(df: pd.DataFrame) -> bytes:
    """The export as UTF-8 CSV bytes (see ``write_csv``)."""
    buffer = io.BytesIO()
    write_csv(df, buffer)
    return buffer.getvalue()
