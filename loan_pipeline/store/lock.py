"""One writer at a time: the storage's writer lock (``filelock``), and who holds it.

A run holds the lock from its first step to its last, so two runs never interleave their
writes. The lock is the operating system's (``flock``): a killed process lets go of it at once,
with no stale lock file to clean up. Beside it, ``writer.json`` says who holds (or last held)
it, for the messages of the runs that wait, and so that the next holder can tell a run that
ended cleanly from one that was killed while writing.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock, Timeout

from loan_pipeline.store.files import StorageError, atomic_write_bytes, explain

LOCK_FILE = "writer.lock"
HOLDER_FILE = "writer.json"

_locks: dict[Path, FileLock] = {}
_guard = threading.Lock()


class WriterBusy(RuntimeError):
    """Another run holds the storage's writer lock."""


def _lock(root: Path) -> FileLock:
    # One lock object per storage folder in this process, shared by every thread: the CLI,
    # then the run's resources, take it in turn without blocking themselves (it counts).
    root = Path(root).resolve()
    with _guard:
        if root not in _locks:
            root.mkdir(parents=True, exist_ok=True)
            _locks[root] = FileLock(root / LOCK_FILE, thread_local=False)
        return _locks[root]


def holder(root: Path) -> dict | None:
    """Who holds, or last held, the writer lock of ``root`` (None: nobody yet)."""
    try:
        return json.loads((Path(root) / HOLDER_FILE).read_text())
    except (OSError, ValueError):
        return None


def describe(info: dict | None) -> str:
    if not info:
        return "another process"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.get("since", 0)))
    who = f"run {info['run_id']}" if info.get("run_id") else info.get("label") or "a process"
    return f"{who} (pid {info.get('pid')} on {info.get('host')}, since {since})"


def held_here(root: Path) -> bool:
    """Does this process hold the writer lock of ``root``?"""
    return _lock(root).is_locked


def acquire(
    root: Path,
    run_id: str | None,
    wait: float | None,
    on_wait: Callable[[str], None] = lambda message: None,
    label: str | None = None,
) -> dict | None:
    """Take the writer lock of ``root`` for ``run_id``.

    ``label`` says who holds it until a run id is known (the CLI takes the lock before Dagster
    makes the run). ``wait``: seconds to wait for it (None: as long as it takes; 0: not at all, beyond a
    moment to read who holds it). While waiting,
    ``on_wait`` gets one message naming the holder. Raises ``WriterBusy`` when the wait runs
    out. Returns the previous holder's record when that holder stopped without letting go
    (killed), else None. Taken again by a process that holds it, it only counts.
    """
    try:
        return _acquire(root, run_id, wait, on_wait, label)
    except OSError as err:  # the folder cannot be made, or is read-only
        raise explain(err, "take the writer lock in", root) from err


def _acquire(root, run_id, wait, on_wait, label) -> dict | None:
    lock = _lock(root)
    if lock.is_locked:
        lock.acquire()
        if run_id and (holder(root) or {}).get("run_id") is None:
            _write_holder(root, run_id, released=False, label=label)
        return None
    try:
        lock.acquire(timeout=0)
    except Timeout:
        busy = f"the storage {root} is being written by {describe(_busy_holder(root))}"
        if wait == 0:
            raise WriterBusy(busy) from None
        on_wait(f"waiting for the writer lock: {busy}")
        try:
            lock.acquire(timeout=-1 if wait is None else wait)
        except Timeout:
            raise WriterBusy(f"gave up after {wait:.0f} s: {busy}") from None
    previous = holder(root)
    _write_holder(root, run_id, released=False, label=label)
    if previous and not previous.get("released") and previous.get("pid") != os.getpid():
        return previous
    return None


def _busy_holder(root: Path, patience: float = 2.0) -> dict | None:
    """The record of whoever holds the lock now. A holder writes its record just after taking
    the lock, so for a moment the file is missing or still the last holder's (released): wait a
    little for the new one rather than name nobody, or the wrong run."""
    deadline = time.monotonic() + patience
    while True:
        info = holder(root)
        if (info and not info.get("released")) or time.monotonic() >= deadline:
            return info if info and not info.get("released") else None
        time.sleep(0.05)


def release(root: Path) -> None:
    """Let go of the writer lock once (the last release marks the holder record released).
    Never raises: it runs in ``finally`` blocks, after the error the user needs to see."""
    lock = _lock(root)
    if not lock.is_locked:
        return
    if lock.lock_counter == 1:
        info = holder(root) or {}
        _write_holder(root, info.get("run_id"), released=True, label=info.get("label"))
    lock.release()


def _write_holder(root: Path, run_id: str | None, released: bool, label: str | None) -> None:
    """Record who holds the lock. Only informs (messages, telling a killed holder): when the
    disk is full or read-only the lock itself still works, so the record is skipped."""
    info = {
        "run_id": run_id,
        "label": label,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "since": time.time(),
        "released": released,
    }
    try:
        atomic_write_bytes(Path(root) / HOLDER_FILE, json.dumps(info).encode())
    except StorageError:
        pass
