"""History: every snapshot's strategies kept side by side, and a view of the latest.

Why files per snapshot rather than dynamic partitions: a partition per snapshot would make every
asset partitioned (models, charts, checks, the UI's graph) for the sake of one question analysts
ask, "what did we decide for this book, and what did we decide yesterday?". One Parquet file per
snapshot, under ``history/`` of the run's version, carried into every later snapshot when it
publishes, answers it with SQL: the catalog's ``recovery_strategies_history`` view reads them
all, and ``latest_recovery_strategies`` is the newest.
"""

import re

from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from loan_pipeline.assets.common import markdown_table
from loan_pipeline.io import runs
from loan_pipeline.store.snapshots import HISTORY_VIEW, LATEST_VIEW, SOURCE

HISTORY = "history"
# the loan book's columns a history file carries beside the strategies (then the bucket)
ARREARS_COLUMNS = ["Days_Past_Due", "Recovery_Status"]
# DuckDB's memory for copying a snapshot into its history file: past it, DuckDB spills to disk
HISTORY_MEMORY = "1GB"


def snapshot_name(source: dict) -> str:
    """``<file name>@<first 12 of its SHA-256>``: the same book loaded twice is one snapshot."""
    return f"{source['path'].rsplit('/', 1)[-1]}@{source['sha256'][:12]}"


def _file_name(snapshot_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._@-]", "_", snapshot_id) + ".parquet"


@asset(
    group_name="history",
    owners=["team:data-engineering"],
    kinds={"duckdb", "sql", "parquet"},
    deps=["recovery_strategies", "validated_loans"],
    description="Every snapshot's recovery strategies, kept: the catalog's view "
    f"{HISTORY_VIEW} (one row per borrower per snapshot; snapshot_id = file name @ content "
    f"hash) and {LATEST_VIEW} (the newest snapshot). Each row carries the borrower's "
    "Days_Past_Due, Recovery_Status and arrears bucket at that snapshot, what the roll rates "
    "and cure rates compare. A re-run of the same snapshot replaces it.",
)
def strategy_history(context: AssetExecutionContext) -> MaterializeResult:
    import duckdb

    from loan_pipeline.core.arrears import BUCKET_COLUMN, bucket_sql
    from loan_pipeline.io.tables import locate_own_table

    lineage = runs.context_lineage(context)
    store = runs.store()
    source = store.read_json(SOURCE, lineage)  # this run's own ingest (or the published one's)
    snapshot_id = snapshot_name(source)
    item = f"{HISTORY}/{_file_name(snapshot_id)}"
    target = store.run_dir(context.run_id) / item
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    with duckdb.connect() as con:
        # the rows need not keep their order (queries select by snapshot): DuckDB then copies
        # as it reads, in bounded memory
        con.execute("SET preserve_insertion_order = false")
        con.execute(f"SET memory_limit = '{HISTORY_MEMORY}'")
        strategies = locate_own_table(con, context, "recovery_strategies")
        loans = locate_own_table(con, context, "validated_loans")
        # the arrears of each borrower at this snapshot beside its strategy: the roll rates and
        # cure rates of the next snapshot compare them (history files written before these
        # columns lack them; the readers say so)
        con.execute(
            f"""COPY (SELECT ?::VARCHAR AS snapshot_id, ?::VARCHAR AS source_file,
                             to_timestamp(?) AS snapshot_time, s.*,
                             l.{ARREARS_COLUMNS[0]}, l.{ARREARS_COLUMNS[1]},
                             {bucket_sql("l.Days_Past_Due", "l.Recovery_Status")}
                                 AS {BUCKET_COLUMN}
                      FROM {strategies} AS s
                      LEFT JOIN (SELECT Borrower_ID, {", ".join(ARREARS_COLUMNS)} FROM {loans})
                          AS l ON s.Borrower_ID = l.Borrower_ID)
                TO '{_sql(tmp)}' (FORMAT parquet)""",
            [snapshot_id, source["path"], source["loaded_at"]],
        )
        tmp.replace(target)
        files = {p.name: p for p in _published_history()} | {target.name: target}
        listing = "[" + ", ".join(f"'{_sql(p)}'" for p in sorted(files.values())) + "]"
        snapshots = con.execute(
            f"""SELECT snapshot_id, source_file, snapshot_time, count(*) AS borrowers,
                       count(*) FILTER (WHERE recovery_strategy LIKE 'Immediate legal%') AS legal
                FROM read_parquet({listing}, union_by_name = true)
                GROUP BY ALL ORDER BY snapshot_time DESC"""
        ).df()
    # to the second: a reader tells snapshots apart by the minute, not the microsecond
    snapshots["snapshot_time"] = snapshots["snapshot_time"].dt.strftime("%Y-%m-%d %H:%M:%S %Z")
    return MaterializeResult(
        metadata={
            "snapshot_id": snapshot_id,
            "snapshots": len(snapshots),
            "dagster/row_count": int(snapshots["borrowers"].sum()),
            "history": markdown_table(snapshots.head(30)),
            "query_latest": MetadataValue.md(f"```sql\nSELECT * FROM {LATEST_VIEW};\n```"),
        }
    )


def _published_history() -> list:
    folder = runs.published_file(HISTORY)
    return sorted(folder.glob("*.parquet")) if folder is not None else []


def _sql(path) -> str:
    return str(path).replace("'", "''")
