"""Digests of what a result is computed from: equal digests mean equal inputs.

A digest is the SHA-256 of the values themselves (pandas' hash of every row of a column, with
the column's name and dtype, and of the index; a model's pickle), so the same book gives the
same digest whichever file, storage or run it came from, and one changed value, column name,
dtype or row order gives another. ``code_version`` digests the project's own source and the
versions of the libraries a result is drawn with: a changed line of code is a changed input.
"""

from __future__ import annotations

import functools
import hashlib
import io
import pickle
import sys
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pandas is imported where a frame is digested: the code location's loading
    import pandas as pd  # reads source_digest and stays free of it (test_definitions)

__all__ = [
    "code_version",
    "column_digest",
    "digest_of_parts",
    "frame_digest",
    "pickled",
    "source_digest",
    "value_digest",
]

_PACKAGE = Path(__file__).resolve().parents[1]


def digest_of_parts(*parts: str) -> str:
    """One digest of several strings (each length-prefixed: ``("ab", "c")`` ≠ ``("a", "bc")``)."""
    sha = hashlib.sha256()
    for part in parts:
        data = part.encode()
        sha.update(len(data).to_bytes(8, "little"))
        sha.update(data)
    return sha.hexdigest()


def column_digest(column: pd.Series) -> str:
    """The digest of one column: its name, dtype and every value, in row order."""
    import pandas as pd

    rows = pd.util.hash_pandas_object(column, index=False).to_numpy()
    return digest_of_parts(str(column.name), str(column.dtype), hashlib.sha256(rows).hexdigest())


def frame_digest(frame: pd.DataFrame, columns: list[str] | None = None) -> str:
    """The digest of ``frame`` (or of its ``columns``, in that order) and its index."""
    import pandas as pd

    index = pd.util.hash_pandas_object(frame.index, index=False).to_numpy()
    parts = [str(frame.index.dtype), hashlib.sha256(index).hexdigest()]
    parts += [column_digest(frame[c]) for c in (frame.columns if columns is None else columns)]
    return digest_of_parts(*parts)


def value_digest(value: object) -> str | None:
    """The digest of a pandas frame or of a picklable object (a fitted model, a dict), or None
    for what stands for data held elsewhere (a Dask frame: its graph, not its values)."""
    import pandas as pd

    if isinstance(value, pd.DataFrame):
        return frame_digest(value)
    if hasattr(value, "__dask_graph__"):
        return None
    return hashlib.sha256(pickled(value)).hexdigest()


class _EqualStringsAsOne(pickle._Pickler):
    """Python's own pickler (its pure-Python form, whose ``save`` can be extended), except that
    equal strings are pickled as one object. Whether two equal strings of a fitted model are
    one object in memory depends on what the process ran before (interning), and pickle writes
    a shared object once and an equal copy twice: the same model would get other bytes, and
    another SHA-256, after other work in the same process."""

    def save(self, obj, save_persistent_id=True):
        super().save(sys.intern(obj) if type(obj) is str else obj, save_persistent_id)


def pickled(value: object) -> bytes:
    """``value``'s pickle (protocol 5), the same bytes for equal values whatever the process
    did before: what a model file holds, and what its digest is taken of."""
    buffer = io.BytesIO()
    _EqualStringsAsOne(buffer, protocol=5).dump(value)
    return buffer.getvalue()


@functools.cache
def source_digest() -> str:
    """The digest of every Python file of the ``loan_pipeline`` package, each with its path:
    any change to the code changes it (read once per process; ~100 small files, a few ms)."""
    sha = hashlib.sha256()
    for path in sorted(_PACKAGE.rglob("*.py")):
        sha.update(path.relative_to(_PACKAGE).as_posix().encode())
        sha.update(path.read_bytes())
    return sha.hexdigest()


@functools.cache
def code_version(*distributions: str) -> str:
    """The digest of the package's source (``source_digest``) and of the installed versions of
    ``distributions`` (e.g. matplotlib)."""
    versions = [f"{name}=={metadata.version(name)}" for name in distributions]
    return digest_of_parts(source_digest(), *versions)
