"""Tables as Parquet: one folder per table, written whole or not at all (no Dagster here)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from loan_pipeline.store.files import atomic_folder, explain

if TYPE_CHECKING:
    import pandas as pd

PART = "part.00000.parquet"


def arrow_to_pandas(table) -> pd.DataFrame:
    """An Arrow table as pandas, text as Arrow-backed strings (the schemas' text dtype), and a
    yes/no column as pandas' nullable boolean (by default one with an empty cell would come back
    as Python objects)."""
    import pandas as pd
    import pyarrow as pa

    if isinstance(table, pa.RecordBatchReader):
        table = table.read_all()
    mapped = {pa.string(): pd.StringDtype("pyarrow"), pa.large_string(): pd.StringDtype("pyarrow")}
    mapped[pa.bool_()] = pd.BooleanDtype()
    return table.to_pandas(types_mapper=mapped.get)


def arrow_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Text columns as Arrow-backed strings (the schemas' text dtype), whatever made them."""
    import pandas as pd

    text = pd.StringDtype("pyarrow")
    for name in frame.columns:
        dtype = frame[name].dtype
        if isinstance(dtype, pd.StringDtype) and dtype != text:
            frame[name] = frame[name].astype(text)
    return frame


def to_arrow(frame: pd.DataFrame):
    """``frame`` as an Arrow table to store: no pandas metadata (a table reads back the same
    whoever wrote it), and an all-empty text column kept as text."""
    import pyarrow as pa

    arrow = pa.Table.from_pandas(frame, preserve_index=False)
    for i, column in enumerate(arrow.schema):
        if pa.types.is_null(column.type):
            arrow = arrow.set_column(i, column.name, arrow.column(i).cast(pa.string()))
    return arrow.replace_schema_metadata(None)


def write_table(frame: pd.DataFrame, folder: Path) -> int:
    """``frame`` as the Parquet table ``folder``, all or nothing; returns its row count."""
    import pyarrow.parquet as pq

    arrow = to_arrow(frame)
    atomic_folder(Path(folder), lambda tmp: pq.write_table(arrow, tmp / PART))
    return arrow.num_rows


def read_table(folder: str | Path, columns: list[str] | None = None) -> pd.DataFrame:
    """The Parquet table ``folder`` (or only ``columns``) as pandas."""
    import pyarrow.parquet as pq

    folder = Path(folder)
    try:
        files = sorted(folder.glob("*.parquet"))
        if not files:
            raise FileNotFoundError(f"no Parquet files in {folder}")
        return arrow_to_pandas(pq.ParquetDataset(files).read(columns=columns))
    except OSError as err:
        raise explain(err, "read the table", folder) from err
