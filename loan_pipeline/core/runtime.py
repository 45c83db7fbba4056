"""How heavy numeric work runs.

On the 2-core machines this project targets, scikit-learn's KMeans and LogisticRegression run
several times faster with one BLAS/OpenMP thread than with the default thread pools (figures in
docs/performance.md, "The cores"): the threads spend their time synchronising, not computing. So the
model code runs inside :func:`single_threaded`, and independent pieces of work (one candidate k,
one cross-validation fold) run side by side on the cores with :func:`parallel_map`: threads, as
scikit-learn's and NumPy's compiled loops release the GIL, so nothing is copied to a worker.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


@contextmanager
def single_threaded():
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield


def workers() -> int:
    """Threads for :func:`parallel_map`: the cores this process may use (its CPU affinity, so
    ``taskset -c 0 make run`` runs everything in the calling thread)."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)


def parallel_map(func: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """``[func(x) for x in items]``, the calls spread over :func:`workers` threads, each with
    one BLAS/OpenMP thread; results in the order of ``items`` whatever order they finish in."""
    items = list(items)
    n = min(workers(), len(items))
    with single_threaded():
        if n <= 1:
            return [func(x) for x in items]
        with ThreadPoolExecutor(max_workers=n) as pool:
            return list(pool.map(func, items))


@functools.cache
def _libc():
    import ctypes
    import ctypes.util

    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def return_large_allocations_to_the_os(threshold: int = 1 << 20) -> None:
    """Serve allocations of ``threshold`` bytes and more with their own memory map (glibc), so
    freeing them gives the memory back at once. By default glibc raises this threshold as a
    program frees big blocks, and then keeps freed column-sized blocks in its heap: on a
    10-million-row book the process held gigabytes it no longer used."""
    libc = _libc()
    if libc is not None and hasattr(libc, "mallopt"):
        libc.mallopt(-3, threshold)  # M_MMAP_THRESHOLD


# Above this resident size, release_memory() also runs a full garbage collection.
COLLECT_ABOVE_BYTES = 2 << 30


def resident_bytes() -> int | None:
    """This process's resident memory (Linux), or None where /proc is not there."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def release_memory() -> None:
    """Give freed memory back to the OS between steps: Arrow's allocator keeps freed blocks for
    reuse, and glibc keeps freed heap pages. On a large book (the process above
    ``COLLECT_ABOVE_BYTES``), frames a finished step left in reference cycles are collected now
    rather than at some later allocation; a full collection walks every object the imported
    libraries made, too much to pay after every step of a small run (docs/performance.md)."""
    import gc

    rss = resident_bytes()
    if rss is None or rss > COLLECT_ABOVE_BYTES:
        gc.collect()
    try:
        import pyarrow as pa

        pa.default_memory_pool().release_unused()
    except ImportError:
        pass
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)
