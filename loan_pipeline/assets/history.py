"""History: every snapshot's strategies kept side by side, and a view of the latest.

Why files per snapshot rather than dynamic partitions: a partition per snapshot would make every
asset partitioned (models, charts, checks, the UI's graph) for the sake of one question analysts
ask, "what did we decide for this book, and what did we decide yesterday?". One Parquet file per
snapshot, under ``history/`` of the run's version, carried into every later snapshot when it
publishes, answers it with SQL: the catalog's ``recovery_strategies_history`` view reads them
all, and ``latest_recovery_strategies`` is the newest.
"""

import re
from typing import NamedTuple

from dagster import (
    AssetCheckResult,
    AssetCheckSpec,
    AssetExecutionContext,
    MaterializeResult,
    MetadataValue,
    Output,
    asset,
)

from loan_pipeline import settings
from loan_pipeline.assets.common import column_schema, markdown_table, table_metadata
from loan_pipeline.domain import BUCKET_COLUMN, EXPERIMENT_COLUMNS
from loan_pipeline.io import runs
from loan_pipeline.store.snapshots import HISTORY_VIEW, LATEST_VIEW, SOURCE

HISTORY = "history"
# the loan book's columns a history file carries beside the strategies (then the bucket)
ARREARS_COLUMNS = ["Days_Past_Due", "Recovery_Status"]
# DuckDB's memory for copying a snapshot into its history file: past it, DuckDB spills to disk.
# The join with the loan book's arrears holds the book's ids: for 10,000,000 borrowers about
# 1.3 GB, so at 1 GB the copy spilled (30 s against 6 s, measured); a larger book spills within
# the same bound.
HISTORY_MEMORY = "2GB"


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

    from loan_pipeline.core.arrears import bucket_sql
    from loan_pipeline.io.tables import locate_own_table

    lineage = runs.context_lineage(context)
    store = runs.store()
    source = store.read_json(SOURCE, lineage)  # this run's own ingest (or the published one's)
    snapshot_id = snapshot_name(source)
    item = f"{HISTORY}/{_file_name(snapshot_id)}"
    target = store.run_dir(context.run.run_id) / item
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


# --- collections over time: roll rates, their forecast, cure rates ----------------------------

NO_PREVIOUS = "first snapshot: nothing to compare yet"
ROWS_CHECK = "rows_sum_to_one"
# what a history file must hold for the roll rates, cure rates and back-test to compare it
COMPARED_COLUMNS = [
    "Borrower_ID",
    "Outstanding_Loan_Amount",
    "segment_name",
    "recovery_strategy",
    *ARREARS_COLUMNS,
    BUCKET_COLUMN,
    "risk_score",  # the back-test's score bands
]


class SnapshotPair(NamedTuple):
    """This run's snapshot and the one before it, as their history files hold them; ``reason``
    says why there is nothing to compare (then ``previous`` is None)."""

    previous: object  # pandas frame or None
    current: object
    previous_id: str
    snapshot_id: str
    reason: str


def snapshot_pair(context: AssetExecutionContext, optional: list[str] = ()) -> SnapshotPair:
    """This run's history rows, and those of the newest published snapshot before it: another
    snapshot_id, earlier in snapshot_time (a re-run of the same book compares with the one
    before, not with itself). ``optional``: more columns read where the files hold them (a file
    without them, or with them all empty, is still compared)."""
    lineage = runs.context_lineage(context)
    source = runs.store().read_json(SOURCE, lineage)
    snapshot_id = snapshot_name(source)
    own = runs.store().find(f"{HISTORY}/{_file_name(snapshot_id)}", lineage)
    if own is None:
        raise FileNotFoundError(f"no history file of snapshot {snapshot_id}: run strategy_history")
    others = tuple(p for p in _published_history() if p.name != own.name)
    key = (snapshot_id, source["loaded_at"], *(_identity(p) for p in (own, *others)))
    pair = _KEPT.get(key)
    if pair is None:
        pair = _read_pair(own, others, snapshot_id, source["loaded_at"])
        _KEPT.clear()
        if len(pair.current) <= KEEP_ROWS:
            _KEPT[key] = pair
    wanted = [*COMPARED_COLUMNS, *optional]
    return pair._replace(
        previous=None if pair.previous is None else _columns(pair.previous, wanted),
        current=_columns(pair.current, wanted),
    )


# The five comparisons (roll rates, forecast, cure rates, back-test, uplift) read the same two
# snapshots: the last pair read is kept in this process for the next of them, by the files'
# identities (path, size, modification time), up to a book of KEEP_ROWS borrowers (about
# 0.5 GB for both snapshots); a larger book is read by each, so its peak memory stays the
# steps' own.
KEEP_ROWS = 2_000_000
_KEPT: dict[tuple, SnapshotPair] = {}


def _identity(path) -> tuple:
    stat = path.stat()
    return (str(path), stat.st_size, stat.st_mtime_ns)


def _columns(frame, wanted: list[str]):
    """``frame``'s columns among ``wanted``: a new frame (selecting a list of columns copies),
    so a step that changes it leaves the kept one as read."""
    return frame[[c for c in wanted if c in frame.columns]]


def _read_pair(own, others: tuple, snapshot_id: str, loaded_at: float) -> SnapshotPair:
    """The pair as the files hold it: the compared columns and every optional one (the
    experiment's) where the files hold them."""
    import duckdb

    optional = EXPERIMENT_COLUMNS
    with duckdb.connect() as con:
        # only the columns compared: a snapshot of millions of borrowers stays a few columns
        own_file = f"'{_sql(own)}'"
        current = con.sql(
            f"SELECT {_compared_columns(con, own_file, optional)} FROM read_parquet({own_file})"
        ).to_arrow_table()
        if not others:
            return SnapshotPair(None, *_frames(current), "", snapshot_id, NO_PREVIOUS)
        listing = "[" + ", ".join(f"'{_sql(p)}'" for p in others) + "]"
        found = con.execute(
            f"""SELECT snapshot_id FROM read_parquet({listing}, union_by_name = true)
                WHERE snapshot_id <> ? AND snapshot_time < to_timestamp(?)
                GROUP BY snapshot_id ORDER BY max(snapshot_time) DESC LIMIT 1""",
            [snapshot_id, loaded_at],
        ).fetchall()
        if not found:
            return SnapshotPair(None, *_frames(current), "", snapshot_id, NO_PREVIOUS)
        previous_id = found[0][0]
        previous = con.sql(
            f"""SELECT {_compared_columns(con, listing, optional)}
                FROM read_parquet({listing}, union_by_name = true) WHERE snapshot_id = ?""",
            params=[previous_id],
        ).to_arrow_table()
    previous, current = _frames(previous, current)
    lacking = [c for c in COMPARED_COLUMNS if c not in previous.columns or previous[c].isna().all()]
    if lacking:
        # a history file written before the files carried the arrears: said, not a crash
        return SnapshotPair(
            None,
            current,
            previous_id,
            snapshot_id,
            f"the previous snapshot {previous_id} was recorded without {lacking} (a history "
            "file older than the roll rates): nothing to compare until the next snapshot",
        )
    return SnapshotPair(previous, current, previous_id, snapshot_id, "")


def _frames(*tables) -> list:
    """Arrow tables (the snapshots' rows) as pandas frames. A text column that is filled in
    every table stays Arrow strings: a million borrowers' ids and strategies are not made into
    Python strings one by one. One with an empty cell in any of them is Python strings and
    None in all, as the comparisons filter on it and compare it across the snapshots."""
    import pandas as pd
    import pyarrow as pa

    def is_text(arrow_type) -> bool:
        return pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type)

    def filled_text(name: str) -> bool:
        return all(
            is_text(t.schema.field(name).type) and not t.column(name).null_count
            for t in tables
            if name in t.column_names
        )

    arrow_text = pd.StringDtype("pyarrow")
    frames = []
    for table in tables:
        frame = table.to_pandas(types_mapper=lambda t: arrow_text if is_text(t) else None)
        for name in table.column_names:
            if is_text(table.schema.field(name).type) and not filled_text(name):
                frame[name] = table.column(name).to_pandas()
        frames.append(frame)
    return frames


def _compared_columns(con, files: str, optional: list[str] = ()) -> str:
    """The COMPARED_COLUMNS (and ``optional`` ones) that ``files`` hold (an older history file
    lacks the arrears)."""
    held = {
        row[0]
        for row in con.execute(
            f"DESCRIBE SELECT * FROM read_parquet({files}, union_by_name = true)"
        ).fetchall()
    }
    return ", ".join(f'"{c}"' for c in [*COMPARED_COLUMNS, *optional] if c in held)


def _of_snapshots(table, pair: SnapshotPair):
    table.insert(0, "snapshot", pair.snapshot_id)
    table.insert(0, "previous_snapshot", pair.previous_id)
    return table


def _compared(pair: SnapshotPair) -> dict:
    """What was compared: the snapshots, and the borrowers in both, gone, new; or why not."""
    if pair.reason:
        return {"compared": pair.reason, "snapshot": pair.snapshot_id}
    before = set(pair.previous["Borrower_ID"].astype(str))
    after = set(pair.current["Borrower_ID"].astype(str))
    return {
        "compared": f"{pair.previous_id} -> {pair.snapshot_id}",
        "previous_snapshot": pair.previous_id,
        "snapshot": pair.snapshot_id,
        "borrowers_in_both": len(before & after),
        "left_the_book": len(before - after),
        "new_to_the_book": len(after - before),
    }


@asset(
    group_name="history",
    owners=["team:credit-risk"],
    kinds={"pandas", "duckdb"},
    deps=["strategy_history"],
    metadata={"dagster/column_schema": column_schema("RollRates")},
    check_specs=[
        AssetCheckSpec(
            ROWS_CHECK,
            asset="roll_rates",
            description="Every from_bucket's shares (and balance shares, where it has a "
            "balance) sum to 1: every borrower of both snapshots is counted once.",
        )
    ],
    description="The roll-rate matrix between the previous published snapshot and this run's: "
    "per arrears bucket at t (current, 1-30, 31-60, 61-90, 90+ days past due, resolved) the "
    "borrowers and balance in each bucket at t+1, with their shares (each row sums to 1). "
    "Borrowers gone at t+1 go to 'left the book'; borrowers new at t+1 form the row 'new to "
    "the book'. Empty on the first snapshot (the metadata says why).",
)
def roll_rates(context: AssetExecutionContext):
    from loan_pipeline.core.roll_rates import (
        empty_matrix,
        matrix_markdown,
        roll_rate_matrix,
        rows_sum_to_one,
    )
    from loan_pipeline.schemas import RollRates, validate

    pair = snapshot_pair(context)
    matrix = empty_matrix() if pair.reason else roll_rate_matrix(pair.previous, pair.current)
    matrix = validate(_of_snapshots(matrix, pair), RollRates, source="roll_rates")
    bad = rows_sum_to_one(matrix)
    yield Output(
        matrix,
        metadata={
            **table_metadata(matrix),
            **_compared(pair),
            "matrix": MetadataValue.md(
                "share of the from-row's borrowers (count); n: the from-row's borrowers\n\n"
                + matrix_markdown(matrix)
            ),
        },
    )
    yield AssetCheckResult(
        check_name=ROWS_CHECK,
        asset_key="roll_rates",
        passed=not bad,
        metadata={
            "rows_off": "; ".join(bad) or "none",
            "from_rows": matrix["from_bucket"].nunique(),
        },
    )


@asset(
    group_name="history",
    owners=["team:credit-risk"],
    kinds={"pandas"},
    deps=["strategy_history"],
    metadata={"dagster/column_schema": column_schema("ArrearsForecast")},
    description="Next cycle's expected arrears mix (borrowers and balance per bucket, and the "
    "expected leavers), from this snapshot's mix moved by the roll rates, assumed the same next "
    "cycle. Newcomers are not forecast. Empty on the first snapshot.",
)
def arrears_forecast(context: AssetExecutionContext, roll_rates):
    from loan_pipeline.core.roll_rates import bucket_mix, empty_forecast, flow_forecast
    from loan_pipeline.schemas import ArrearsForecast, validate

    pair = snapshot_pair(context)
    rates = roll_rates.drop(columns=["previous_snapshot", "snapshot"])
    forecast = empty_forecast() if rates.empty else flow_forecast(rates, bucket_mix(pair.current))
    forecast = validate(_of_snapshots(forecast, pair), ArrearsForecast, "arrears_forecast")
    return Output(
        forecast,
        metadata={
            **table_metadata(forecast),
            **_compared(pair),
            "assumption": "next cycle moves as this one did: the same roll rates; no newcomers",
            "forecast": markdown_table(forecast.drop(columns=["previous_snapshot", "snapshot"])),
        },
    )


@asset(
    group_name="history",
    owners=["team:credit-risk"],
    kinds={"pandas", "duckdb"},
    deps=["strategy_history"],
    metadata={"dagster/column_schema": column_schema("CureRates")},
    description="Cure rates between the previous published snapshot and this run's: of the "
    "borrowers delinquent at t (open loan, Days_Past_Due > 0) and still on the book at t+1, the "
    "share current or Fully Recovered at t+1, with a 95% Wilson interval; overall, by arrears "
    "bucket, by segment and by recovery strategy at t. Empty on the first snapshot.",
)
def cure_rates(context: AssetExecutionContext):
    from loan_pipeline.core.roll_rates import cure_rates as cures
    from loan_pipeline.core.roll_rates import empty_cure_rates
    from loan_pipeline.schemas import CureRates, validate

    pair = snapshot_pair(context)
    table = empty_cure_rates() if pair.reason else cures(pair.previous, pair.current)
    table = validate(_of_snapshots(table, pair), CureRates, source="cure_rates")
    return Output(
        table,
        metadata={
            **table_metadata(table),
            **_compared(pair),
            "cure_rates": markdown_table(table.drop(columns=["previous_snapshot", "snapshot"])),
        },
    )


# --- the strategy back-test ---------------------------------------------------------------------


@asset(
    group_name="history",
    owners=["team:credit-risk"],
    kinds={"pandas", "duckdb"},
    deps=["strategy_history"],
    metadata={"dagster/column_schema": column_schema("StrategyBacktest")},
    description="The strategy back-test between the previous published snapshot and this run's: "
    "of the borrowers with a strategy and an open loan at t resolved at t+1, the outcome mix, "
    "the Fully Recovered share (95% Wilson interval), the balance at t and the recovered "
    "balance (an assumption: Partially Recovered recovers BacktestConfig.partial_recovery_share "
    "of it) by strategy and risk-score band (and by segment), and each strategy's Fully "
    "Recovered share minus the reference strategy's for the same risk (same band; pooled over "
    "the bands, standardised, for every pair of strategies sharing a band: legal action against "
    "settlement too), with 95% intervals. Empty on the first snapshot.",
)
def strategy_backtest(context: AssetExecutionContext, config: settings.BacktestConfig):
    from loan_pipeline.core.backtest import (
        BY_BAND,
        cycle_counts,
        empty_backtest,
        headline,
    )
    from loan_pipeline.core.backtest import strategy_backtest as backtest
    from loan_pipeline.domain import STRATEGY_SHORT
    from loan_pipeline.schemas import StrategyBacktest, validate

    pair = snapshot_pair(context)
    if pair.reason:
        table, counts = empty_backtest(), {}
    else:
        table = backtest(
            pair.previous,
            pair.current,
            reference=config.reference_strategy,
            partial_share=config.partial_recovery_share,
            band_width=config.score_band_width,
        )
        counts = cycle_counts(pair.previous, pair.current)
    table = validate(_of_snapshots(table, pair), StrategyBacktest, source="strategy_backtest")
    shown = table[table["group_by"] != "segment_name"].assign(
        recovery_strategy=lambda t: t["recovery_strategy"].map(STRATEGY_SHORT),
        reference_strategy=lambda t: t["reference_strategy"].map(STRATEGY_SHORT),
    )
    columns = ["group_by", "group", "recovery_strategy", "resolved", "share_fully_recovered",
               "ci_low", "ci_high", "recovery_rate", "reference_strategy", "difference",
               "difference_low", "difference_high"]  # fmt: skip
    return Output(
        table,
        metadata={
            **table_metadata(table),
            **_compared(pair),
            **counts,
            "reference_strategy": config.reference_strategy,
            "partial_recovery_share": config.partial_recovery_share,
            "score_bands": int(table.loc[table["group_by"] == BY_BAND, "group"].nunique()),
            "headline": pair.reason or headline(table),
            "backtest": markdown_table(shown[columns]),
        },
    )
