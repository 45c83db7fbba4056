"""History: every snapshot's strategies kept side by side, and a view of the latest.

Why an archive table rather than dynamic partitions: a partition per snapshot would make every
asset partitioned (models, charts, checks, the UI's graph) for the sake of one question analysts
ask, "what did we decide for this book, and what did we decide yesterday?". One DuckDB table with
a snapshot column answers it with SQL, and `latest_recovery_strategies` makes today the obvious
view.
"""

from dagster import AssetExecutionContext, AssetKey, MaterializeResult, MetadataValue, asset

from loan_pipeline import settings
from loan_pipeline.assets.common import markdown_table

HISTORY_TABLE = "recovery_strategies_history"
LATEST_VIEW = "latest_recovery_strategies"
HISTORY_MEMORY = "1GB"  # DuckDB's memory for writing a snapshot into the history table


def _source_of_this_snapshot(context: AssetExecutionContext) -> tuple[str, str, float]:
    event = context.instance.get_latest_materialization_event(AssetKey("raw_loans"))
    md = event.asset_materialization.metadata
    path = str(md["source_path"].value)
    sha = str(md["source_sha256"].value)
    return path, sha, float(event.timestamp)


@asset(
    group_name="history",
    owners=["team:data-engineering"],
    kinds={"duckdb", "sql"},
    deps=["recovery_strategies"],
    description="Every snapshot's recovery strategies, kept: the table recovery_strategies_history "
    "(one row per borrower per snapshot; snapshot_id = file name @ content hash) and the view "
    "latest_recovery_strategies (the newest snapshot). A re-run of the same snapshot replaces it.",
)
def strategy_history(context: AssetExecutionContext) -> MaterializeResult:
    import duckdb

    from loan_pipeline.io import sql_source

    path, sha, loaded_at = _source_of_this_snapshot(context)
    snapshot_id = f"{path.rsplit('/', 1)[-1]}@{sha[:12]}"
    with duckdb.connect(str(settings.warehouse_path())) as con:
        # A snapshot is every borrower's row: streamed into the table in bounded memory. The
        # rows need not keep their order (every query selects by snapshot), which lets DuckDB
        # insert as it reads; past the limit it spills to disk. (Unbounded, a 10,000,000-row
        # snapshot took the Dagster process to 4.35 GB.)
        con.execute("SET preserve_insertion_order = false")
        con.execute(f"SET memory_limit = '{HISTORY_MEMORY}'")
        strategies = sql_source(con, "recovery_strategies")  # a table, or a cluster's dataset
        con.execute("BEGIN TRANSACTION")
        con.execute(
            f"""CREATE TABLE IF NOT EXISTS {HISTORY_TABLE} AS
                SELECT ''::VARCHAR AS snapshot_id, ''::VARCHAR AS source_file,
                       now()::TIMESTAMPTZ AS snapshot_time, *
                FROM {strategies} WHERE false"""
        )
        con.execute(f"DELETE FROM {HISTORY_TABLE} WHERE snapshot_id = ?", [snapshot_id])
        con.execute(
            f"""INSERT INTO {HISTORY_TABLE} BY NAME
                SELECT ? AS snapshot_id, ? AS source_file, to_timestamp(?) AS snapshot_time, *
                FROM {strategies}""",
            [snapshot_id, path, loaded_at],
        )
        con.execute(
            f"""CREATE OR REPLACE VIEW {LATEST_VIEW} AS
                SELECT * FROM {HISTORY_TABLE}
                WHERE snapshot_time = (SELECT max(snapshot_time) FROM {HISTORY_TABLE})"""
        )
        con.execute("COMMIT")
        snapshots = con.execute(
            f"""SELECT snapshot_id, source_file, snapshot_time, count(*) AS borrowers,
                       count(*) FILTER (WHERE recovery_strategy LIKE 'Immediate legal%') AS legal
                FROM {HISTORY_TABLE} GROUP BY ALL ORDER BY snapshot_time DESC"""
        ).df()
    snapshots["snapshot_time"] = snapshots["snapshot_time"].astype(str)
    return MaterializeResult(
        metadata={
            "snapshot_id": snapshot_id,
            "snapshots": len(snapshots),
            "dagster/row_count": int(snapshots["borrowers"].sum()),
            "history": markdown_table(snapshots.head(30)),
            "query_latest": MetadataValue.md(f"```sql\nSELECT * FROM {LATEST_VIEW};\n```"),
        }
    )
