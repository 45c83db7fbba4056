"""Handing outputs between the steps of one in-process run, and what each input asks for.

Within a run in one process, a step that needs a table or model the run has just written gets
the very object instead of reading it back (the store is written first, so what is handed on is
what is stored). Inputs name the columns they read, and whether they want a Dask frame's
partitions, in their metadata or op tags (made by ``assets.common``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from loan_pipeline import settings
from loan_pipeline.core.runtime import return_large_allocations_to_the_os

if TYPE_CHECKING:
    from dagster import InputContext, OutputContext


def table_name(context) -> str:
    return context.asset_key.path[-1]


class _RunFrames:
    """Outputs written in this process by the current run, handed to later steps of the same run.

    With the in-process executor every step runs in one process: a step that needs a table (or
    model) the run has just written gets the very object (a table with copy-on-write, so no step
    can change another's input) instead of reading it back from DuckDB or unpickling it. The
    store is written first, so what is stored and what is handed on are the same.

    An output is held only while a step of the run that reads it has yet to run: it is dropped
    when its last reader has loaded it (a table nothing downstream reads, like ``raw_loans``, is
    never held), so memory holds what is still to be used, not everything made so far. A cap
    (``max_bytes``) drops first what the fewest steps are still to read; a dropped or foreign
    output is read from the store. Outputs of another run are dropped when a new run writes its first.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.run_id: str | None = None
        self.frames: dict[str, tuple[object, int]] = {}
        self.waiting: dict[str, set] = {}  # name -> asset keys of the run that will read it

    def put(
        self, run_id: str, name: str, obj: object, readers: set, size: int | None = None
    ) -> None:
        if run_id != self.run_id:
            self.run_id, self.frames, self.waiting = run_id, {}, {}
            return_large_allocations_to_the_os()  # once a run writes data, not at import
        self._drop(name)
        if not readers:
            return
        if size is None:
            size = int(obj.memory_usage(index=True, deep=False).sum())
        self.frames[name], self.waiting[name] = (obj, size), set(readers)
        while self.frames and sum(n for _, n in self.frames.values()) > self.max_bytes:
            # over the cap: drop what the fewest steps are still to read (oldest first among
            # equals), so the loan book, which nearly every step reads, stays
            victim = min(self.frames, key=lambda k: len(self.waiting.get(k, ())))
            self._drop(victim)

    def get(self, run_id: str | None, name: str, reader: set | None = None) -> object | None:
        """The held output, or None; ``reader`` (the loading step's asset keys) is crossed off
        the output's readers, and the output dropped once none is left."""
        if run_id is None or run_id != self.run_id or name not in self.frames:
            return None
        held = self.frames.pop(name)
        self.frames[name] = held  # most recently used last
        obj = held[0]
        if reader:
            self.waiting[name] -= set(reader)
            if not self.waiting[name]:
                self._drop(name)
        return obj.copy(deep=False) if hasattr(obj, "copy") else obj

    def _drop(self, name: str) -> None:
        self.frames.pop(name, None)
        self.waiting.pop(name, None)


RUN_FRAMES = _RunFrames(max_bytes=settings.frame_cache_bytes())


def _loads(assets_def, parent) -> bool:
    """Does this asset load ``parent`` as an input value (not only depend on it, as
    ``strategy_history`` depends on ``recovery_strategies`` and reads DuckDB itself)?"""
    for name, key in assets_def.keys_by_input_name.items():
        if key == parent and not assets_def.op.ins[name].dagster_type.is_nothing:
            return True
    return False


def readers(context: OutputContext) -> set:
    """Asset keys of this run that load the output's asset as an input."""
    try:
        step = context.step_context
        graph = step.job_def.asset_layer.asset_graph
        selected = step.dagster_run.asset_selection or step.job_def.asset_layer.selected_asset_keys
        children = graph.get(context.asset_key).child_keys
        return {
            key
            for key in children
            if key in selected and _loads(graph.get(key).assets_def, context.asset_key)
        }
    except Exception:  # an OutputContext built outside a run
        return set()


def held(context: InputContext, name: str) -> object | None:
    """The output ``name`` as handed on within this run, if it is held."""
    try:
        step = context.step_context
        run_id = step.run_id
        reader = set(step.assets_def.keys) if step.assets_def is not None else None
    except Exception:  # an InputContext built outside a run
        return None
    return RUN_FRAMES.get(run_id, name, reader)


COLUMNS_TAG = "loan_pipeline/columns."


def wanted_columns(context: InputContext) -> list[str] | None:
    """The columns an input asks for (None: all of them): ``columns`` in the input's metadata,
    or, for a multi-asset (whose inputs cannot carry metadata beside their specs' deps), the op
    tag ``loan_pipeline/columns.<input>`` (JSON). Both made by ``assets.common``."""
    import json

    try:
        columns = (context.definition_metadata or {}).get("columns")
        if not columns and context.op_def is not None:
            tagged = (context.op_def.tags or {}).get(COLUMNS_TAG + context.name)
            columns = json.loads(tagged) if tagged else None
    except Exception:  # an InputContext built outside a run
        return None
    return list(columns) if columns else None


PARTITIONED = "partitioned"


PARTITIONED_TAG = "loan_pipeline/partitioned."


def wants_partitions(context: InputContext) -> bool:
    """Does the loading step apply its functions per partition (input metadata
    ``partitioned``, set by ``assets.common.columns_of(..., partitioned=True)``, or for a
    multi-asset the op tag ``loan_pipeline/partitioned.<input>``, set by
    ``assets.common.columns_tags(partitioned=True, ...)``)?"""
    try:
        if (context.definition_metadata or {}).get(PARTITIONED):
            return True
        tags = (context.op_def.tags if context.op_def is not None else None) or {}
        return tags.get(PARTITIONED_TAG + context.name) == "true"
    except Exception:  # an InputContext built outside a run
        return False
