"""The loan book as the CSV reader splits it: every record as Arrow strings, and the line of the
file each one is on.

The reader (``pyarrow.csv``) skips lines with the wrong number of fields and, here, empty lines;
neither may lose its place. A skipped line of whitespace is counted; any other skipped line is a
malformed record, kept with its text for the quarantine; empty lines are found in the bytes.
Every record is then numbered by its physical line in the file (the header is line 1), exact as
long as no quoted field spans lines (a case told apart and read the slow, exact way).
"""

from __future__ import annotations

from array import array
from pathlib import Path

import numpy as np
import pandas as pd

from loan_pipeline.core.ingest_header import is_url


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
    ``ingest_records.read_records``). ``columns``: convert only these (the parse, and so which
    rows are malformed, is the same). ``ignore_empty_lines``: the reader skips empty lines without a
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


def read_lines(source, header: list[str], line_count: int | None = None):
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
    if not (_is_buffer(source) or (isinstance(source, (str, Path)) and not is_url(source))):
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


def number_records(
    rows: int, skipped: _Skipped, empty: tuple[np.ndarray, np.ndarray], first_line: int
) -> tuple[np.ndarray, pd.DataFrame]:
    """(the line of each of the reader's ``rows``, the malformed records as a frame of
    ``source_line`` and ``text``), from what ``read_lines`` gives, the first record on
    ``first_line``.

    The reader numbers the lines it does not ignore (the header is line 1): the rows are those
    lines less the skipped ones, and every line moves down past the empty lines.
    """
    shift = first_line - 2
    lines = np.arange(2, 2 + rows, dtype=np.int64)
    if skipped.lines:
        lines = _renumber(lines, *skipped.runs())
    bad_lines, bad_texts = skipped.malformed()
    if len(empty[0]):
        lines = _renumber(lines, *empty)
        bad_lines = _renumber(bad_lines, *empty)
    lines += shift
    return lines, pd.DataFrame({"source_line": bad_lines + shift, "text": bad_texts})
