"""A run's view of the storage: where it writes, what it reads, and its hold on the writer lock.

Every output of a run, tables and models (the IO managers) and files (charts, the export, the
model card, the monitoring profile), goes into the run's own version folder through this module
(``loan_pipeline.store``); nothing writes into the published snapshot. A run reads what it (or
the run it re-executes) made, and otherwise the published snapshot.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from loan_pipeline import settings
from loan_pipeline.store import lock
from loan_pipeline.store.files import atomic_write, atomic_write_bytes
from loan_pipeline.store.snapshots import Store

if TYPE_CHECKING:
    from dagster import DagsterInstance

_lineages: dict[str, list[str]] = {}


def store() -> Store:
    # absolute: the catalog's views name their files by this path, for readers anywhere
    return Store(settings.storage_dir().resolve(), settings.datasets_url())


def lineage(instance: DagsterInstance | None, run_id: str) -> list[str]:
    """The runs whose outputs ``run_id`` reads before the published snapshot's, and publishes
    with its own, newest first: itself; the runs it re-executes (a re-execution from failure
    reads what its parent made); then the runs that succeeded since the last publication
    without publishing (a hand-picked selection in the UI that left ``published_snapshot``
    out). Never a failed or running run's."""
    if run_id in _lineages:
        return _lineages[run_id]
    chain = [run_id]
    run = instance.get_run_by_id(run_id) if instance is not None else None
    while run is not None and run.parent_run_id and run.parent_run_id not in chain:
        chain.append(run.parent_run_id)
        run = instance.get_run_by_id(run.parent_run_id)
    if instance is not None:
        chain += [r for r in _succeeded_unpublished(instance) if r not in chain]
    _lineages[run_id] = chain
    return chain


def _succeeded_unpublished(instance) -> list[str]:
    from dagster import DagsterRunStatus

    current = store().manifest()
    since = current["published_at"] if current else 0.0
    found = []
    for run_id in store().never_published_runs():
        record = instance.get_run_record_by_id(run_id)
        if record is None or record.dagster_run.status != DagsterRunStatus.SUCCESS:
            continue
        if (record.end_time or 0.0) > since:
            found.append((record.end_time, run_id))
    return [run_id for _, run_id in sorted(found, reverse=True)]


def run_id_of(context) -> str:
    """The run of an asset's, an output's or an input's context (an input's is its step's).
    An asset's context names it as ``context.run.run_id`` (its ``run_id`` is deprecated)."""
    from dagster import AssetExecutionContext

    if isinstance(context, AssetExecutionContext):
        return context.run.run_id
    if hasattr(context, "run_id"):
        return context.run_id
    return context.step_context.run_id


def context_lineage(context) -> list[str]:
    return lineage(context.instance, run_id_of(context))


def write_file(context, item: str, data: bytes) -> Path:
    """``data`` as ``item`` (e.g. ``charts/chart_x.png``) of this run's version."""
    return atomic_write_bytes(store().run_dir(run_id_of(context)) / item, data)


def write_stream(context, item: str, write) -> Path:
    """``write(file)`` streamed into ``item`` of this run's version."""
    return atomic_write(store().run_dir(run_id_of(context)) / item, write)


def find_file(context, item: str) -> Path | None:
    """``item`` as this run sees it: its own (or its parent's) version, else the published."""
    return store().find(item, context_lineage(context))


def published_file(item: str) -> Path | None:
    """``item`` of the published snapshot (the state before this run), if there is one."""
    return store().find_published(item)


# --- the writer lock, held by a run from its first step to its last ------------------------------


def hold_writer(instance, run_id: str, log) -> None:
    """Take the storage's writer lock for ``run_id`` (waiting, with a message, if another run
    holds it), and mark a run that was killed while holding it as failed."""
    root = settings.storage_dir()
    abandoned = lock.acquire(root, run_id, settings.lock_wait_seconds(), on_wait=log.warning)
    if abandoned:
        mark_abandoned(instance, abandoned, log)


def mark_abandoned(instance, previous: dict, log=None) -> None:
    """The run that held the lock before and stopped without letting go (killed) is still
    STARTED in Dagster: report it FAILED, saying that nothing of it was published."""
    from dagster import DagsterRunStatus

    run_id = previous.get("run_id")
    run = instance.get_run_by_id(run_id) if (instance is not None and run_id) else None
    if run is None or run.status not in (DagsterRunStatus.STARTED, DagsterRunStatus.STARTING):
        return
    current = store().current_dir()
    published = current is not None and current.name == run_id
    message = (
        f"run {run_id} stopped while writing (its process, pid {previous.get('pid')} on "
        f"{previous.get('host')}, let go of the writer lock without finishing: killed?); "
        + (
            "it had published its snapshot (storage/current names it) just before"
            if published
            else "nothing of it was published"
        )
    )
    instance.report_run_failed(run, message)
    if log is not None:
        log.warning(message)


def let_go_writer() -> None:
    lock.release(settings.storage_dir())
