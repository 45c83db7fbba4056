"""Reading a loan-book file's first bytes, and deciding whether it is a loan-book CSV at all.

A file fails as a whole (:class:`LoanBookFileError`) when it cannot be used: missing, a folder,
empty, larger than the configured limit, binary, not UTF-8, a blank first line, another
delimiter or no delimiter at all, a required column missing, renamed or duplicated. Nothing is
written; the message names the file and what was expected. ``inspect_header`` makes every one
of these checks that needs only the first bytes, and gives the header's column names.

A source is a local file, or an fsspec URL (a string containing ``://``): the functions here
open either, so the reading modules do not tell them apart.
"""

from __future__ import annotations

import csv
import difflib
from pathlib import Path
from typing import TYPE_CHECKING

from loan_pipeline.schemas import LOAN_BOOK_COLUMNS

if TYPE_CHECKING:
    import pandas as pd

_HEAD_BYTES = 1 << 16  # the bytes the header is looked for in
_BOM = b"\xef\xbb\xbf"
_DELIMITERS = {";": "semicolons", "\t": "tabs", "|": "pipes"}


class LoanBookFileError(ValueError):
    """The file as a whole cannot be used; the message names the file and what was expected."""

    def __init__(self, message: str, summary: pd.DataFrame | None = None):
        super().__init__(message)
        self.summary = summary  # failure cases per (column, rule), when rows were at fault


def file_error(path: Path, message: str) -> LoanBookFileError:
    return LoanBookFileError(f"{path}: {message}")


def header_only_error(path: Path) -> LoanBookFileError:
    return file_error(path, "header only: the file has no loan rows")


# --- the source: a local file or a URL --------------------------------------------------------


def source_path(path: str | Path) -> str | Path:
    """A local file as a ``Path``; an fsspec URL (a string containing ``://``) as it is."""
    return path if is_url(path) else Path(path)


def is_url(path: str | Path) -> bool:
    return isinstance(path, str) and "://" in path


def open_source(path: str | Path):
    """The file opened for reading bytes (a context manager): fsspec for a URL, else local."""
    if is_url(path):
        import fsspec

        return fsspec.open(path, "rb")
    return open(path, "rb")


def _url_fs(path: str):
    import fsspec

    opened = fsspec.open(path, "rb")
    return opened.fs, opened.path


def _exists(path: str | Path) -> bool:
    if is_url(path):
        fs, where = _url_fs(path)
        return fs.exists(where)
    return path.exists()


def _is_dir(path: str | Path) -> bool:
    if is_url(path):
        fs, where = _url_fs(path)
        return fs.isdir(where)
    return path.is_dir()


def file_size(path: str | Path) -> int:
    if is_url(path):
        fs, where = _url_fs(path)
        return int(fs.size(where))
    return path.stat().st_size


def first_invalid_utf8(path: str | Path) -> tuple[int, int] | None:
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


# --- the header -------------------------------------------------------------------------------


def _size(n: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{int(n)} bytes"


def inspect_header(path: Path, max_bytes: int | None = None) -> list[str]:
    """File-level checks that need only the first bytes; returns the header's column names.

    ``max_bytes``: refuse a larger file before reading it (None: no limit).
    """
    path = source_path(path)  # a local file, or an fsspec URL
    size = _check_file(path, max_bytes)
    first = _first_line(path, size)
    header = _header_fields(path, first)
    _check_columns(path, header)
    return header


def _check_file(path: str | Path, max_bytes: int | None) -> int:
    """The file's size, once it is known to be a file, not empty, and within the limit."""
    if not _exists(path):
        raise file_error(path, "loan book not found (expected a CSV file at this path)")
    if _is_dir(path):
        raise file_error(path, "is a folder, not a CSV file")
    size = file_size(path)
    if size == 0:
        raise file_error(
            path, "empty file (0 bytes); expected a CSV header row and one row per loan"
        )
    if max_bytes is not None and size > max_bytes:
        raise file_error(
            path,
            f"file is {_size(size)}, over the limit of {_size(max_bytes)} "
            "(setting max_file_gb); it was not read, so the run cannot run out of memory. "
            "Split the book, or raise the limit on a machine with more memory.",
        )
    return size


def _first_line(path: str | Path, size: int) -> str:
    """The file's first line as text (the header, not yet parsed), from its first bytes."""
    with open_source(path) as fh:
        head = fh.read(_HEAD_BYTES)
    if b"\x00" in head:
        raise file_error(path, "binary data (NUL bytes): not a CSV text file")
    bom = len(_BOM) if head.startswith(_BOM) else 0
    head = head[bom:]
    # The first bytes may end inside a line, even inside a character: decode whole lines only.
    truncated = len(head) == _HEAD_BYTES - len(_BOM) or size > _HEAD_BYTES
    cut = head.rfind(b"\n") if truncated else len(head)
    try:
        text = head[: cut if cut > 0 else len(head)].decode("utf-8")
    except UnicodeDecodeError as err:
        raise file_error(
            path,
            f"not UTF-8 text (byte 0x{head[err.start]:02x} at offset {err.start + bom}); "
            "save the file as UTF-8 (CSV UTF-8)",
        ) from None
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise file_error(path, "the first line is blank; expected the header row")
    return lines[0]


def _header_fields(path: str | Path, first: str) -> list[str]:
    """The header's column names; a single one means another delimiter, or not a CSV."""
    header = [h.strip() for h in next(csv.reader([first]))]
    if len(header) > 1:
        return header
    for delimiter, name in _DELIMITERS.items():
        if delimiter in first:
            raise file_error(
                path,
                f"wrong delimiter: the header is separated by {name}; expected commas "
                f"(header: {first[:80]!r})",
            )
    raise file_error(
        path,
        f"not a CSV loan book: the first line has a single field {first[:80]!r}; "
        f"expected a comma-separated header with {', '.join(LOAN_BOOK_COLUMNS)}",
    )


def _check_columns(path: str | Path, header: list[str]) -> None:
    """Every loan-book column exactly once (extra columns are allowed)."""
    seen: dict[str, list[int]] = {}
    for position, name in enumerate(header, start=1):
        seen.setdefault(name, []).append(position)
    duplicated = {n: p for n, p in seen.items() if len(p) > 1}
    if duplicated:
        listed = "; ".join(
            f"{n!r} (columns {', '.join(map(str, p))})" for n, p in duplicated.items()
        )
        raise file_error(path, f"column(s) appear more than once in the header: {listed}")
    missing = [c for c in LOAN_BOOK_COLUMNS if c not in seen]
    if missing:
        unknown = [h for h in header if h not in LOAN_BOOK_COLUMNS]
        described = []
        for column in missing:
            match = _renamed_as(column, unknown)
            described.append(
                f"{column} (found {match!r}: renamed?)" if match is not None else column
            )
        raise file_error(
            path,
            f"required column(s) missing: {', '.join(described)}; expected the "
            f"{len(LOAN_BOOK_COLUMNS)} columns {', '.join(LOAN_BOOK_COLUMNS)}",
        )


def _renamed_as(column: str, unknown: list[str]) -> str | None:
    """The header name a missing column was most likely renamed to, if any: the same name but
    for case and spaces, else a close spelling, else the one name that contains it."""
    folded = {u.lower().replace(" ", "_"): u for u in unknown}
    containing = [u for u in unknown if column.lower() in u.lower().replace(" ", "_")]
    return (
        folded.get(column.lower())
        or next(iter(difflib.get_close_matches(column, unknown, n=1, cutoff=0.6)), None)
        or (containing[0] if len(containing) == 1 else None)
    )
