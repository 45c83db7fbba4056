"""Read a loan-book CSV as independent byte-range blocks, with the result of reading it whole.

Each block is parsed by the code that parses the whole file (``ingest_records.read_records``:
the same reader, cell rules and counts), its records numbered as in the file; the only rule
that spans blocks, unique ids, is applied across blocks from each block's (line, id) pairs; the
quarantine threshold is applied to the whole file's counts. Concatenated in block order, the
blocks give exactly what ``read_loan_book`` + ``split_rows`` + ``quarantine_table`` give for the
whole file, and a broken file fails with the same error.

Pure functions on files, bytes and frames (no scheduler here). A path is a local file, or an
fsspec URL (a string containing ``://``). The phases, and where each runs:

====  ==========  ==============================================================================
0     driver      ``header = inspect_header(path, max_bytes)``; ``blocks = plan_blocks(path, n)``
1     per block   ``count_lines(path, block)``: records in the block (one read of its bytes)
      driver      ``blocks = number_blocks(blocks, counts)``: each block's first line (a sum)
2     per block   ``read = read_block(path, header, block)`` (a ``ReadResult``);
                  ``id_buckets(block_ids(read), n_buckets)``: its ids, hash-partitioned
3     per bucket  ``find_repeats([bucket b of every block])``: the ``unique`` issues
      driver      ``repeats_by_block(repeats, blocks)``: each block's share of them
4     per block   ``split = split_block(read, repeats)``; ``quarantine_table(read, split)``;
                  ``block_counts(read, split)``
5     driver      ``counts = combine_counts(counts, header)``; ``check_book(path, counts, ...)``
====  ==========  ==============================================================================

The counts and the verdict on them (``block_counts``, ``combine_counts``, ``check_book``) are
``ingest_verdict``'s, which judges a whole read the same way. The outputs are the per-block
frames (``read.frame``, ``split.valid``, the quarantine tables) concatenated in block order. ``read_in_blocks`` runs the phases one block after another.

One thing is refused that the whole-file read accepts: a quoted field that spans lines (a line
break inside quotes). Blocks are cut at line breaks without parsing what comes before them, so
such a record cannot be read in blocks; ``read_block`` detects it and raises
``MultilineRecordError`` naming the line (read such a file whole, with ``read_loan_book``).

One message can differ: bytes that are not UTF-8 in two rows, one of them malformed. The whole
read names the malformed row (its reader reports a row with the wrong number of fields before a
cell that is not UTF-8, anywhere in the same 16 MB piece); blocks, read in order, can name the
other row, if it comes first. Both refuse the file as not UTF-8 (``LoanBookFileError``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from loan_pipeline.core.ingest_header import (
    LoanBookFileError,
    file_error,
    file_size,
    first_invalid_utf8_in,
    inspect_header,
    open_source,
    source_path,
)
from loan_pipeline.core.ingest_quarantine import (
    ID_COLUMNS,
    SplitResult,
    find_row_issues,
    quarantine_table,
    repeat_issues,
    row_positions,
    set_aside,
)
from loan_pipeline.core.ingest_records import ISSUE_COLUMNS, ReadResult, read_records
from loan_pipeline.core.ingest_verdict import (
    BookCounts,
    block_counts,
    check_book,
    combine_counts,
)

_LINE_BREAK = re.compile(rb"\r\n|\r|\n")  # as the CSV reader ends a record
_SEEK_READ = 1 << 16  # bytes read at a time looking for a line break
_CHUNK = 1 << 20  # bytes read at a time counting line breaks (and decoding UTF-8)


class MultilineRecordError(LoanBookFileError):
    """A quoted field spans lines: the file cannot be read in blocks (only whole)."""


@dataclass(frozen=True)
class Block:
    """A byte range of the file, whole lines: ``[start, end)``."""

    start: int  # just after a line break
    end: int  # just after a line break, or the end of the file
    header_end: int  # where the file's first record begins: [0, header_end) is BOM and header
    last: bool  # ends at the end of the file
    first_line: int | None = None  # the file's line number of its first record (number_blocks)
    lines: int | None = None  # records in it: line breaks, and a last line without one


# --- phase 0: plan ----------------------------------------------------------------------------


def _line_end(fh, pos: int, size: int) -> int:
    """Just after the first line break at or after ``pos`` (``size`` if there is none)."""
    fh.seek(pos)
    while pos < size:
        chunk = fh.read(_SEEK_READ)
        if not chunk:
            break
        found = _LINE_BREAK.search(chunk)
        if found:
            end = pos + found.end()
            if found.end() == len(chunk) and chunk.endswith(b"\r") and fh.read(1) == b"\n":
                end += 1  # a "\r\n" across two reads is one line break
            return end
        pos += len(chunk)
    return size


def plan_blocks(path: str | Path, block_bytes: int) -> list[Block]:
    """Byte ranges covering the data after the header, each whole lines and at least
    ``block_bytes`` long (the last one: what is left). Reads only around each boundary.

    A file with no data after its header gets one empty block: read, it fails or not as the
    whole file does (the reader refuses a header without a line break; a header alone is
    ``check_book``'s "header only")."""
    if block_bytes < 1:
        raise ValueError(f"block_bytes must be at least 1, not {block_bytes}")
    path = source_path(path)
    size = file_size(path)
    blocks: list[Block] = []
    with open_source(path) as fh:
        header_end = _line_end(fh, 0, size)  # a BOM is no line break: the header's line
        start = header_end
        while start < size:
            end = (
                size
                if start + block_bytes >= size
                else _line_end(fh, start + block_bytes - 1, size)
            )
            blocks.append(Block(start, end, header_end, last=end >= size))
            start = end
    return blocks or [Block(header_end, header_end, header_end, last=True)]


# --- phase 1: count and number ----------------------------------------------------------------


def _read_exactly(fh, start: int, length: int) -> bytes:
    fh.seek(start)
    data = fh.read(length)
    if len(data) != length:
        raise OSError(f"the file changed while it was read: {length} bytes expected at {start}")
    return data


def count_lines(path: str | Path, block: Block) -> int:
    """The records in a block as the CSV reader counts them: line breaks (``\\n``, ``\\r\\n``
    or a lone ``\\r``), blank and malformed lines included, and a last line without one."""
    path = source_path(path)
    breaks = 0
    previous_cr = False
    last = b""
    with open_source(path) as fh:
        fh.seek(block.start)
        remaining = block.end - block.start
        while remaining:
            chunk = fh.read(min(_CHUNK, remaining))
            if not chunk:
                raise OSError(f"the file changed while it was read: it ends before {block.end}")
            breaks += chunk.count(b"\n") + chunk.count(b"\r") - chunk.count(b"\r\n")
            breaks -= previous_cr and chunk.startswith(b"\n")  # "\r" + "\n": counted twice
            previous_cr = chunk.endswith(b"\r")
            last = chunk[-1:]
            remaining -= len(chunk)
    return breaks + (last not in (b"", b"\n", b"\r"))


def number_blocks(blocks: list[Block], counts: list[int]) -> list[Block]:
    """The blocks with their first line (the header is line 1) and their count of records."""
    if len(blocks) != len(counts):
        raise ValueError(f"{len(blocks)} blocks but {len(counts)} counts")
    numbered = []
    first = 2
    for block, count in zip(blocks, counts, strict=True):
        numbered.append(replace(block, first_line=first, lines=int(count)))
        first += int(count)
    return numbered


# --- phase 2: read ----------------------------------------------------------------------------


def _ends_inside_quotes(line: bytes) -> bool:
    """Whether a line (no line break in it), read from its start as the CSV reader reads it,
    ends inside a quoted field, so that its line break belongs to the field. A quote opens a
    quoted field only at the start of a field; inside one, two quotes are a quote and a single
    one ends the quoted part."""
    if b'"' not in line:
        return False
    quoted, at_start, i, n = False, True, 0, len(line)
    while i < n:
        c = line[i]
        if quoted:
            if c == 0x22:
                if i + 1 < n and line[i + 1] == 0x22:
                    i += 1
                else:
                    quoted = False
        elif c == 0x2C:
            at_start = True
            i += 1
            continue
        else:
            quoted = at_start and c == 0x22
            at_start = False
        i += 1
    return quoted


def _multiline(path, block: Block, data: bytes, seen: int) -> LoanBookFileError:
    """The error for a block whose records are not its lines."""
    for number, line in enumerate(_LINE_BREAK.split(data), start=block.first_line):
        if _ends_inside_quotes(line):  # the first such line: every line before began unquoted
            return MultilineRecordError(
                f"{path}: a quoted field spans lines (line {number} ends inside quotes): a file "
                "read in blocks must have one record per line; remove the line breaks inside "
                "quoted fields, or read the file whole"
            )
    return file_error(  # not expected: the reader and count_lines disagree on what a line is
        path,
        f"lines {block.first_line}-{block.first_line + block.lines - 1} were read as {seen} "
        f"records, not {block.lines}; read the file whole",
    )


def _aligned_chunks(data: memoryview, offset: int):
    """``data`` (at ``offset`` in the file) in the pieces a whole-file scan would read it in."""
    cut = min(len(data), -offset % _CHUNK or _CHUNK)
    if cut:
        yield data[:cut]
    for at in range(cut, len(data), _CHUNK):
        yield data[at : at + _CHUNK]


def read_block(path: str | Path, header: list[str], block: Block) -> ReadResult:
    """One numbered block parsed exactly as ``read_loan_book`` parses the whole file: the
    header's bytes and the block's are read together by the same reader, so every record, cell
    issue, blank and malformed line comes out as in the whole read, numbered as in the file.

    No file-level checks (``inspect_header`` is the driver's; a file with no rows, ``check_book``
    after all blocks). Raises ``MultilineRecordError`` when a quoted field spans lines.
    """
    import pyarrow as pa

    if block.first_line is None or block.lines is None:
        raise ValueError("number the blocks first: number_blocks(blocks, counts)")
    path = source_path(path)
    with open_source(path) as fh:
        head = _read_exactly(fh, 0, block.header_end)
        body = _read_exactly(fh, block.start, block.end - block.start)

    def invalid_utf8():
        return first_invalid_utf8_in(_aligned_chunks(memoryview(body), block.start), block.start)

    read = read_records(
        path,
        header,
        pa.py_buffer(head + body),
        block.first_line,
        invalid_utf8,
        line_count=1 + block.lines,  # the header's line, and the block's
    )
    seen = read.records + read.blank_lines
    # Records are lines unless a line break lies inside quotes: then fewer records, or (the
    # break that ends the block) as many, the last line ending inside quotes. A last block ends
    # as the file does, and is read as in the whole file whatever its last line.
    if seen != block.lines or (not block.last and _ends_inside_quotes(_last_line(body))):
        raise _multiline(path, block, body, seen)
    return read


def _last_line(data: bytes) -> bytes:
    """The last line of whole lines, without its line break."""
    data = data[:-2] if data.endswith(b"\r\n") else data[:-1]
    return data[max(data.rfind(b"\n"), data.rfind(b"\r")) + 1 :]


# --- phase 3: ids across blocks ---------------------------------------------------------------


def block_ids(read: ReadResult) -> pd.DataFrame:
    """A block's ids with their lines, all that repeated ids are judged by: ``column`` (which id
    column, categorical), ``source_line``, ``id``. Missing ids are left out (never a repeat)."""
    lines = read.frame["source_line"].to_numpy()
    parts = []
    for code, column in enumerate(ID_COLUMNS):
        ids = read.frame[column]
        present = ids.notna().to_numpy()
        codes = np.full(int(present.sum()), code, dtype=np.int8)
        parts.append(
            pd.DataFrame(
                {
                    "column": pd.Categorical.from_codes(codes, categories=ID_COLUMNS),
                    "source_line": lines[present],
                    "id": ids[present].array,
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def id_buckets(ids: pd.DataFrame, n_buckets: int) -> list[pd.DataFrame]:
    """``block_ids`` split into ``n_buckets`` by a hash of the id (the same in every process), so
    that bucket b of every block holds every row of the ids that fall in it: each bucket's
    repeats can be found on its own (``find_repeats``), no machine holding all the ids."""
    if n_buckets < 1:
        raise ValueError(f"n_buckets must be at least 1, not {n_buckets}")
    if n_buckets == 1:
        return [ids]
    hashed = pd.util.hash_pandas_object(ids["id"], index=False).to_numpy()
    bucket = (hashed % np.uint64(n_buckets)).astype(np.int64)
    order = np.argsort(bucket, kind="stable")
    cuts = np.cumsum(np.bincount(bucket, minlength=n_buckets))[:-1]
    return [ids.iloc[rows].reset_index(drop=True) for rows in np.split(order, cuts)]


def _no_issues() -> pd.DataFrame:
    return pd.DataFrame(columns=ISSUE_COLUMNS).astype({"source_line": "int64"})


def find_repeats(pieces: list[pd.DataFrame]) -> pd.DataFrame:
    """The ``unique`` issues among these rows, by ``find_row_issues``' rule: a row whose id
    was seen on an earlier line is set aside, "duplicate <column>: first seen on line N" (the
    first occurrence is kept, even if it is set aside for another reason).

    ``pieces``: every block's ``block_ids``, or bucket b of every block's ``id_buckets`` (then
    the issues are bucket b's): every row of an id must be among them. In any order.
    """
    if not pieces:
        return _no_issues()
    ids = pd.concat(pieces, ignore_index=True)
    found = []
    for column in ID_COLUMNS:
        rows = ids[(ids["column"] == column).to_numpy()]
        if not rows["source_line"].is_monotonic_increasing:
            rows = rows.sort_values("source_line", kind="stable")
        repeated = repeat_issues(rows["source_line"].to_numpy(), rows["id"], column)
        if repeated is not None:
            found.append(repeated)
    return pd.concat(found, ignore_index=True) if found else _no_issues()


def repeats_by_block(repeats: list[pd.DataFrame] | pd.DataFrame, blocks: list[Block]):
    """``find_repeats``' issues (of all buckets) shared out: one frame per block, its lines'."""
    frames = [repeats] if isinstance(repeats, pd.DataFrame) else list(repeats)
    frames = [f for f in frames if len(f)]
    every = pd.concat(frames, ignore_index=True) if frames else _no_issues()
    firsts = np.array([b.first_line for b in blocks], dtype="int64")
    at = np.searchsorted(firsts, every["source_line"].to_numpy(dtype="int64"), side="right") - 1
    groups = {int(k): g.reset_index(drop=True) for k, g in every.groupby(at, sort=False)}
    return [groups.get(k, _no_issues()) for k in range(len(blocks))]


# --- phase 4: split ---------------------------------------------------------------------------


def split_block(read: ReadResult, repeats: pd.DataFrame | None = None) -> SplitResult:
    """``split_rows`` of one block without its threshold (``check_book`` applies the file's):
    every record that breaks a rule set aside. ``repeats``: the ``unique`` issues found across
    blocks (``find_repeats``; those not on this block's rows are ignored); None: ids compared
    within the block alone (right only when it is the whole file)."""
    if repeats is not None:
        lines = read.frame["source_line"].to_numpy()
        repeats = repeats[row_positions(lines, repeats["source_line"].to_numpy(dtype="int64")) >= 0]
    return set_aside(read, find_row_issues(read, repeats))


# --- all phases, one block after another ------------------------------------------------------


def concat_frames(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Per-block frames as one, in block order (empty blocks left out unless all are)."""
    kept = [f for f in frames if len(f)] or frames[:1]
    return pd.concat(kept, ignore_index=True)


def read_in_blocks(
    path: str | Path,
    block_bytes: int,
    *,
    max_bytes: int | None = None,
    max_quarantine_share: float,
    min_rows: int,
    n_buckets: int = 1,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, BookCounts]:
    """(raw, validated, quarantined, counts) of the file read in blocks of about
    ``block_bytes``, every phase run here one block after another: what ``read_loan_book``,
    ``split_rows`` and ``quarantine_table`` give for the whole file (``read.frame``,
    ``split.valid``, the quarantine table), and the same errors."""
    path = source_path(path)
    header = inspect_header(path, max_bytes)
    return read_blocks(
        path,
        header,
        plan_blocks(path, block_bytes),
        max_quarantine_share=max_quarantine_share,
        min_rows=min_rows,
        n_buckets=n_buckets,
    )


def read_blocks(
    path: str | Path,
    header: list[str],
    blocks: list[Block],
    *,
    max_quarantine_share: float,
    min_rows: int,
    n_buckets: int = 1,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, BookCounts]:
    """``read_in_blocks`` for a plan of blocks (numbered here): phases 1 to 5 in turn."""
    path = source_path(path)
    blocks = number_blocks(blocks, [count_lines(path, b) for b in blocks])
    reads = [read_block(path, header, b) for b in blocks]
    buckets = [id_buckets(block_ids(r), n_buckets) for r in reads]
    repeats = [find_repeats([b[k] for b in buckets]) for k in range(n_buckets)]
    splits = [
        split_block(read, mine)
        for read, mine in zip(reads, repeats_by_block(repeats, blocks), strict=True)
    ]
    counts = combine_counts(
        [block_counts(r, s) for r, s in zip(reads, splits, strict=True)], header
    )
    check_book(path, counts, max_quarantine_share=max_quarantine_share, min_rows=min_rows)
    return (
        concat_frames([r.frame for r in reads]),
        concat_frames([s.valid for s in splits]),
        concat_frames([quarantine_table(r, s) for r, s in zip(reads, splits, strict=True)]),
        counts,
    )
