"""Fingerprints of data and code: what the schedule compares to decide whether to run."""

from __future__ import annotations

import hashlib
from pathlib import Path


def file_sha256(path: Path | str, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes (a local file or an fsspec URL), read in chunks (constant
    memory)."""
    from loan_pipeline.core.ingest_header import open_source

    digest = hashlib.sha256()
    with open_source(path) as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def code_version() -> str:
    """A version of the pipeline's code: the hash of every Python file of the package
    (``core.fingerprint.source_digest``), shortened. Any change to the analysis changes it, so
    the schedule re-runs and Dagster marks the assets' code as changed."""
    from loan_pipeline.core.fingerprint import source_digest

    return source_digest()[:12]
