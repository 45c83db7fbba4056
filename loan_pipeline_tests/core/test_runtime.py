from __future__ import annotations

import gc
import weakref

from loan_pipeline.core import runtime


class _Node:
    pass


def _cycle() -> weakref.ref:
    node = _Node()
    node.me = node  # unreachable once this returns, but only a collection frees it
    return weakref.ref(node)


def test_release_memory_collects_cycles_only_in_a_large_process(monkeypatch):
    assert runtime.resident_bytes() > 0
    gc.disable()  # no automatic collection in between
    try:
        monkeypatch.setattr(runtime, "COLLECT_ABOVE_BYTES", 1 << 50)
        small = _cycle()
        runtime.release_memory()
        assert small() is not None  # a small process skips the (slow) full collection
        monkeypatch.setattr(runtime, "COLLECT_ABOVE_BYTES", 0)
        runtime.release_memory()
        assert small() is None
    finally:
        gc.enable()
