"""Read a loan-book CSV, and split its rows into valid ones and quarantined ones.

Two levels of failure:

- File level (:class:`LoanBookFileError`): the file as a whole cannot be used (missing, empty,
  header only, not a CSV or another delimiter, a required column missing, renamed or duplicated,
  not UTF-8, larger than the configured limit, every row bad, too few good rows). Nothing is
  written; the message names the file and what was expected.
- Row level (:class:`Issue` rows): one cell or row breaks a rule (not a number, out of range, an
  unknown category, a blank required field, a duplicate id, the wrong number of fields). The row
  is set aside in the quarantine with its line, column, rule, reason and original values; the
  other rows go on.

Cell clean-up, decided per column (see docs/data_contracts.md):

- every cell: surrounding spaces are removed; an empty cell is missing;
- category columns: matched case-insensitively and written in their canonical spelling;
- money columns: thousands separators (``1,445,796``) are accepted; a currency symbol or code
  is not (the book has one currency; a symbol suggests a unit mix-up);
- Interest_Rate: a trailing ``%`` is accepted;
- integer columns: a whole number (``12`` or ``12.0``) within the 64-bit range (about 19
  digits); anything else is quarantined;
- NaN and infinity are never numbers here: quarantined.

Line numbers are physical lines of the file (the header is line 1), exact as long as no quoted
field spans lines.
"""

from __future__ import annotations

import csv
import difflib
import json
from array import array
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from loan_pipeline.schemas import (
    CATEGORIES,
    FLOAT_COLUMNS,
    INT_COLUMNS,
    LOAN_BOOK_COLUMNS,
    MONEY_COLUMNS,
    PERCENT_COLUMNS,
    TEXT_COLUMNS,
    TEXT_DTYPE,
    row_rules_schema,
)

# Copy-on-write (the default from pandas 3): selecting columns or rows does not copy a
# 10-million-row frame until something writes to it.
pd.set_option("mode.copy_on_write", True)

ISSUE_COLUMNS = ["source_line", "column", "rule", "reason", "value"]
EXAMPLES = 5

_INT_RE = r"^[+-]?\d+(\.0*)?$"
_FLOAT_RE = r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$"
_THOUSANDS_RE = r"^[+-]?\d{1,3}(,\d{3})+(\.\d+)?$"
_CURRENCY_RE = r"(?i)^[+-]?\s*([$€£₹¥]|(rs\.?|inr|usd|eur|gbp)\s)|([$€£₹¥]|\s(inr|usd|eur|gbp))$"
# Whole numbers are stored as int64: a parsed value at or beyond 2**63 in size cannot be (the
# float64 parse of 9223372036854775807 is 2**63 already).
_INT64_LIMIT = 2.0**63
_DELIMITERS = {";": "semicolons", "\t": "tabs", "|": "pipes"}


class LoanBookFileError(ValueError):
    """The file as a whole cannot be used; the message names the file and what was expected."""

    def __init__(self, message: str, summary: pd.DataFrame | None = None):
        super().__init__(message)
        self.summary = summary  # failure cases per (column, rule), when rows were at fault


class QuarantineThresholdError(LoanBookFileError):
    """Too large a share of rows was quarantined; the message lists the failures."""


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


@dataclass
class SplitResult:
    """The rows that passed every rule, and what was set aside."""

    valid: pd.DataFrame  # strict dtypes, the 21 loan-book columns
    issues: pd.DataFrame  # ISSUE_COLUMNS, one row per broken rule
    quarantined_lines: np.ndarray
    records: int

    @property
    def quarantined(self) -> int:
        return len(self.quarantined_lines)

    @property
    def share(self) -> float:
        return self.quarantined / self.records if self.records else 0.0


# --- file level ------------------------------------------------------------------------------


def _size(n: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{int(n)} bytes"


def _share(x: float) -> str:
    """A percentage that never rounds a partial share to 0.0% or 100.0%."""
    text = f"{x:.1%}"
    if 0 < x < 1 and text in ("0.0%", "100.0%"):
        text = f"{x:.4%}"
    return text


def source_path(path: str | Path) -> str | Path:
    """A local file as a ``Path``; an fsspec URL (a string containing ``://``) as it is."""
    return path if isinstance(path, str) and "://" in path else Path(path)


def _url(path: str | Path) -> bool:
    return isinstance(path, str) and "://" in path


def open_source(path: str | Path):
    """The file opened for reading bytes (a context manager): fsspec for a URL, else local."""
    if _url(path):
        import fsspec

        return fsspec.open(path, "rb")
    return open(path, "rb")


def _url_fs(path: str):
    import fsspec

    opened = fsspec.open(path, "rb")
    return opened.fs, opened.path


def _exists(path: str | Path) -> bool:
    if _url(path):
        fs, where = _url_fs(path)
        return fs.exists(where)
    return path.exists()


def _is_dir(path: str | Path) -> bool:
    if _url(path):
        fs, where = _url_fs(path)
        return fs.isdir(where)
    return path.is_dir()


def file_size(path: str | Path) -> int:
    if _url(path):
        fs, where = _url_fs(path)
        return int(fs.size(where))
    return path.stat().st_size


def _first_invalid_utf8(path: str | Path) -> tuple[int, int] | None:
    """(offset, byte) of the first byte that is not UTF-8, counted from the start of the file."""
    with open_source(path) as fh:
        return first_invalid_utf8_in(iter(lambda: fh.read(1 << 20), b""))


def first_invalid_utf8_in(chunks, offset: int = 0) -> tuple[int, int] | None:
    """(offset, byte) of the first byte that is not UTF-8 in consecutive chunks of bytes, the
    first of which starts at ``offset`` in the file (where no UTF-8 sequence is open)."""
    import codecs

    decoder = codecs.getincrementaldecoder("utf-8")()
    for block in chunks:
        try:
            decoder.decode(block)
        except UnicodeDecodeError as err:
            start = offset + err.start - len(decoder.getstate()[0])
            return max(start, 0), block[max(err.start, 0)] if err.start < len(block) else block[-1]
        offset += len(block)
    return None


def _fail(path: Path, message: str) -> LoanBookFileError:
    return LoanBookFileError(f"{path}: {message}")


def _header_only(path: Path) -> LoanBookFileError:
    return _fail(path, "header only: the file has no loan rows")


def inspect_header(path: Path, max_bytes: int | None = None) -> list[str]:
    """File-level checks that need only the first bytes; returns the header's column names."""
    path = source_path(path)  # a local file, or an fsspec URL
    if not _exists(path):
        raise _fail(path, "loan book not found (expected a CSV file at this path)")
    if _is_dir(path):
        raise _fail(path, "is a folder, not a CSV file")
    size = file_size(path)
    if size == 0:
        raise _fail(path, "empty file (0 bytes); expected a CSV header row and one row per loan")
    if max_bytes is not None and size > max_bytes:
        raise _fail(
            path,
            f"file is {_size(size)}, over the limit of {_size(max_bytes)} "
            "(setting max_file_gb); it was not read, so the run cannot run out of memory. "
            "Split the book, or raise the limit on a machine with more memory.",
        )
    with open_source(path) as fh:
        head = fh.read(1 << 16)
    if b"\x00" in head:
        raise _fail(path, "binary data (NUL bytes): not a CSV text file")
    bom = 3 if head.startswith(b"\xef\xbb\xbf") else 0
    head = head[bom:]
    cut = head.rfind(b"\n") if len(head) == (1 << 16) - 3 or size > (1 << 16) else len(head)
    try:
        text = head[: cut if cut > 0 else len(head)].decode("utf-8")
    except UnicodeDecodeError as err:
        raise _fail(
            path,
            f"not UTF-8 text (byte 0x{head[err.start]:02x} at offset {err.start + bom}); "
            "save the file as UTF-8 (CSV UTF-8)",
        ) from None
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise _fail(path, "the first line is blank; expected the header row")
    header = [h.strip() for h in next(csv.reader([lines[0]]))]
    if len(header) == 1:
        for delimiter, name in _DELIMITERS.items():
            if delimiter in lines[0]:
                raise _fail(
                    path,
                    f"wrong delimiter: the header is separated by {name}; expected commas "
                    f"(header: {lines[0][:80]!r})",
                )
        raise _fail(
            path,
            f"not a CSV loan book: the first line has a single field {lines[0][:80]!r}; "
            f"expected a comma-separated header with {', '.join(LOAN_BOOK_COLUMNS)}",
        )
    seen: dict[str, list[int]] = {}
    for position, name in enumerate(header, start=1):
        seen.setdefault(name, []).append(position)
    duplicated = {n: p for n, p in seen.items() if len(p) > 1}
    if duplicated:
        listed = "; ".join(
            f"{n!r} (columns {', '.join(map(str, p))})" for n, p in duplicated.items()
        )
        raise _fail(path, f"column(s) appear more than once in the header: {listed}")
    missing = [c for c in LOAN_BOOK_COLUMNS if c not in seen]
    if missing:
        unknown = [h for h in header if h not in LOAN_BOOK_COLUMNS]
        described = []
        for column in missing:
            folded = {u.lower().replace(" ", "_"): u for u in unknown}
            containing = [u for u in unknown if column.lower() in u.lower().replace(" ", "_")]
            match = (
                folded.get(column.lower())
                or next(iter(difflib.get_close_matches(column, unknown, n=1, cutoff=0.6)), None)
                or (containing[0] if len(containing) == 1 else None)
            )
            described.append(
                f"{column} (found {match!r}: renamed?)" if match is not None else column
            )
        raise _fail(
            path,
            f"required column(s) missing: {', '.join(described)}; expected the "
            f"{len(LOAN_BOOK_COLUMNS)} columns {', '.join(LOAN_BOOK_COLUMNS)}",
        )
    return header


class _Skipped:
    """The lines the CSV reader skipped for their number of fields, in memory that grows with
    the records among them, not with the lines: a line of whitespace is not a row, so it is
    counted and its line number folded into a run of consecutive ones; any other skipped line
    is a malformed record (set aside in the quarantine with its text), kept whole.
    """

    def __init__(self) -> None:
        self.blank = 0
        self.run_starts = array("q")  # whitespace lines: runs of consecutive numbered lines
        self.run_lengths = array("q")
        self.numbers = array("q")  # malformed records: line (-1 when unknown) and text
        self.texts: list[str] = []
        self.unnumbered = False  # some line came without its number (a parallel read)

    def __call__(self, row) -> str:
        number = row.number
        if number is None:
            self.unnumbered = True
        if row.text.strip():
            self.numbers.append(-1 if number is None else number)
            self.texts.append(row.text)
        else:
            self.blank += 1
            if number is not None:
                if self.run_lengths and self.run_starts[-1] + self.run_lengths[-1] == number:
                    self.run_lengths[-1] += 1
                else:
                    self.run_starts.append(number)
                    self.run_lengths.append(1)
        return "skip"

    @property
    def lines(self) -> int:
        return self.blank + len(self.texts)

    def same_lines(self, other: _Skipped) -> bool:
        """Whether two reads of one source skipped the same lines (numbered or not)."""
        return self.blank == other.blank and sorted(self.texts) == sorted(other.texts)

    def runs(self) -> tuple[np.ndarray, np.ndarray]:
        """Every skipped line as runs (first line, count), in line order."""
        starts = np.concatenate(
            [np.frombuffer(self.run_starts, np.int64), np.frombuffer(self.numbers, np.int64)]
        )
        lengths = np.concatenate(
            [np.frombuffer(self.run_lengths, np.int64), np.ones(len(self.numbers), np.int64)]
        )
        order = np.argsort(starts, kind="stable")
        return starts[order], lengths[order]

    def malformed(self) -> tuple[np.ndarray, list[str]]:
        """The malformed records' lines and texts, in line order."""
        numbers = np.frombuffer(self.numbers, np.int64)
        order = np.argsort(numbers, kind="stable")
        return numbers[order], [self.texts[i] for i in order]


def _renumber(numbers: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Line numbers counted over every line but those of some runs (``starts``, ``lengths``:
    in line order, numbered over every line) -> the same lines numbered over every line.

    Line ``n`` of the others lies after every run with fewer than ``n`` other lines before it,
    so it moves down by the lengths of those runs.
    """
    if not len(starts):
        return numbers
    moved = np.concatenate([[0], np.cumsum(lengths)])
    others_before = starts - 1 - moved[:-1]
    return numbers + moved[np.searchsorted(others_before, numbers - 1, side="right")]


_SCAN_BYTES = 1 << 22  # bytes looked at a time for line breaks


def _byte_pieces(source):
    """The bytes of a local file or a ``pyarrow.Buffer``, in consecutive numpy pieces of at
    most ``_SCAN_BYTES`` (a piece of a file is overwritten by the next one)."""
    import pyarrow as pa

    if isinstance(source, pa.Buffer):
        data = np.frombuffer(source, np.uint8)
        for at in range(0, len(data), _SCAN_BYTES):
            yield data[at : at + _SCAN_BYTES]
        return
    buffer = bytearray(_SCAN_BYTES)
    view = np.frombuffer(buffer, np.uint8)
    with open(source, "rb") as fh:
        while n := fh.readinto(buffer):
            yield view[:n]


def _line_count(source) -> int:
    """How many lines the source has as the CSV reader breaks them: ``\\n``, ``\\r\\n`` or a
    lone ``\\r`` ends a line, and a last line without a break counts. Empty lines and line
    breaks inside quoted fields are counted too."""
    breaks = 0
    before_cr = False  # the byte before the piece is a CR
    last = None
    for piece in _byte_pieces(source):
        cr = np.flatnonzero(piece == 13)
        breaks += np.count_nonzero(piece == 10) + len(cr)
        if len(cr) or before_cr:  # the LF of a CRLF ends no line of its own
            after = cr[cr + 1 < len(piece)] + 1
            breaks -= np.count_nonzero(piece[after] == 10) + (before_cr and piece[0] == 10)
        before_cr, last = piece[-1] == 13, piece[-1]
    return breaks + (last is not None and last not in (10, 13))


def _empty_lines(source) -> tuple[int, np.ndarray, np.ndarray]:
    """(lines, starts, lengths): how many lines the source has (as ``_line_count`` counts
    them), and its empty lines (a line break right after another) as runs, lines numbered
    from 1.

    One pass over the bytes in pieces, so its memory is a piece's, whatever the file's size.
    Line breaks inside quoted fields are counted too: the caller tells them apart.
    """
    starts: list[np.ndarray] = []
    lengths: list[np.ndarray] = []
    breaks = 0
    before_cr, before_break = False, True  # the byte before the source: as after a break
    last = None
    for piece in _byte_pieces(source):
        lf = piece == 10
        cr = piece == 13
        # a break starts at a CR, or at an LF not right after a CR (the LF of a CRLF is not one)
        after_cr = np.empty_like(cr)
        after_cr[0], after_cr[1:] = before_cr, cr[:-1]
        begins = np.flatnonzero(cr | (lf & ~after_cr))
        # the line a break ends is empty when the byte before the break ends another break
        after_break = np.empty_like(cr)
        after_break[0], after_break[1:] = before_break, (lf | cr)[:-1]
        empty = np.flatnonzero(after_break[begins]) + breaks + 1
        if len(empty):
            cut = np.flatnonzero(np.diff(empty) != 1) + 1
            first = np.concatenate([[0], cut])
            starts.append(empty[first])
            lengths.append(np.diff(np.concatenate([first, [len(empty)]])))
        breaks += len(begins)
        before_cr, before_break = bool(cr[-1]), bool(lf[-1] or cr[-1])
        last = piece[-1]
    lines = breaks + (last is not None and last not in (10, 13))
    if not starts:
        return lines, np.empty(0, np.int64), np.empty(0, np.int64)
    return lines, np.concatenate(starts), np.concatenate(lengths)


def _read_text(
    path,
    header: list[str],
    use_threads: bool,
    columns: list[str] | None = None,
    ignore_empty_lines: bool = True,
):
    """The file as Arrow strings, and the lines skipped for their number of fields (a
    ``_Skipped``: whitespace lines counted, malformed records kept).

    ``path``: the file, or a ``pyarrow.Buffer`` of bytes laid out as in one (see
    ``read_records``). ``columns``: convert only these (the parse, and so which rows are
    malformed, is the same). ``ignore_empty_lines``: the reader skips empty lines without a
    trace (the caller finds them in the bytes); else each is a row of nulls, which costs the
    reader about 200 bytes a line.
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv

    if isinstance(path, pa.Buffer):
        path = pa.BufferReader(path)

    skipped = _Skipped()
    table = pacsv.read_csv(
        path,
        read_options=pacsv.ReadOptions(
            column_names=header, skip_rows=1, use_threads=use_threads, block_size=1 << 24
        ),
        parse_options=pacsv.ParseOptions(
            invalid_row_handler=skipped, ignore_empty_lines=ignore_empty_lines
        ),
        convert_options=pacsv.ConvertOptions(
            column_types={c: pa.string() for c in header},
            null_values=[""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=True,
            include_columns=columns,
        ),
    )
    return table, skipped


# --- cell level ------------------------------------------------------------------------------


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
        kind = "a whole number" if integer else "a finite number"
        reasons = np.where(
            currency,
            f"{column} has a currency symbol; amounts must be plain numbers in the book's units",
            f"{column} is not {kind}",
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


def read_loan_book(path: Path, max_bytes: int | None = None) -> ReadResult:
    """Read the file (file-level checks first), every cell parsed by its column's rule."""
    path = Path(path)
    header = inspect_header(path, max_bytes)
    read = read_records(path, header, path)
    if not read.records:
        raise _header_only(path)
    return read


def _read_numbered(source, header: list[str], ignore_empty_lines: bool = True):
    """``_read_text`` in parallel, the skipped lines numbered (a serial pass when needed)."""
    options = {} if ignore_empty_lines else {"ignore_empty_lines": False}
    table, skipped = _read_text(source, header, True, **options)
    if skipped.unnumbered:
        # Parsed in parallel, skipped rows have no line number. A serial pass numbers them;
        # it converts one column only (half the time of a whole serial read), as the rows
        # kept above are the same rows either way.
        _, numbered = _read_text(source, header, False, header[:1], **options)
        if numbered.same_lines(skipped):
            skipped = numbered
        else:  # not expected: read the whole file serially
            table, skipped = _read_text(source, header, False, **options)
    return table, skipped


def _read_lines(source, header: list[str], line_count: int | None = None):
    """(table, skipped, empty): the source as Arrow strings, the lines skipped for their number
    of fields (numbered over the lines that are not empty), and its empty lines as runs
    (starts, lengths; none when there are none). ``line_count``: the source's
    ``_line_count``, when the caller knows it.

    The reader skips empty lines itself: kept as rows of nulls they would cost it about 200
    bytes each (2 GB for a file of ten million blank lines). A pass over the bytes finds them,
    but it also takes a line break inside a quoted field that spans lines for one. Such a field
    shows: either the header, the reader's rows, its skipped lines and the empty lines do not
    add up to the lines of the source (a field closed on a later line, which is not empty), or
    the last record has a line break in it (a quote still open at the end of the file takes in
    every line after it, which may all be empty). Then the empty lines are read as rows of
    nulls instead, which tells them apart exactly.
    """
    none = (np.empty(0, np.int64), np.empty(0, np.int64))
    if not (_is_buffer(source) or (isinstance(source, (str, Path)) and not _url(source))):
        return _read_numbered(source, header, ignore_empty_lines=False) + (none,)
    table, skipped = _read_numbered(source, header)
    if line_count is None:
        line_count = _line_count(source)
    if line_count == 1 + table.num_rows + skipped.lines:  # the reader ignored no line
        return table, skipped, none
    total, *empty = _empty_lines(source)
    if not len(empty[0]):  # no empty line anywhere (a quoted field spans lines)
        return table, skipped, none
    if 1 + table.num_rows + skipped.lines + int(empty[1].sum()) == total and not (
        _has_line_break(table.slice(table.num_rows - 1) if table.num_rows else table)
        or any("\n" in t or "\r" in t for t in skipped.texts)
    ):
        return table, skipped, tuple(empty)
    return _read_numbered(source, header, ignore_empty_lines=False) + (none,)


def _has_line_break(table) -> bool:
    """Whether any cell of an Arrow table of strings holds a line break."""
    import pyarrow.compute as pc

    return any(
        pc.any(pc.match_substring_regex(column, r"[\r\n]")).as_py() for column in table.columns
    )


def _is_buffer(source) -> bool:
    import pyarrow as pa

    return isinstance(source, pa.Buffer)


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
    ``line_count``: the lines of ``source``, header included, as ``_line_count`` counts them,
    when the caller knows them (default: counted here, one pass over the bytes).
    """
    import pyarrow as pa

    try:
        table, skipped, empty = _read_lines(source, header, line_count)
    except pa.ArrowInvalid as err:
        if "utf8" in str(err).lower():
            found = (invalid_utf8 or (lambda: _first_invalid_utf8(path)))()
            where = f"byte 0x{found[1]:02x} at offset {found[0]}" if found else str(err)
            raise _fail(
                path, f"not UTF-8 text ({where}); save the file as UTF-8 (CSV UTF-8)"
            ) from None
        raise _fail(path, f"cannot be parsed as CSV: {err}") from None
    # The reader numbers the lines it does not ignore (the header is line 1): the rows are
    # those lines less the skipped ones, and every line moves down past the empty lines.
    shift = first_line - 2
    lines = np.arange(2, 2 + table.num_rows, dtype=np.int64)
    if skipped.lines:
        lines = _renumber(lines, *skipped.runs())
    bad_lines, bad_texts = skipped.malformed()
    if len(empty[0]):
        lines = _renumber(lines, *empty)
        bad_lines = _renumber(bad_lines, *empty)
    lines += shift
    malformed_frame = pd.DataFrame({"source_line": bad_lines + shift, "text": bad_texts})

    # Blank lines (every field empty) are not rows: counted, not kept.
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
    blank_lines = int((~keep).sum()) + skipped.blank + int(empty[1].sum())
    if not keep.all():
        table = table.filter(pa.array(keep))
        lines = lines[keep]

    columns: dict[str, object] = {}
    issue_frames = []
    normalised: dict[str, int] = {}
    for name in header:
        arr = table.column(name).combine_chunks() if table.num_rows else pa.array([], pa.string())
        if name in INT_COLUMNS or name in FLOAT_COLUMNS:
            integer = name in INT_COLUMNS
            values, issues, changed = _parse_number(arr, name, lines, integer)
            if integer:
                series = _whole_numbers(values)  # NaN -> <NA>
            else:
                series = pd.Series(values, dtype="float64")
            if issues is not None:
                issue_frames.append(issues)
        else:
            series, changed = _parse_text(arr, name)
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
    return ReadResult(
        path=path,
        frame=frame,
        issues=issues,
        malformed=malformed_frame,
        header=header,
        extra_columns=[h for h in header if h not in LOAN_BOOK_COLUMNS],
        blank_lines=blank_lines,
        normalised=normalised,
    )


# --- row level -------------------------------------------------------------------------------


def _missing(value: object) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value))


def _reason(column: str, rule: str, value: object) -> str:
    if rule == "not_nullable":
        return f"{column} is blank (a required field)"
    if rule.startswith("isin("):
        return f"{column} {value!r} is not an allowed value"
    if rule == "outstanding_within_loan":
        return "Outstanding_Loan_Amount is larger than Loan_Amount"
    return f"{column} {value!r} breaks {rule}"


def _repeats(ids: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(which rows repeat an id seen on an earlier row, the position of that earlier row for
    each of them); a missing id is never a repeat. One hashing pass over the column.

    ``pd.factorize`` numbers the ids in order of first appearance (missing: -1), so a row is a
    first occurrence exactly when its code is higher than every code before it.
    """
    codes, _ = pd.factorize(ids)
    codes = np.asarray(codes, dtype=np.int64)
    before = np.empty_like(codes)  # the highest code on an earlier row
    if len(codes):
        before[0] = -1
        np.maximum.accumulate(codes[:-1], out=before[1:])
    repeat = (codes >= 0) & (codes <= before)
    firsts = np.flatnonzero((codes >= 0) & ~repeat)  # firsts[k]: where id number k first appears
    return repeat, firsts[codes[repeat]]


ID_COLUMNS = ["Borrower_ID", "Loan_ID"]


def repeat_issues(lines: np.ndarray, ids: pd.Series, column: str) -> pd.DataFrame | None:
    """The ``unique`` issues of one id column: each row (in the order given, with these lines)
    that repeats an id seen on an earlier row; None when there is none."""
    dup, first = _repeats(ids)
    if not dup.any():
        return None
    return pd.DataFrame(
        {
            "source_line": lines[dup],
            "column": column,
            "rule": "unique",
            "reason": [f"duplicate {column}: first seen on line {f}" for f in lines[first]],
            "value": ids[dup].astype(object).to_numpy(),
        },
        columns=ISSUE_COLUMNS,
    )


def find_row_issues(read: ReadResult, repeats: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every rule each record breaks: parse issues, wrong field counts, duplicate ids, and the
    LoanBook schema's per-row rules (nulls, ranges, categories, cross-column).

    ``repeats``: the duplicate-id issues of these rows, found elsewhere (``read`` is one block
    of a file whose ids were compared across blocks), instead of among ``read``'s rows alone.
    """
    import pandera.pandas as pa

    df = read.frame
    found = [read.issues]
    if len(read.malformed):
        found.append(
            pd.DataFrame(
                {
                    "source_line": read.malformed["source_line"],
                    "column": "<row>",
                    "rule": "field_count",
                    "reason": f"wrong number of fields (expected {len(read.header)})",
                    "value": read.malformed["text"],
                },
                columns=ISSUE_COLUMNS,
            )
        )
    if repeats is None:
        for column in ID_COLUMNS:
            repeated = repeat_issues(df["source_line"].to_numpy(), df[column], column)
            if repeated is not None:
                found.append(repeated)
    else:
        found.append(repeats[ISSUE_COLUMNS])
    try:
        # in place: the selection is a new frame, so pandera's defensive deep copy of a
        # million rows (and its consolidation of the columns into blocks) buys nothing
        row_rules_schema().validate(df[LOAN_BOOK_COLUMNS], lazy=True, inplace=True)
    except pa.errors.SchemaErrors as err:
        cases = err.failure_cases
        cases = cases[cases["index"].notna()]
        table_wide = cases["schema_context"].eq("DataFrameSchema")
        # a table-wide rule reports every column of a failing row: keep one entry per row
        cases = pd.concat(
            [
                cases[~table_wide],
                cases[table_wide]
                .drop_duplicates(["index", "check"])
                .assign(column="Outstanding_Loan_Amount"),
            ]
        )
        index = cases["index"].astype("int64").to_numpy()
        rows = pd.DataFrame(
            {
                "source_line": df["source_line"].to_numpy()[index],
                "column": cases["column"].astype(str).to_numpy(),
                "rule": cases["check"].astype(str).to_numpy(),
                "value": [None if _missing(v) else v for v in cases["failure_case"]],
            }
        )
        where_table_wide = (cases["schema_context"] == "DataFrameSchema").to_numpy()
        rows.loc[where_table_wide, "value"] = df["Outstanding_Loan_Amount"].to_numpy()[
            index[where_table_wide]
        ]
        rows["reason"] = [
            _reason(c, r, v)
            for c, r, v in zip(rows["column"], rows["rule"], rows["value"], strict=True)
        ]
        found.append(rows[ISSUE_COLUMNS])
    issues = (
        pd.concat([f for f in found if len(f)], ignore_index=True)
        if any(len(f) for f in found)
        else read.issues.iloc[0:0]
    )
    # A cell that could not be parsed is also blank to the schema: report it once.
    parsed_bad = set(zip(read.issues["source_line"], read.issues["column"], strict=True))
    if parsed_bad:
        dup = [
            (line, col) in parsed_bad and rule == "not_nullable"
            for line, col, rule in zip(
                issues["source_line"], issues["column"], issues["rule"], strict=True
            )
        ]
        issues = issues[~np.asarray(dup, dtype=bool)]
    issues = issues.assign(
        source_line=issues["source_line"].astype("int64"),
        value=issues["value"].map(lambda v: None if _missing(v) else str(v)).astype(object),
    )
    return issues.sort_values(["source_line", "column"], kind="stable").reset_index(drop=True)


def issue_groups(issues: pd.DataFrame, examples: int = EXAMPLES) -> tuple:
    """The issues per (column, rule), in order of first appearance, as
    ``(column, rule, rows, ((line, value), ...))``: how many distinct lines broke it and the
    first ``examples`` issues. Groups of consecutive parts of the issues (blocks of a file)
    combine with ``merge_issue_groups`` into the groups of the whole."""
    groups = []
    for (column, rule), group in issues.groupby(["column", "rule"], sort=False):
        shown = group.head(examples)
        groups.append(
            (
                column,
                rule,
                int(group["source_line"].nunique()),
                tuple(zip(shown["source_line"].tolist(), shown["value"].tolist(), strict=True)),
            )
        )
    return tuple(groups)


def merge_issue_groups(parts, examples: int = EXAMPLES) -> tuple:
    """``issue_groups`` of the issues of consecutive parts of a file (no line in two parts),
    given in file order: the groups of all their issues together."""
    merged: dict[tuple[str, str], tuple[int, tuple]] = {}
    for part in parts:
        for column, rule, rows, shown in part:
            before, seen = merged.get((column, rule), (0, ()))
            merged[column, rule] = (before + rows, (seen + tuple(shown))[:examples])
    return tuple((column, rule, rows, shown) for (column, rule), (rows, shown) in merged.items())


def summarise_groups(groups: tuple) -> pd.DataFrame:
    """``issue_groups`` as a table: one row per (column, rule), most rows first."""
    rows = [
        {
            "column": column,
            "rule": rule,
            "rows": count,
            "examples": "; ".join(
                f"line {line}: {value!r}" if value is not None else f"line {line}: blank"
                for line, value in shown
            ),
        }
        for column, rule, count, shown in groups
    ]
    return pd.DataFrame(rows, columns=["column", "rule", "rows", "examples"]).sort_values(
        "rows", ascending=False, kind="stable"
    )


def summarise_issues(issues: pd.DataFrame, examples: int = EXAMPLES) -> pd.DataFrame:
    """One row per (column, rule): how many rows broke it and up to ``examples`` of them."""
    return summarise_groups(issue_groups(issues, examples))


def _describe(path: Path, summary: pd.DataFrame, headline: str) -> str:
    lines = [f"{path}: {headline}"]
    for row in summary.itertuples(index=False):
        lines.append(
            f"  column {row.column}, rule {row.rule}: {row.rows} row(s); e.g. {row.examples}"
        )
    return "\n".join(lines)


def check_quarantine(
    path: Path, records: int, quarantined: int, valid: int, groups, max_share: float, min_rows: int
) -> None:
    """Stop if too many of the ``records`` rows were set aside, or too few ``valid`` ones are
    left: the errors of ``split_rows``. ``groups``: a function giving the ``issue_groups`` of
    all the issues (called only to describe a failure)."""
    if valid == 0:
        summary = summarise_groups(groups())
        raise LoanBookFileError(
            _describe(path, summary, f"every row failed validation ({records} row(s))"), summary
        )
    share = quarantined / records
    if share > max_share:
        summary = summarise_groups(groups())
        raise QuarantineThresholdError(
            _describe(
                path,
                summary,
                f"{quarantined} of {records} rows ({_share(share)}) failed validation, over the "
                f"{max_share:.1%} threshold (setting max_quarantine_share)",
            ),
            summary,
        )
    if valid < min_rows:
        raise LoanBookFileError(
            f"{path}: only {valid} valid row(s); at least {min_rows} are needed to segment "
            "and score a book (setting min_rows)"
        )


def to_loan_book(frame: pd.DataFrame) -> pd.DataFrame:
    """Cast good rows to the strict dtypes of the ``LoanBook`` schema (the 21 columns)."""
    out = frame[LOAN_BOOK_COLUMNS]  # copy-on-write: the casts below replace columns
    for col in TEXT_COLUMNS:
        out[col] = out[col].astype(TEXT_DTYPE)
    for col in INT_COLUMNS:
        out[col] = out[col].astype("int64")
    for col in FLOAT_COLUMNS:
        out[col] = out[col].astype("float64")
    return out.reset_index(drop=True)


def split_rows(read: ReadResult, max_share: float = 0.05, min_rows: int = 1) -> SplitResult:
    """Set aside every record that breaks a rule; stop if too many did, or none are left."""
    issues = find_row_issues(read)
    bad_lines, good = _bad_and_good(read, issues)
    check_quarantine(
        read.path,
        read.records,
        len(bad_lines),
        int(good.sum()),
        lambda: issue_groups(issues),
        max_share,
        min_rows,
    )
    return _set_aside(read, issues, bad_lines, good)


def _bad_and_good(read: ReadResult, issues: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The lines with an issue, and which rows of the frame have none."""
    bad_lines = np.unique(issues["source_line"].to_numpy(dtype="int64"))
    return bad_lines, ~read.frame["source_line"].isin(bad_lines).to_numpy()


def set_aside(read: ReadResult, issues: pd.DataFrame) -> SplitResult:
    """The rows with no issue, and the issues (no threshold: for a block of a file, whose
    threshold is the whole file's)."""
    return _set_aside(read, issues, *_bad_and_good(read, issues))


def _set_aside(
    read: ReadResult, issues: pd.DataFrame, bad_lines: np.ndarray, good: np.ndarray
) -> SplitResult:
    return SplitResult(
        # every row good: the frame itself (to_loan_book selects and casts columns, copy-on-write)
        valid=to_loan_book(read.frame if good.all() else read.frame.loc[good]),
        issues=issues,
        quarantined_lines=bad_lines,
        records=read.records,
    )


def _positions(source_line: np.ndarray, lines: np.ndarray) -> np.ndarray:
    """The row of each of ``lines`` in a frame with these ``source_line`` values (-1: none)."""
    n = len(source_line)
    if n and (np.diff(source_line) > 0).all():  # as read_loan_book makes them: a binary search
        pos = np.minimum(np.searchsorted(source_line, lines), n - 1)
        return np.where(source_line[pos] == lines, pos, -1)
    return pd.Index(source_line).get_indexer(lines)


def quarantine_table(read: ReadResult, split: SplitResult) -> pd.DataFrame:
    """The quarantine as stored: one row per broken rule, with the record's original values.

    Only the quarantined records are looked up (by line), not the whole book.
    """
    source_line = read.frame["source_line"].to_numpy()
    originals: dict[int, str] = {}
    lines = np.asarray(split.quarantined_lines, dtype="int64")
    at = _positions(source_line, lines)
    in_frame = lines[at >= 0]
    if len(in_frame):
        typed = read.frame.iloc[at[at >= 0]].drop(columns="source_line")
        subset = typed.astype(object).where(typed.notna(), None)
        raw_values: dict[tuple[int, str], object] = {}
        for line, col, value in zip(
            split.issues["source_line"], split.issues["column"], split.issues["value"], strict=True
        ):
            raw_values.setdefault((int(line), col), value)  # the first issue's value
        columns = subset.columns.tolist()
        cells = zip(*(subset[c].tolist() for c in columns), strict=True)  # row by row
        for line, row in zip(in_frame.tolist(), cells, strict=True):
            record = {}
            for col, value in zip(columns, row, strict=True):
                if isinstance(value, np.generic):  # as DataFrame.to_dict("records") boxes them
                    value = value.item()
                if value is None and (line, col) in raw_values:
                    value = raw_values[line, col]
                record[col] = value
            originals[line] = json.dumps(record, default=str)
    for line, text in zip(read.malformed["source_line"], read.malformed["text"], strict=True):
        originals[int(line)] = json.dumps({"<row>": text})
    out = split.issues.copy()
    rows = _positions(source_line, out["source_line"].to_numpy(dtype="int64"))
    ids = np.full(len(out), None, dtype=object)
    if (rows >= 0).any():
        found = read.frame["Borrower_ID"].iloc[rows[rows >= 0]]
        ids[rows >= 0] = found.astype(object).where(found.notna(), None).to_numpy()
    out.insert(1, "Borrower_ID", ids)
    out["original_row"] = out["source_line"].map(originals).astype(object)
    out["source_file"] = str(read.path)
    return out.reset_index(drop=True)
