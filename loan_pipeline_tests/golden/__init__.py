"""Digests of what a run publishes on the shipped sample and on the reference data set: every
table's content, every chart's bytes, the export, the model card and the monitoring profile.

A change that means to alter no output (a refactor, a speed-up) is checked against them by
``test_golden.py``. A change that means to alter outputs regenerates them, in the same commit,
with ``python -m loan_pipeline_tests.golden`` (it runs the pipeline on both books), so the
diff shows which outputs moved.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from pathlib import Path

import duckdb
import pandas as pd

HERE = Path(__file__).resolve().parent
# Columns that say where or when a run happened, not what it computed.
VOLATILE_COLUMNS = ["snapshot_id", "snapshot_time", "source_file"]
FILES = ["charts/*.png", "exports/*.csv", "reports/*.md", "monitoring/profile.json"]


def table_digest(frame: pd.DataFrame) -> str:
    """The sha256 of a table's columns, dtypes and every value, row by row in order."""
    frame = frame.drop(columns=[c for c in VOLATILE_COLUMNS if c in frame])
    head = json.dumps([[c, str(t)] for c, t in frame.dtypes.items()]).encode()
    rows = pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes()
    return hashlib.sha256(head + rows).hexdigest()


def digests(storage: Path) -> dict[str, str]:
    """What the published snapshot under ``storage`` holds, as digests by name."""
    out = {}
    with duckdb.connect(str(storage / "warehouse.duckdb"), read_only=True) as con:
        for (name,) in sorted(con.execute("SHOW TABLES").fetchall()):
            out[f"table {name}"] = table_digest(con.execute(f'SELECT * FROM "{name}"').df())
    current = (storage / "current").resolve()
    for pattern in FILES:
        for path in sorted(current.glob(pattern)):
            out[str(path.relative_to(current))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def golden_path(book: str) -> Path:
    return HERE / f"{book}.json"


def main() -> int:
    """Run the pipeline on both books and write their digests."""
    from loan_pipeline_tests.conftest import REFERENCE_CSV, SAMPLE_CSV, run_pipeline

    for book, csv in (("sample", SAMPLE_CSV), ("reference", REFERENCE_CSV)):
        if not csv.exists():
            print(f"skipped {book}: {csv} is absent", file=sys.stderr)
            continue
        with tempfile.TemporaryDirectory() as tmp:
            run = run_pipeline(csv, Path(tmp) / "storage")
            if not run.result.success:
                print(f"the pipeline failed on {csv}", file=sys.stderr)
                return 1
            found = digests(run.storage)
        golden_path(book).write_text(json.dumps(found, indent=1, sort_keys=True) + "\n")
        print(f"wrote {golden_path(book)} ({len(found)} outputs)")
    return 0
