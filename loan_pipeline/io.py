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

if TYPE_CHECKING:
    import pandas as pd

_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temporary file in the same folder and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a killed run
        stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
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


def _table_name(context: OutputContext | InputContext) -> str:
    return context.asset_key.path[-1]


class _RunFrames:
    """Tables written in this process by the current run, handed to later steps of the same run.

    With the in-process executor every step runs in one process: a step that needs a table the
    run has just written gets the very frame (with copy-on-write, so no step can change another's
    input) instead of reading it back from DuckDB. The warehouse is still written first, so
    what is stored and what is handed on are the same table. Frames of another run, or held past
    ``max_bytes``, are dropped (oldest first); a step in another process reads DuckDB.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.run_id: str | None = None
        self.frames: dict[str, tuple[pd.DataFrame, int]] = {}

    def put(self, run_id: str, table: str, frame: object, size: int | None = None) -> None:
        import pandas as pd

        pd.set_option("mode.copy_on_write", True)
        if run_id != self.run_id:
            self.run_id, self.frames = run_id, {}
        if size is None:
            size = int(frame.memory_usage(index=True, deep=False).sum())
        self.frames.pop(table, None)
        self.frames[table] = (frame, size)
        while self.frames and sum(n for _, n in self.frames.values()) > self.max_bytes:
            self.frames.pop(next(iter(self.frames)))

    def get(self, run_id: str | None, table: str) -> pd.DataFrame | None:
        if run_id is None or run_id != self.run_id or table not in self.frames:
            return None
        held = self.frames[table][0]
        return held.copy(deep=False) if hasattr(held, "copy") else held


RUN_FRAMES = _RunFrames(max_bytes=settings.frame_cache_bytes())
# Output metadata: False for a table no later step of the run reads (kept out of memory).
HAND_OFF = "loan_pipeline/hand_off_in_memory"


class DuckDBTableIOManager(ConfigurableIOManager):
    """Stores each table asset as a DuckDB table named after the asset, replaced atomically."""

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
        arrow = pa.Table.from_pandas(obj, preserve_index=False)
        for i, column in enumerate(arrow.schema):
            if pa.types.is_null(column.type):  # an all-empty text column: keep it text
                arrow = arrow.set_column(i, column.name, arrow.column(i).cast(pa.string()))
        with duckdb.connect(str(path)) as con:
            con.register("incoming_frame", arrow)
            con.execute("BEGIN TRANSACTION")
            con.execute(f'CREATE OR REPLACE TABLE "{table}" AS SELECT * FROM incoming_frame')
            con.execute("COMMIT")
            con.unregister("incoming_frame")
        if (context.definition_metadata or {}).get(HAND_OFF, True):
            RUN_FRAMES.put(context.run_id, table, obj)
        context.add_output_metadata({"warehouse": str(path), "table": table})

    def load_input(self, context: InputContext) -> pd.DataFrame:
        import duckdb

        table = _table_name(context)
        try:
            run_id = context.step_context.run_id  # the run this step belongs to
        except Exception:  # an InputContext built outside a run (tests, direct calls)
            run_id = None
        cached = RUN_FRAMES.get(run_id, table)
        if cached is not None:
            return cached
        with duckdb.connect(str(self._path()), read_only=True) as con:
            return arrow_to_pandas(con.sql(f'SELECT * FROM "{table}"').to_arrow_table())


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
        RUN_FRAMES.put(context.run_id, f"model:{_table_name(context)}", obj, size=len(data))
        context.add_output_metadata({"path": str(path)})

    def load_input(self, context: InputContext) -> object:
        try:
            held = RUN_FRAMES.get(context.step_context.run_id, f"model:{_table_name(context)}")
        except Exception:  # an InputContext built outside a run
            held = None
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


def previous_table(table: str, columns: list[str] | None = None) -> pd.DataFrame | None:
    """The table as the last successful run left it (None if there is none)."""
    import duckdb

    path = settings.warehouse_path()
    if not path.exists():
        return None
    select = ", ".join(f'"{c}"' for c in columns) if columns else "*"
    try:
        with duckdb.connect(str(path), read_only=True) as con:
            return arrow_to_pandas(con.sql(f'SELECT {select} FROM "{table}"').to_arrow_table())
    except duckdb.Error:
        return None
