"""Fingerprints of data and code: what the schedule compares to decide whether to run."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def file_sha256(path: Path | str, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes (a local file or an fsspec URL), read in chunks (constant
    memory)."""
    from loan_pipeline.core.ingest_header import open_source

    digest = hashlib.sha256()
    with open_source(path) as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@lru_cache(maxsize=1)
def code_version() -> str:
    """A version of the pipeline's code: the hash of every Python file of the package.

    Any change to the analysis changes it, so the schedule re-runs and Dagster marks the assets'
    code as changed; reading ~40 small files takes about a millisecond."""
    digest = hashlib.sha256()
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        digest.update(path.relative_to(PACKAGE_DIR).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]
