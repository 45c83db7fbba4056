"""Files for people: the CSV export the collections team opens in a spreadsheet."""

from __future__ import annotations

import pandas as pd

# A spreadsheet treats a cell starting with one of these as a formula (CSV injection).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def neutralise_formulas(df: pd.DataFrame) -> pd.DataFrame:
    """Prefix text cells that a spreadsheet would run as a formula with a single quote.

    Only text columns are touched; numbers (a negative amount, say) stay numbers. The OWASP
    advice: the quote makes the spreadsheet show the cell as text, and the value stays readable.
    """
    out = df.copy()
    for column in out.columns:
        if out[column].dtype == object or isinstance(out[column].dtype, pd.StringDtype):
            text = out[column]
            risky = text.astype("string").str.startswith(FORMULA_PREFIXES, na=False)
            if risky.any():
                out[column] = text.where(~risky, "'" + text.astype("string"))
    return out


def to_csv_bytes(df: pd.DataFrame) -> bytes:
    """The export as UTF-8 CSV bytes, formulas neutralised."""
    return neutralise_formulas(df).to_csv(index=False).encode("utf-8")
