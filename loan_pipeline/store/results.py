"""Results kept by the digest of what they were computed from, to be used again.

A result (a chart's PNG) is a file named by its digest (``core.fingerprint``): the same digest
means the same inputs, the same code and the same libraries, so the file is the result a new
computation would give. Files are written all-or-nothing; one that is not what it should be (not
a PNG, cut short) is removed and recomputed. The store only ever saves time: a result it cannot
read or write is computed or skipped, and the run goes on (the caller logs why).
Files not used for ``LOAN_PIPELINE_KEEP_DAYS`` are removed.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from loan_pipeline.store.files import atomic_write_bytes

__all__ = ["ResultStore"]

_PNG_START = b"\x89PNG\r\n\x1a\n"
_PNG_END = b"IEND\xaeB`\x82"


class ResultStore:
    """PNGs by digest in ``folder``."""

    def __init__(self, folder: Path, keep_days: float) -> None:
        self.folder = Path(folder)
        self.keep_days = keep_days

    def _path(self, digest: str) -> Path:
        return self.folder / f"{digest}.png"

    def get(self, digest: str) -> bytes | None:
        """The PNG kept for ``digest`` (and marks it used), or None."""
        path = self._path(digest)
        try:
            data = path.read_bytes()
        except OSError:
            return None
        if not (data.startswith(_PNG_START) and data.endswith(_PNG_END)):
            path.unlink(missing_ok=True)
            return None
        try:
            os.utime(path)
        except OSError:
            pass  # a read-only store still serves what it has
        return data

    def put(self, digest: str, data: bytes) -> None:
        """Keep ``data`` for ``digest``; raises ``StorageError`` when it cannot be written."""
        atomic_write_bytes(self._path(digest), data)

    def prune(self) -> int:
        """Remove the files not used for ``keep_days``; how many were removed."""
        cutoff = time.time() - self.keep_days * 86400
        removed = 0
        for path in self.folder.glob("*.png"):
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
            except OSError:
                continue  # taken by another run's prune, or not ours to remove
        return removed
