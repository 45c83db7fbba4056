"""Where outputs live: the DuckDB warehouse for tables, pickle files for models, atomic files.

Every write is all-or-nothing: a table is replaced inside a DuckDB transaction, a file is
written beside its target and renamed over it, so a failed or killed run never leaves a
half-written output and the previous good one stays readable.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from dagster import ConfigurableIOManager, InputContext, OutputContext
from pydantic import Field

from loan_pipeline import settings
from loan_pipeline.core.compute import release_memory, return_large_allocations_to_the_os

if TYPE_CHECKING:
    import pandas as pd

_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temporary file in the same folder and an atomic rename."""
    return atomic_write(path, lambda fh: fh.write(data))


def atomic_write(path: Path, write) -> Path:
    """``write(file)`` into a temporary file beside ``path``, then rename it over ``path``: a
    reader sees the old file or the whole new one. Streams: nothing is held in memory."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a killed run
        stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def arrow_to_pandas(table) -> pd.DataFrame:
    """An Arrow table as pandas, text as Arrow-backed strings (the schemas' text dtype)."""
    import pandas as pd
    import pyarrow as pa

    if isinstance(table, pa.RecordBatchReader):
        table = table.read_all()
    text = pd.StringDtype("pyarrow")
    return table.to_pandas(
        types_mapper=lambda t: text if t in (pa.string(), pa.large_string()) else None
    )


def read_table(database: Path, table: str, columns: list[str] | None = None) -> pd.DataFrame:
    """``SELECT`` the table (or only ``columns``) from a DuckDB file, as pandas through Arrow."""
    import duckdb

    select = ", ".join(f'"{c}"' for c in columns) if columns else "*"
    with duckdb.connect(str(database), read_only=True) as con:
        return arrow_to_pandas(con.sql(f'SELECT {select} FROM "{table}"').to_arrow_table())


def _table_name(context: OutputContext | InputContext) -> str:
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
        import pandas as pd

        pd.set_option("mode.copy_on_write", True)
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


def _readers(context: OutputContext) -> set:
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


def _held(context: InputContext, name: str) -> object | None:
    """The output ``name`` as handed on within this run, if it is held."""
    try:
        step = context.step_context
        run_id = step.run_id
        reader = set(step.assets_def.keys) if step.assets_def is not None else None
    except Exception:  # an InputContext built outside a run
        return None
    return RUN_FRAMES.get(run_id, name, reader)


COLUMNS_TAG = "loan_pipeline/columns."


def _wanted_columns(context: InputContext) -> list[str] | None:
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


def _on_cluster(table: str) -> bool:
    """Is ``table`` kept as a partitioned dataset (a Dask cluster is configured and the table
    is one row per borrower)?"""
    return table in settings.PARTITIONED_TABLES and settings.dask_scheduler_address() is not None


PARTITIONED = "partitioned"


def _drop_other_kind(con, name: str, keep: str) -> None:
    """Drop ``name`` if it is a view and a table is wanted, or the other way round (a run on a
    cluster keeps a view over its dataset; a local run after it, a table)."""
    views = con.execute(
        "SELECT count(*) FROM duckdb_views() WHERE view_name = ? AND NOT internal", [name]
    ).fetchone()[0]
    if keep == "TABLE" and views:
        con.execute(f'DROP VIEW "{name}"')
    elif keep == "VIEW" and not views:
        con.execute(f'DROP TABLE IF EXISTS "{name}"')


PARTITIONED_TAG = "loan_pipeline/partitioned."


def _wants_partitions(context: InputContext) -> bool:
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


def arrow_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Text columns as Arrow-backed strings (the schemas' text dtype), whatever made them."""
    import pandas as pd

    text = pd.StringDtype("pyarrow")
    for name in frame.columns:
        dtype = frame[name].dtype
        if isinstance(dtype, pd.StringDtype) and dtype != text:
            frame[name] = frame[name].astype(text)
    return frame


class DuckDBTableIOManager(ConfigurableIOManager):
    """Stores each table asset as a DuckDB table named after the asset, replaced atomically.

    On a Dask cluster (``DASK_SCHEDULER_ADDRESS``), the tables of one row per borrower
    (``settings.PARTITIONED_TABLES``) are partitioned Parquet datasets instead
    (``loan_pipeline.cluster``), written by the workers, and the warehouse gets a view of the
    same name over the current version when the datasets are on a local disk."""

    database: str | None = Field(
        default=None,
        description="DuckDB file; default $LOAN_PIPELINE_STORAGE/warehouse.duckdb.",
    )

    def _path(self) -> Path:
        return Path(self.database) if self.database else settings.warehouse_path()

    def handle_output(self, context: OutputContext, obj: pd.DataFrame) -> None:
        import duckdb
        import pyarrow as pa

        path = self._path()
        path.parent.mkdir(parents=True, exist_ok=True)
        table = _table_name(context)
        if _on_cluster(table):
            self._write_dataset(context, table, obj)
            return
        arrow = pa.Table.from_pandas(obj, preserve_index=False)
        for i, column in enumerate(arrow.schema):
            if pa.types.is_null(column.type):  # an all-empty text column: keep it text
                arrow = arrow.set_column(i, column.name, arrow.column(i).cast(pa.string()))
        with duckdb.connect(str(path)) as con:
            con.register("incoming_frame", arrow)
            con.execute("BEGIN TRANSACTION")
            _drop_other_kind(con, table, keep="TABLE")
            con.execute(f'CREATE OR REPLACE TABLE "{table}" AS SELECT * FROM incoming_frame')
            con.execute("COMMIT")
            con.unregister("incoming_frame")
        RUN_FRAMES.put(context.run_id, table, obj, _readers(context))
        release_memory()  # the step is done with its working memory
        context.add_output_metadata({"warehouse": str(path), "table": table})

    def load_input(self, context: InputContext) -> pd.DataFrame:
        """The table, or only the columns the input asks for (``columns`` in its metadata:
        ``assets.common.columns_of``), from memory when this run holds it, else from DuckDB."""
        table = _table_name(context)
        columns = _wanted_columns(context)
        if _on_cluster(table):
            from loan_pipeline.cluster import read_dataset

            frame = read_dataset(table, columns)
            # a step not written for partitions gets the table whole, in this process
            return frame if _wants_partitions(context) else arrow_frame(frame.compute())
        cached = _held(context, table)
        if cached is not None:
            return cached[columns] if columns else cached
        return read_table(self._path(), table, columns)

    def _write_dataset(self, context: OutputContext, table: str, obj) -> None:
        import duckdb

        from loan_pipeline.cluster import write_dataset

        written = write_dataset(table, obj)
        metadata = {
            "dagster/row_count": written["rows"],
            "dataset": written["url"],
            "partitions": len(written["partition_rows"]),
        }
        with duckdb.connect(str(self._path())) as con:
            con.execute("BEGIN TRANSACTION")
            if "://" not in written["url"]:  # a local folder: queryable from the warehouse too
                files = f"{written['url']}/*.parquet".replace("'", "''")
                _drop_other_kind(con, table, keep="VIEW")
                con.execute(
                    f"CREATE OR REPLACE VIEW \"{table}\" AS SELECT * FROM read_parquet('{files}')"
                )
                metadata |= {"warehouse": str(self._path()), "table": table}
            else:  # object storage: no view; nothing stale of that name either
                _drop_other_kind(con, table, keep="VIEW")
                con.execute(f'DROP VIEW IF EXISTS "{table}"')
            con.execute("COMMIT")
        context.add_output_metadata(metadata)


class PickleModelIOManager(ConfigurableIOManager):
    """Stores a fitted model as ``models/<asset>.pkl``, written atomically."""

    base_dir: str | None = Field(
        default=None, description="Folder for model files; default $LOAN_PIPELINE_STORAGE/models."
    )

    def _path(self, context: OutputContext | InputContext) -> Path:
        base = Path(self.base_dir) if self.base_dir else settings.models_dir()
        return base / f"{_table_name(context)}.pkl"

    def handle_output(self, context: OutputContext, obj: object) -> None:
        data = pickle.dumps(obj, protocol=5)
        path = atomic_write_bytes(self._path(context), data)
        # later steps of this in-process run get the fitted object itself (they only read it)
        name = f"model:{_table_name(context)}"
        RUN_FRAMES.put(context.run_id, name, obj, _readers(context), size=len(data))
        release_memory()
        context.add_output_metadata({"path": str(path)})

    def load_input(self, context: InputContext) -> object:
        held = _held(context, f"model:{_table_name(context)}")
        if held is not None:
            return held
        with open(self._path(context), "rb") as fh:
            return pickle.load(fh)


def previous_model(asset: str) -> object | None:
    """The model stored by the last successful materialization of ``asset``, if any and readable.

    Read before the new one replaces it, to compare runs (segment matching, drift)."""
    path = settings.models_dir() / f"{asset}.pkl"
    try:
        with open(path, "rb") as fh:
            return pickle.load(fh)
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError):
        return None


def stored_table(table: str) -> pd.DataFrame:
    """A table as the warehouse holds it, for a step that needs it only in some configurations
    (it depends on the asset without loading it as an input, so the usual run does not pay for
    reading it)."""
    import duckdb

    if _on_cluster(table):
        return _dataset_frame(table)
    path = settings.warehouse_path()
    try:
        return read_table(path, table)
    except duckdb.Error as err:
        raise RuntimeError(
            f"table {table!r} is not in the warehouse {path}: materialize it first ({err})"
        ) from err


def _dataset_frame(table: str, columns: list[str] | None = None) -> pd.DataFrame:
    """A cluster's dataset read whole into this process (for steps that need it whole)."""
    from loan_pipeline.cluster import arrow_dataset

    return arrow_to_pandas(arrow_dataset(table).to_table(columns=columns))


def sql_source(con, table: str) -> str:
    """The name to query ``table`` by on the DuckDB connection ``con``: the warehouse table, or,
    when the table is a dataset on a cluster (wherever its files are: a folder or object
    storage), its current version registered on ``con`` (scanned a file at a time)."""
    if not _on_cluster(table):
        return table
    from loan_pipeline.cluster import arrow_dataset

    name = f"{table}_dataset"
    con.register(name, arrow_dataset(table))
    return name


def previous_table(table: str, columns: list[str] | None = None) -> pd.DataFrame | None:
    """The table as the last successful run left it (None if there is none)."""
    import duckdb

    if _on_cluster(table):
        try:
            return _dataset_frame(table, columns)
        except (RuntimeError, OSError):
            return None
    path = settings.warehouse_path()
    if not path.exists():
        return None
    try:
        return read_table(path, table, columns)
    except duckdb.Error:
        return None
