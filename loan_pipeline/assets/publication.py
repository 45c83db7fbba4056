"""Publication: the last step of every run makes the run's outputs the published state, whole.

Every other asset writes into the run's own version folder; this one, which depends on all of
them, runs only when every step before it succeeded, and then publishes in one step
(``store.Store.publish``): tables, models, charts, the export, the model card and the history
together, or, if the run fails or is killed before it, nothing.
"""

from dagster import (
    AssetExecutionContext,
    AssetKey,
    MaterializeResult,
    MetadataValue,
    asset,
)

from loan_pipeline import settings
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
        root = settings.storage_dir()
        store = runs.store()
        lineage = runs.context_lineage(context)
        lock.acquire(
            root, context.run_id, settings.lock_wait_seconds(), on_wait=context.log.warning
        )
        try:
            manifest = store.publish(context.run_id, lineage, settings.keep_days())
            removed = manifest["removed"]
        finally:
            lock.release(root)
        made_here = sorted(i for i, info in manifest["items"].items() if info["run"] in lineage)
        carried = len(manifest["items"]) - len(made_here)
        source = manifest.get("source", {})
        kept = store.published()
        context.log.info(
            f"published snapshot {context.run_id}: {len(made_here)} item(s) from this run, "
            f"{carried} carried over from the previous snapshot"
        )
        return MaterializeResult(
            metadata={
                "snapshot": context.run_id,
                "folder": MetadataValue.path(str(store.run_dir(context.run_id))),
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
