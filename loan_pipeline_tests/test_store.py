"""The storage on its own (no Dagster): publishing, carrying over, clearing, the writer lock."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from loan_pipeline.store import lock
from loan_pipeline.store.snapshots import Store
from loan_pipeline.store.tables import read_table, write_table
from loan_pipeline_tests.conftest import PROJECT_ROOT


def _run(store: Store, run_id: str, book: str, tables=("risk_scores",), charts=("a",)) -> None:
    """What a run writes into its version folder: tables, charts, its source."""
    folder = store.run_dir(run_id)
    for table in tables:
        write_table(
            pd.DataFrame({"Borrower_ID": [f"{book}_1", f"{book}_2"]}), folder / "tables" / table
        )
    for chart in charts:
        (folder / "charts").mkdir(parents=True, exist_ok=True)
        (folder / "charts" / f"{chart}.png").write_bytes(f"{book}-{chart}".encode())
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "source.json").write_text(json.dumps({"path": f"{book}.csv", "sha256": book * 8}))


def _catalog(store: Store, sql: str) -> list:
    with duckdb.connect(str(store.root / "warehouse.duckdb"), read_only=True) as con:
        return con.execute(sql).fetchall()


def test_publish_carries_over_what_the_run_did_not_make(tmp_path):
    store = Store(tmp_path)
    _run(store, "r1", "A", tables=("risk_scores", "validated_loans"), charts=("a", "b"))
    store.publish("r1", ["r1"], keep_days=7)
    _run(store, "r2", "B", tables=(), charts=("a",))  # a charts-only run
    manifest = store.publish("r2", ["r2"], keep_days=7)

    assert (tmp_path / "current").resolve() == store.run_dir("r2")
    assert manifest["items"]["charts/a.png"]["run"] == "r2"
    assert manifest["items"]["charts/b.png"]["run"] == "r1"
    assert manifest["items"]["tables/risk_scores"]["run"] == "r1"
    # carried over as hard links: the same file, no bytes copied
    carried = store.run_dir("r2") / "charts" / "b.png"
    assert carried.stat().st_ino == (store.run_dir("r1") / "charts" / "b.png").stat().st_ino
    assert (tmp_path / "charts" / "a.png").read_bytes() == b"B-a"  # the stable path
    assert _catalog(store, "SELECT count(*) FROM risk_scores") == [(2,)]
    assert _catalog(store, "SELECT snapshot, is_current FROM meta.snapshots ORDER BY 1") == [
        ("r1", False),
        ("r2", True),
    ]
    # time travel: the older snapshot's tables under its schema
    assert _catalog(store, 'SELECT count(*) FROM "snapshot_r1".risk_scores') == [(2,)]


def test_a_version_that_current_never_named_is_not_published(tmp_path):
    """A publication killed after writing its manifest but before the rename: that folder is
    not a snapshot, and the next publication neither lists nor carries from it."""
    store = Store(tmp_path)
    _run(store, "r1", "A")
    store.publish("r1", ["r1"], keep_days=7)
    _run(store, "killed", "B")
    (store.run_dir("killed") / "manifest.json").write_text(
        json.dumps({"snapshot": "killed", "published_at": time.time(), "items": {}})
    )
    assert [m["snapshot"] for m in store.published()] == ["r1"]
    assert store.never_published_runs() == []  # it has a manifest: never adopted either
    _run(store, "r3", "C", tables=(), charts=())
    manifest = store.publish("r3", ["r3"], keep_days=7)
    assert manifest["items"]["tables/risk_scores"]["run"] == "r1"
    assert manifest["published_before"] == ["r1"]


def test_old_versions_are_cleared_and_the_catalog_names_only_what_is_left(tmp_path):
    store = Store(tmp_path)
    for n in range(1, 5):
        _run(store, f"r{n}", f"B{n}")
        store.publish(f"r{n}", [f"r{n}"], keep_days=7)
    _run(store, "failed", "X")  # a failed run's version, never published
    old = time.time() - 10 * 86400
    for folder in store.root.joinpath("runs").iterdir():
        os.utime(folder, (old, old))
    _run(store, "failed-today", "Y")  # kept for re-execution; its half-written file is not
    half = store.run_dir("failed-today") / "tables" / ".risk_scores.x.tmp"
    half.mkdir()
    _run(store, "r5", "B5")
    manifest = store.publish("r5", ["r5"], keep_days=7)
    # kept: the new one, the two newest before it (the published one among them), today's
    assert sorted(p.name for p in store.root.joinpath("runs").iterdir()) == [
        "failed-today",
        "r3",
        "r4",
        "r5",
    ]
    assert not half.exists()
    assert set(manifest["removed"]) == {"r1", "r2", "failed"}
    assert manifest["published_before"] == ["r4", "r3"]
    schemas = [r[0] for r in _catalog(store, "SELECT schema_name FROM meta.snapshots")]
    for schema in schemas:  # every time-travel schema still reads
        assert _catalog(store, f'SELECT count(*) FROM "{schema}".risk_scores') == [(2,)]
    assert (
        read_table(tmp_path / "current" / "tables" / "risk_scores")["Borrower_ID"].iloc[0] == "B5_1"
    )


def test_an_older_layout_is_moved_aside_not_deleted(tmp_path):
    (tmp_path / "charts").mkdir(parents=True)
    (tmp_path / "charts" / "old.png").write_bytes(b"old")
    (tmp_path / "warehouse.duckdb").write_bytes(b"an older DuckDB file")
    store = Store(tmp_path)
    _run(store, "r1", "A")
    store.publish("r1", ["r1"], keep_days=7)
    assert (tmp_path / "charts.before-snapshots" / "old.png").read_bytes() == b"old"
    assert (tmp_path / "warehouse.duckdb.before-snapshots").read_bytes() == b"an older DuckDB file"
    assert (tmp_path / "charts").is_symlink() and (tmp_path / "warehouse.duckdb").is_symlink()


HOLD = """
import sys, time
from loan_pipeline.store import lock
lock.acquire(sys.argv[1], sys.argv[2], None)
print("held", flush=True)
if sys.argv[3] == "release":
    lock.release(sys.argv[1])
    print("released", flush=True)
time.sleep(60)
"""


def _holder(root: Path, run_id: str, then: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(root), run_id, then],
        stdout=subprocess.PIPE,
        text=True,
        cwd=PROJECT_ROOT,
    )
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_the_writer_lock_names_its_holder_and_knows_a_killed_one(tmp_path):
    holder = _holder(tmp_path, "run-a", then="hold")
    try:
        with pytest.raises(lock.WriterBusy, match="being written by run run-a"):
            lock.acquire(tmp_path, "run-b", wait=0)
        with pytest.raises(lock.WriterBusy, match="gave up after 1 s"):
            lock.acquire(tmp_path, "run-b", wait=1)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # the operating system let go with the process; the record says it never finished
    abandoned = lock.acquire(tmp_path, "run-b", wait=0)
    assert abandoned["run_id"] == "run-a" and abandoned["released"] is False
    lock.release(tmp_path)
    assert lock.holder(tmp_path)["released"] is True


LATE_HOLDER = """
import sys, time
from pathlib import Path
from filelock import FileLock
from loan_pipeline.store import lock
root = Path(sys.argv[1])
held = FileLock(root / lock.LOCK_FILE)
held.acquire()
print("held", flush=True)
time.sleep(0.5)  # its record written late, as a busy machine may
lock._write_holder(root, "run-new", released=False, label=None)
time.sleep(60)
"""


def test_a_waiter_names_the_new_holder_not_the_last_one(tmp_path):
    """Between a holder taking the lock and writing its record, the record on disk is the last
    holder's (released): the waiter's message waits for the new one instead of naming it."""
    lock.acquire(tmp_path, "run-old", wait=0)
    lock.release(tmp_path)
    assert lock.holder(tmp_path)["released"] is True
    proc = subprocess.Popen(
        [sys.executable, "-c", LATE_HOLDER, str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=PROJECT_ROOT,
    )
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(lock.WriterBusy, match="being written by run run-new"):
            lock.acquire(tmp_path, "run-b", wait=0)
    finally:
        proc.kill()
        proc.wait()


def test_a_holder_that_let_go_is_not_taken_for_killed(tmp_path):
    holder = _holder(tmp_path, "run-a", then="release")
    try:
        assert holder.stdout.readline().strip() == "released"
        assert lock.acquire(tmp_path, "run-b", wait=0) is None
        lock.acquire(tmp_path, "run-b", wait=0)  # taken again by its holder: it counts
        lock.release(tmp_path)
        assert lock.held_here(tmp_path)
        lock.release(tmp_path)
        assert not lock.held_here(tmp_path)
    finally:
        holder.kill()
        holder.wait()


def test_an_older_snapshot_with_files_gone_does_not_block_publishing(tmp_path):
    """An older snapshot whose table was removed by hand (or by a clearing cut short) drops out
    of time travel; the publication goes on. A reader's stray WAL is not carried over."""
    store = Store(tmp_path)
    for n in (1, 2):
        _run(store, f"r{n}", f"B{n}")
        store.publish(f"r{n}", [f"r{n}"], keep_days=7)
    for part in (store.run_dir("r1") / "tables" / "risk_scores").iterdir():
        part.unlink()
    (store.run_dir("r2") / "warehouse.duckdb.wal").write_bytes(b"a reader's")
    _run(store, "r3", "B3", tables=(), charts=())
    manifest = store.publish("r3", ["r3"], keep_days=7)
    assert "warehouse.duckdb.wal" not in manifest["items"]
    assert not (store.run_dir("r3") / "warehouse.duckdb.wal").exists()
    schemas = [r[0] for r in _catalog(store, "SELECT schema_name FROM meta.snapshots")]
    assert schemas == ["snapshot_r3", "snapshot_r2"]
    assert _catalog(store, "SELECT count(*) FROM risk_scores") == [(2,)]
