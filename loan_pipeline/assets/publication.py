"""Publication: the last step of every run makes the run's outputs the published state, whole.

Every other asset writes into the run's own version folder; this one, which depends on all of
them, runs only when every step before it succeeded, and then publishes in one step
(``store.Store.publish``): tables, models, charts, the export, the model card and the history
together, or, if the run fails or is killed before it, nothing.
"""

from collections.abc import Sequence

from dagster import (
    AssetExecutionContext,
    AssetKey,
    DagsterEventType,
    DagsterInstance,
    MaterializeResult,
    MetadataValue,
    asset,
)

from loan_pipeline import settings
from loan_pipeline.assets.monitoring import MODEL_CARD
from loan_pipeline.assets.risk import EXPORT
from loan_pipeline.core import run_summary
from loan_pipeline.io import runs
from loan_pipeline.io.models import digest_key
from loan_pipeline.store import lock
from loan_pipeline.store.snapshots import CATALOG, snapshot_schema

PUBLISHED = "published_snapshot"


def publication_asset(upstream: list[AssetKey]):
    @asset(
        name=PUBLISHED,
        group_name="publication",
        owners=["team:data-engineering"],
        kinds={"duckdb", "parquet"},
        deps=upstream,
        description="Publishes the run: once every other step of the run has succeeded, its "
        "tables, models, charts, export, model card and history become the published snapshot "
        "in one step (storage/current, and the views of storage/warehouse.duckdb). A run that "
        "fails or is killed before this step publishes nothing. A successful run without this "
        "step (a hand-picked selection) is published by the next run that has it.",
    )
    def published_snapshot(context: AssetExecutionContext):
        run_id = context.run.run_id
        root = settings.storage_dir()
        store = runs.store()
        lineage = runs.context_lineage(context)
        lock.acquire(root, run_id, settings.lock_wait_seconds(), on_wait=context.log.warning)
        try:
            manifest = store.publish(run_id, lineage, settings.keep_days())
            removed = manifest["removed"]
        finally:
            lock.release(root)
        made_here = sorted(i for i, info in manifest["items"].items() if info["run"] in lineage)
        carried = len(manifest["items"]) - len(made_here)
        source = manifest.get("source", {})
        kept = store.published()
        context.log.info(
            f"published snapshot {run_id}: {len(made_here)} item(s) from this run, "
            f"{carried} carried over from the previous snapshot"
        )
        # Every step of the run but this one has ended (this step depends on them all, and
        # every check runs inside its asset's step): the events read here are the whole run's,
        # this step's materialization aside, which is said as made (it is, on return).
        # The snapshot is published by now: a summary that cannot be made must not fail the
        # step (the run would then say FAILED beside a published snapshot); it says why instead.
        try:
            summary = summary_of_run(
                context.instance,
                run_id,
                context.job_def.asset_layer.asset_graph.toposorted_asset_keys,
                run_summary.published_line(None, manifest, run_id),
                also_made=[PUBLISHED],
            )
        except Exception as err:  # noqa: BLE001 - any failure here is reported, not raised
            summary = (
                f"(no run summary: {type(err).__name__}: {err})\n"
                + run_summary.published_line(None, manifest, run_id)
            )
        # the run's last log entry: what `python -m loan_pipeline run` prints at its end
        context.log.info(summary)
        return MaterializeResult(
            metadata={
                "run_summary": MetadataValue.md(f"```\n{summary}\n```"),
                "snapshot": run_id,
                "folder": MetadataValue.path(str(store.run_dir(run_id))),
                "catalog": MetadataValue.path(str(root / CATALOG)),
                "source_file": str(source.get("path", "")),
                "source_sha256": str(source.get("sha256", "")),
                "items_from_this_run": len(made_here),
                "items_carried_over": carried,
                "snapshots_kept": MetadataValue.md(
                    "\n".join(
                        f"- `{m['snapshot']}` (schema `{snapshot_schema(m['snapshot'])}`)"
                        for m in kept
                    )
                ),
                "versions_removed": len(removed),
                # checked before a published model (or the drift baseline's frozen model) is
                # loaded (io/models.py): the event log is outside the storage folder, so
                # editing the manifest cannot vouch for a file
                "model_sha256": MetadataValue.json(
                    {
                        digest_key(item): info["sha256"]
                        for item, info in manifest["items"].items()
                        if item.endswith(".pkl") and "sha256" in info
                    }
                ),
            }
        )

    return published_snapshot


def published_paths() -> dict[str, str]:
    """Where a reader finds the published outputs, by label (the run summary's last lines)."""
    root = settings.storage_dir()
    return {
        "Warehouse": f"{root / CATALOG} (the catalog: views over the published tables)",
        "Charts": str(settings.charts_dir()),
        "Export": str(root / EXPORT),
        "Model card": str(root / MODEL_CARD),
    }


def run_events(instance: DagsterInstance, run_id: str) -> tuple[list, list]:
    """The run's materializations and asset check evaluations in the event log, in the order
    they happened, as plain data (``run_summary.Materialized`` and ``CheckResult``)."""
    kinds = {DagsterEventType.ASSET_MATERIALIZATION, DagsterEventType.ASSET_CHECK_EVALUATION}
    made, checks, cursor = [], [], None
    while True:
        page = instance.get_records_for_run(run_id, cursor=cursor, of_type=kinds)
        for record in page.records:
            event = record.event_log_entry.dagster_event
            data = event.event_specific_data
            if event.event_type == DagsterEventType.ASSET_MATERIALIZATION:
                m = data.materialization
                made.append(
                    run_summary.Materialized(m.asset_key.to_user_string(), _plain(m.metadata))
                )
            else:
                checks.append(
                    run_summary.CheckResult(
                        asset=data.asset_key.to_user_string(),
                        name=data.check_name,
                        passed=data.passed,
                        severity=data.severity.value,
                        description=data.description,
                        metadata=_plain(data.metadata),
                    )
                )
        if not page.has_more:
            return made, checks
        cursor = page.cursor


def _plain(metadata) -> dict:
    return {key: value.value for key, value in metadata.items()}


def summary_of_run(
    instance: DagsterInstance,
    run_id: str,
    toposorted: Sequence[AssetKey],
    published: str,
    also_made: Sequence[str] = (),
) -> str:
    """The run summary of ``run_id`` from its own events: its assets in the order of
    ``toposorted`` (the asset graph's), with ``also_made`` (keys materialized but not yet in
    the log), its checks, policy, paths and the ``published`` line."""
    made, checks = run_events(instance, run_id)
    made += [run_summary.Materialized(key) for key in also_made]
    order = [key.to_user_string() for key in toposorted]
    return run_summary.summary(
        run_id,
        run_summary.graph_order(order, made),
        checks,
        published_paths(),
        published,
    )
