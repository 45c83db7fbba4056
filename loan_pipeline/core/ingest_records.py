"""Reading a loan-book CSV's records, every cell typed by its column's rule.

Cell clean-up, decided per column (see docs/data_contracts.md):

- every cell: surrounding spaces are removed; an empty cell is missing;
- category columns: matched case-insensitively and written in their canonical spelling;
- money columns: thousands separators (``1,445,796``) are accepted; a currency symbol or code
  is not (the book has one currency; a symbol suggests a unit mix-up);
- Interest_Rate: a trailing ``%`` is accepted;
- integer columns: a whole number (``12`` or ``12.0``) within the 64-bit range (about 19
  digits); anything else is quarantined, its reason saying whether it is not a number at all
  (``abc``) or a number but not a whole one (``12.5``);
- NaN and infinity are never numbers here: quarantined.

A cell that breaks its column's rule is missing in the frame and an issue (``ISSUE_COLUMNS``)
of its record, which the row rules (``ingest_quarantine``) set aside; a line with the wrong
number of fields is kept aside whole (``ReadResult.malformed``). Blank lines are counted, not
kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from loan_pipeline.core.ingest_header import (
    file_error,
    first_invalid_utf8,
    header_only_error,
    inspect_header,
)
from loan_pipeline.core.ingest_lines import number_records, read_lines
from loan_pipeline.schemas import (
    CATEGORIES,
    FLOAT_COLUMNS,
    INT_COLUMNS,
    LOAN_BOOK_COLUMNS,
    MONEY_COLUMNS,
    PERCENT_COLUMNS,
)

ISSUE_COLUMNS = ["source_line", "column", "rule", "reason", "value"]

_INT_RE = r"^[+-]?\d+(\.0*)?$"
_FLOAT_RE = r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$"
_THOUSANDS_RE = r"^[+-]?\d{1,3}(,\d{3})+(\.\d+)?$"
_CURRENCY_RE = r"(?i)^[+-]?\s*([$€£₹¥]|(rs\.?|inr|usd|eur|gbp)\s)|([$€£₹¥]|\s(inr|usd|eur|gbp))$"
# Whole numbers are stored as int64: a parsed value at or beyond 2**63 in size cannot be (the
# float64 parse of 9223372036854775807 is 2**63 already).
_INT64_LIMIT = 2.0**63


@dataclass
class ReadResult:
    """A file as read: typed records, the cell-level issues found while parsing, and counts."""

    path: Path
    frame: pd.DataFrame  # nullable dtypes, one row per record, plus `source_line`
    issues: pd.DataFrame  # ISSUE_COLUMNS
    malformed: pd.DataFrame  # source_line, text: rows with the wrong number of fields
    header: list[str]
    extra_columns: list[str] = field(default_factory=list)
    blank_lines: int = 0
    normalised: dict[str, int] = field(default_factory=dict)

    @property
    def records(self) -> int:
        """Rows in the file (blank lines excluded), well-formed or not."""
        return len(self.frame) + len(self.malformed)


def read_loan_book(path: Path, max_bytes: int | None = None) -> ReadResult:
    """Read the file (file-level checks first), every cell parsed by its column's rule.

    ``max_bytes``: refuse a larger file before reading it (None: no limit).
    """
    path = Path(path)
    header = inspect_header(path, max_bytes)
    read = read_records(path, header, path)
    if not read.records:
        raise header_only_error(path)
    return read


def read_records(
    path: str | Path,
    header: list[str],
    source,
    first_line: int = 2,
    invalid_utf8=None,
    line_count: int | None = None,
) -> ReadResult:
    """Parse ``source`` as the loan book ``path``, every cell by its column's rule; the checks of
    ``inspect_header``, and that there is a row at all, are the caller's.

    ``source`` is the file itself (``read_loan_book``), or a ``pyarrow.Buffer`` holding the
    file's first line as it is in the file (a BOM, the header, its line break) followed by some
    of the file's lines (``ingest_blocks.read_block``): parsed the same way either way, its
    records numbered from ``first_line`` (the file's first record is line 2).
    ``invalid_utf8``: a function giving (offset in the file, byte) of the first byte that is not
    UTF-8, when the parse finds one (default: searched for in the whole file).
    ``line_count``: the lines of ``source``, header included, as ``ingest_lines`` counts them,
    when the caller knows them (default: counted here, one pass over the bytes).
    """
    table, skipped, empty = _read_or_refuse(path, header, source, invalid_utf8, line_count)
    lines, malformed = number_records(table.num_rows, skipped, empty, first_line)
    table, lines, blank_rows = _drop_blank_rows(table, header, lines)
    # each column's text is let go once it is typed: a large book's text and its typed frame
    # are never held whole at once
    text = [table.column(name) for name in header] if table.num_rows else []
    del table
    frame, issues, normalised = _type_cells(text, header, lines)
    return ReadResult(
        path=path,
        frame=frame,
        issues=issues,
        malformed=malformed,
        header=header,
        extra_columns=[h for h in header if h not in LOAN_BOOK_COLUMNS],
        blank_lines=blank_rows + skipped.blank + int(empty[1].sum()),
        normalised=normalised,
    )


def _read_or_refuse(path, header: list[str], source, invalid_utf8, line_count: int | None):
    """``read_lines``, a file the reader cannot parse refused as a whole."""
    import pyarrow as pa

    try:
        return read_lines(source, header, line_count)
    except pa.ArrowInvalid as err:
        if "utf8" in str(err).lower():
            found = (invalid_utf8 or (lambda: first_invalid_utf8(path)))()
            where = f"byte 0x{found[1]:02x} at offset {found[0]}" if found else str(err)
            raise file_error(
                path, f"not UTF-8 text ({where}); save the file as UTF-8 (CSV UTF-8)"
            ) from None
        raise file_error(path, f"cannot be parsed as CSV: {err}") from None


def _drop_blank_rows(table, header: list[str], lines: np.ndarray):
    """(table, lines, how many were dropped): blank lines (every field empty) are not rows."""
    import pyarrow as pa
    import pyarrow.compute as pc

    def present(name: str):
        trimmed = pc.utf8_trim_whitespace(table.column(name))
        return pc.fill_null(pc.and_(pc.is_valid(trimmed), pc.not_equal(trimmed, "")), False)

    nonblank = present(header[0]) if header else None
    # a blank line has every field empty: when the first field is never empty there is none
    if nonblank is not None and not pc.all(nonblank).as_py():
        for name in header[1:]:
            nonblank = pc.or_(nonblank, present(name))
    keep = np.asarray(nonblank) if nonblank is not None else np.ones(table.num_rows, bool)
    if not keep.all():
        table = table.filter(pa.array(keep))
        lines = lines[keep]
    return table, lines, int((~keep).sum())


def _type_cells(text: list, header: list[str], lines: np.ndarray):
    """(frame, issues, cells normalised per column): every column typed by its rule, each row
    with its ``source_line``, and the cells that broke a rule. ``text``: each column of
    ``header`` as Arrow strings (empty for no rows), emptied as the columns are typed."""
    import pyarrow as pa

    columns: dict[str, object] = {}
    issue_frames = []
    normalised: dict[str, int] = {}
    text.reverse()  # taken from the end: the first column first
    for name in header:
        arr = text.pop().combine_chunks() if text else pa.array([], pa.string())
        series, issues, changed = _typed_column(arr, name, lines)
        del arr  # the column's text, unless it is the typed column itself
        pa.default_memory_pool().release_unused()  # Arrow's allocator would keep it for reuse
        if issues is not None:
            issue_frames.append(issues)
        columns[name] = series
        if changed:
            normalised[name] = int(changed)
    frame = pd.DataFrame(columns, copy=False)  # the Series are this function's own
    frame.insert(0, "source_line", lines)
    issues = (
        pd.concat(issue_frames, ignore_index=True)
        if issue_frames
        else pd.DataFrame(columns=ISSUE_COLUMNS)
    )
    return frame, issues, normalised


def _typed_column(arr, name: str, lines: np.ndarray):
    """(Series, issues frame or None, cells normalised) of one column's Arrow strings."""
    if name in INT_COLUMNS or name in FLOAT_COLUMNS:
        integer = name in INT_COLUMNS
        values, issues, changed = _parse_number(arr, name, lines, integer)
        if integer:
            return _whole_numbers(values), issues, changed  # NaN -> <NA>
        return pd.Series(values, dtype="float64"), issues, changed
    series, changed = _parse_text(arr, name)
    return series, None, changed


# --- cells ------------------------------------------------------------------------------------


def _chars(arr) -> np.ndarray:
    """The UTF-8 bytes of every cell of an Arrow string array, end to end (a view, no copy).

    Any bytes a null cell spans are included too: a test on them can only send a column to the
    regex path when it did not need to, never the other way.
    """
    _, _, data = arr.buffers()
    if len(arr) == 0 or data is None:
        return np.empty(0, np.uint8)
    ends = _offsets(arr)
    return np.frombuffer(data, np.uint8)[ends[0] : ends[-1]]


def _offsets(arr) -> np.ndarray:
    """Where each cell of an Arrow string array starts, and the last one ends (a view)."""
    import pyarrow as pa

    offsets = arr.buffers()[1]
    width = np.dtype(np.int64 if pa.types.is_large_string(arr.type) else np.int32)
    return np.frombuffer(offsets, width, count=len(arr) + 1, offset=arr.offset * width.itemsize)


def _nothing_to_trim(arr) -> bool:
    """Whether trimming and blank-to-missing leave every cell as it is: no cell is empty, and
    each starts and ends with a printable ASCII byte other than a space. Whitespace, ASCII or
    not, starts with a byte outside that range and ends with one (a UTF-8 sequence begins and
    ends with bytes of 0x80 and above), so no cell can have any to trim.

    Null cells are skipped (bytes a null cell spans are tested too: they can only send the
    column to the trimming path when it did not need it).
    """
    if arr.null_count == len(arr):
        return True
    _, _, data = arr.buffers()
    if data is None:  # some cell is valid and every cell is zero bytes long
        return False
    ends = _offsets(arr)
    lengths = np.diff(ends)
    empty = lengths == 0
    if arr.null_count:
        empty &= np.asarray(arr.is_valid(), dtype=bool)
    if empty.any():
        return False
    chars = np.frombuffer(data, np.uint8)
    spanned = lengths > 0
    first = chars[ends[:-1][spanned]]
    last = chars[ends[1:][spanned] - 1]
    # uint8 arithmetic wraps: 0x21..0x7e map to 0..0x5d, every other byte above
    return bool(((first - 0x21) < 0x5E).all() and ((last - 0x21) < 0x5E).all())


def _all_digits(chars: np.ndarray, integer: bool) -> bool:
    """Whether every byte is an ASCII digit, or for a float a digit or ``.``."""
    if not len(chars):
        return True
    if integer:
        return chars.min() >= ord("0") and chars.max() <= ord("9")
    # "/" is the one byte between "." and "0"
    return chars.min() >= ord(".") and chars.max() <= ord("9") and not (chars == ord("/")).any()


def _plain_valid(text, integer: bool):
    """What ``_INT_RE`` / ``_FLOAT_RE`` answer for every cell, when every cell is plain (ASCII
    digits, and dots for a float), found without a regex pass; None when not plain.

    Over digits alone, the integer regex matches exactly the non-empty cells; over digits and
    dots, the float regex matches exactly the cells with at most one dot and at least one digit.
    A null cell is null in both.
    """
    import pyarrow.compute as pc

    if not _all_digits(_chars(text), integer):
        return None
    if integer:
        return pc.not_equal(text, "")
    dots = pc.count_substring(text, ".")
    return pc.and_(pc.less_equal(dots, 1), pc.greater(pc.binary_length(text), dots))


def _parse_number(arr, column: str, lines: np.ndarray, integer: bool, fast: bool = True):
    """Arrow strings (a ``pa.Array``) -> (numpy values, issues frame, cells normalised).

    ``fast=False`` runs every clean-up and the number check as a pass over the whole column, the
    check a regex. The fast path (the default) skips a pass only where its outcome is known
    without it, so the results are the same: trimming when no cell has a byte other than a digit
    or dot; the thousands and ``%`` clean-ups when no cell has a ``,`` or ``%``; the regex when
    every cell is plain (see ``_plain_valid``).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    chars = _chars(arr) if fast else None
    if chars is not None and _all_digits(chars, integer=False):
        text = arr  # no whitespace to trim
    else:
        text = pc.utf8_trim_whitespace(arr)
    if column in MONEY_COLUMNS and (chars is None or (chars == ord(",")).any()):
        thousands = pc.match_substring_regex(text, _THOUSANDS_RE)
        text = pc.if_else(thousands, pc.replace_substring(text, ",", ""), text)
    if column in PERCENT_COLUMNS and (chars is None or (chars == ord("%")).any()):
        text = pc.replace_substring_regex(text, r"\s*%$", "")
    blank = pc.or_kleene(pc.is_null(text), pc.equal(text, ""))
    valid = _plain_valid(text, integer) if fast else None
    if valid is None:
        valid = pc.match_substring_regex(text, _INT_RE if integer else _FLOAT_RE)
    good = pc.fill_null(valid, False)
    # cells cleaned (none when no clean-up ran)
    changed = 0 if text is arr else pc.sum(pc.and_(good, pc.not_equal(text, arr))).as_py() or 0
    if not pc.all(good).as_py():
        text_numbers = pc.if_else(good, text, pa.scalar(None, pa.string()))
    else:  # every cell a number: nothing to blank out first
        text_numbers = text
    numbers = pc.cast(text_numbers, pa.float64())
    values = numbers.to_numpy(zero_copy_only=False)
    bad = ~np.asarray(pc.fill_null(pc.or_kleene(blank, valid), False))
    # A whole number too large for int64 (20 digits and more, or an infinite parse of hundreds)
    # cannot become an Int64 cell: set aside, missing in the frame, like any cell that is not a
    # number. NaN (blank or bad) compares false on both sides.
    oversized = (values < -_INT64_LIMIT) | (values >= _INT64_LIMIT) if integer else None
    if oversized is not None and oversized.any():
        values = np.where(oversized, np.nan, values)
        cleaned = np.asarray(pc.fill_null(pc.not_equal(text, arr), False))
        changed -= int((oversized & cleaned).sum())  # not kept, so not counted as cleaned
        bad = bad | oversized
    issues = None
    if bad.any():
        idx = np.flatnonzero(bad)
        raw = np.asarray(arr.take(pa.array(idx)).to_pylist(), dtype=object)
        currency = np.asarray(
            pc.fill_null(pc.match_substring_regex(arr.take(pa.array(idx)), _CURRENCY_RE), False)
        )
        reasons = np.where(
            currency,
            f"{column} has a currency symbol; amounts must be plain numbers in the book's units",
            _not_a_number_reasons(text.take(pa.array(idx)), column, integer),
        )
        if oversized is not None:
            reasons = np.where(
                oversized[idx],
                f"{column} is out of range for a whole number (beyond a 64-bit integer)",
                reasons,
            )
        rules = np.where(currency, "no_currency_symbol", "integer" if integer else "number")
        issues = pd.DataFrame(
            {
                "source_line": lines[idx],
                "column": column,
                "rule": rules,
                "reason": reasons,
                "value": raw,
            },
            columns=ISSUE_COLUMNS,
        )
    return values, issues, changed


# NaN and infinity spelt out: numbers to a parser, never a value of the book
_NON_FINITE_RE = r"(?i)^[+-]?(nan|inf|infinity)$"


def _not_a_number_reasons(text, column: str, integer: bool) -> np.ndarray:
    """Why each cleaned cell (Arrow strings) that broke its number rule did: whoever fixes the
    file needs to know whether the cell is not a number at all (``abc``), a number but not a
    finite one (``NaN``, ``inf``, ``1e999``), or, in an integer column, a number but not a whole
    one (``12.5``)."""
    import pyarrow.compute as pc

    def matches(pattern: str) -> np.ndarray:
        return np.asarray(pc.fill_null(pc.match_substring_regex(text, pattern), False))

    number = matches(_FLOAT_RE)
    value = pc.cast(pc.if_else(number, text, None), "float64").to_numpy(zero_copy_only=False)
    finite = np.isfinite(value)
    reasons = np.where(
        matches(_NON_FINITE_RE) | (number & ~finite), "is not a finite number", "is not a number"
    )
    if integer:
        whole = number & finite & (np.round(np.nan_to_num(value)) == value)
        reasons = np.where(number & finite, "is a number but not a whole number", reasons)
        reasons = np.where(whole, "is in exponent notation; write whole numbers in digits", reasons)
        # thousands separators are read in money columns only (a count or an age never has one)
        reasons = np.where(
            matches(_THOUSANDS_RE), "has a thousands separator; only amounts may", reasons
        )
    return np.char.add(f"{column} ", reasons.astype(str))


def _whole_numbers(values: np.ndarray) -> pd.Series:
    """Parsed whole numbers (float64, NaN for missing) -> an Int64 Series.

    The same result as ``pd.Series(values).round().astype("Int64")``, built directly (pandas'
    checked cast costs ~60 ms per million rows); anything that cast would refuse (infinity, or
    beyond int64) goes to it, so it raises as before (``_parse_number`` sets such cells aside,
    so a read never gets here with one).
    """
    rounded = np.round(values)
    missing = np.isnan(rounded)
    rounded[missing] = 1  # what pandas stores under the mask
    with np.errstate(invalid="ignore"):
        data = rounded.astype("int64")
    if not (np.isfinite(rounded).all() and (data == rounded).all()):
        return pd.Series(values).round().astype("Int64")
    return pd.Series(pd.arrays.IntegerArray(data, missing))


def _parse_text(arr, column: str, fast: bool = True):
    """Arrow strings -> (pandas string Series, cells normalised).

    ``fast=False`` always trims, and maps category cells through their lower case; the fast path
    skips trimming when no cell has anything to trim and none is empty (``_nothing_to_trim``),
    and the mapping when every cell is already an allowed spelling, which the mapping gives back
    unchanged as long as the allowed values are ASCII and distinct in lower case (checked here).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    untouched = fast and _nothing_to_trim(arr)
    if untouched:
        trimmed = arr
    else:
        trimmed = pc.utf8_trim_whitespace(arr)
        trimmed = pc.if_else(pc.equal(trimmed, ""), pa.scalar(None, pa.string()), trimmed)
    allowed = CATEGORIES.get(column)
    if (
        allowed
        and fast
        and all(a.isascii() for a in allowed)
        and len({a.lower() for a in allowed}) == len(allowed)
        and pc.index_in(trimmed, value_set=pa.array(allowed)).null_count == trimmed.null_count
    ):
        allowed = None  # every cell is already an allowed spelling: nothing to respell
    if allowed:
        position = pc.index_in(
            pc.utf8_lower(trimmed), value_set=pa.array([a.lower() for a in allowed])
        )
        canonical = pc.take(pa.array(allowed), position)
        trimmed = pc.if_else(pc.is_null(position), trimmed, canonical)
        untouched = False
    # cells cleaned, once each
    changed = 0 if untouched else pc.sum(pc.not_equal(trimmed, arr)).as_py() or 0
    return pd.Series(pd.arrays.ArrowStringArray(trimmed)), changed
