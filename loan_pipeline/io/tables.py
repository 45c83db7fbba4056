"""The table IO manager: each table asset a Parquet table in the run's own version folder.

Locally a table is one Parquet file under ``runs/<run_id>/tables/<table>/``; on a Dask cluster
(``DASK_SCHEDULER_ADDRESS``) the tables of one row per borrower are written by the workers, a
file per partition, in the same place (or under ``LOAN_PIPELINE_DATASETS``). Analysts query the
published ones through the catalog (``warehouse.duckdb``), rebuilt when a run publishes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dagster import ConfigurableIOManager, InitResourceContext, InputContext, OutputContext

from loan_pipeline import settings
from loan_pipeline.core.runtime import release_memory
from loan_pipeline.io import handoff, runs

if TYPE_CHECKING:
    import pandas as pd


def _on_cluster(table: str) -> bool:
    """Is ``table`` written and read on the Dask cluster (one is configured, and the table is
    one row per borrower)?"""
    return table in settings.PARTITIONED_TABLES and settings.dask_scheduler_address() is not None


def hold_writer_for_run(context: InitResourceContext) -> None:
    if context.run is not None:
        runs.hold_writer(context.instance, context.run.run_id, context.log)


def let_go_after_run(context: InitResourceContext) -> None:
    if context.run is not None:
        runs.let_go_writer()


class TableIOManager(ConfigurableIOManager):
    """Stores each table asset as a Parquet table of the run's version; reads a table from the
    run's own version (or the run it re-executes), else from the published snapshot. Holds the
    storage's writer lock for the whole run."""

    def setup_for_execution(self, context: InitResourceContext) -> None:
        import pandas as pd

        # Steps run with pandas' copy-on-write (the default from pandas 3): selecting columns
        # or rows of a 10-million-row frame copies nothing until something writes to it, and a
        # frame handed from one step to the next cannot be changed under it by its reader.
        pd.set_option("mode.copy_on_write", True)
        hold_writer_for_run(context)

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        let_go_after_run(context)

    def handle_output(self, context: OutputContext, obj: pd.DataFrame) -> None:
        from loan_pipeline.store.tables import write_table

        table = handoff.table_name(context)
        location = runs.store().table_location(context.run_id, table, _on_cluster(table))
        if _on_cluster(table):
            from loan_pipeline.cluster import write_dataset

            written = write_dataset(obj, location)
            context.add_output_metadata(
                {
                    "dagster/row_count": written["rows"],
                    "partitions": len(written["partition_rows"]),
                    "location": location,
                }
            )
            return
        write_table(obj, location)
        handoff.RUN_FRAMES.put(context.run_id, table, obj, handoff.readers(context))
        release_memory()  # the step is done with its working memory
        context.add_output_metadata({"location": location})

    def load_input(self, context: InputContext) -> pd.DataFrame:
        """The table, or only the columns the input asks for (``columns`` in its metadata:
        ``assets.common.columns_of``), from memory when this run holds it, else from storage."""
        from loan_pipeline.store.tables import arrow_frame, read_table

        table = handoff.table_name(context)
        columns = handoff.wanted_columns(context)
        location = locate_table(context, table)
        if _on_cluster(table):
            from loan_pipeline.cluster import read_dataset

            frame = read_dataset(location, columns)
            # a step not written for partitions gets the table whole, in this process
            return frame if handoff.wants_partitions(context) else arrow_frame(frame.compute())
        cached = handoff.held(context, table)
        if cached is not None:
            return cached[columns] if columns else cached
        return read_table(location, columns)


def locate_table(context: InputContext, table: str) -> str:
    """Where the input's table is: made by the run that Dagster names as its source (this run,
    or the one it re-executes), else the published snapshot's."""
    lineage = runs.context_lineage(context)
    upstream = getattr(context, "upstream_output", None)
    source_run = getattr(upstream, "run_id", None) if upstream is not None else None
    if source_run and source_run not in lineage:
        lineage = [source_run, *lineage]
    return _find(table, lineage)


def _find(table: str, lineage: list[str]) -> str:
    """Where ``table`` is for a run of ``lineage`` (``Store.find_table``), or a clear error."""
    location = runs.store().find_table(table, lineage)
    if location is None:
        raise RuntimeError(
            f"table {table!r} is neither made by this run nor published in "
            f"{settings.storage_dir()}: materialize it first"
        )
    return location


def stored_table(context, table: str, columns: list[str] | None = None) -> pd.DataFrame:
    """A table as this run sees it, whole in this process, for a step that needs it only in some
    configurations (it depends on the asset without loading it as an input)."""
    return read_whole(table, _find(table, runs.context_lineage(context)), columns)


def previous_table(table: str, columns: list[str] | None = None) -> pd.DataFrame | None:
    """The table as the published snapshot has it (None if nothing is published)."""
    location = runs.store().find_table(table, [])
    return None if location is None else read_whole(table, location, columns)


def read_whole(table: str, location: str, columns: list[str] | None = None) -> pd.DataFrame:
    if "://" in location:
        from loan_pipeline.cluster import arrow_dataset
        from loan_pipeline.store.tables import arrow_to_pandas

        return arrow_to_pandas(arrow_dataset(location).to_table(columns=columns))
    from loan_pipeline.store.tables import read_table

    return read_table(location, columns)


def locate_own_table(con, context, table: str) -> str:
    """A name to query ``table`` by (as this run sees it) on the DuckDB connection ``con``:
    ``read_parquet`` of its files, or, on object storage, its Arrow dataset registered on
    ``con`` (scanned a file at a time)."""
    location = _find(table, runs.context_lineage(context))
    if "://" in location:
        from loan_pipeline.cluster import arrow_dataset

        name = f"{table}_dataset"
        con.register(name, arrow_dataset(location))
        return name
    files = f"{location}/*.parquet".replace("'", "''")
    return f"read_parquet('{files}')"
