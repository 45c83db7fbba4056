"""Metadata helpers shared by the asset modules."""

import base64
import functools
import json
from pathlib import Path

from dagster import AssetIn, MetadataValue

PREVIEW_ROWS = 10


def columns_of(*groups: list[str] | str, partitioned: bool = False) -> AssetIn:
    """An input that loads only these columns of a table (in this order, duplicates dropped):
    the warehouse reads just them, and a table held in memory is narrowed without a copy. A
    step that reads a few columns of a ten-million-row book holds those, not the book.

    ``partitioned``: the step applies its functions per partition (``core.partitions``), so on
    a Dask cluster it gets the table as a Dask frame; without it, the table whole."""
    names = [c for g in groups for c in ([g] if isinstance(g, str) else g)]
    metadata: dict = {"columns": list(dict.fromkeys(names))} if names else {}
    if partitioned:
        metadata["partitioned"] = True
    return AssetIn(metadata=metadata)


def partitioned_input() -> AssetIn:
    """An input applied per partition on a Dask cluster (every column)."""
    return columns_of(partitioned=True)


def columns_tags(partitioned: bool = False, **inputs: list[str]) -> dict[str, str]:
    """``columns_of`` for a multi-asset's inputs, as op tags (``io.handoff.COLUMNS_TAG``, and
    with ``partitioned`` ``io.handoff.PARTITIONED_TAG``): its inputs cannot carry metadata beside its specs'
    deps."""
    from loan_pipeline.io.handoff import COLUMNS_TAG, PARTITIONED_TAG

    tags = {COLUMNS_TAG + name: json.dumps(cols) for name, cols in inputs.items()}
    if partitioned:
        tags |= {PARTITIONED_TAG + name: "true" for name in inputs}
    return tags


def table_metadata(df) -> dict:
    """Row count and a markdown preview, for every table asset. A Dask frame gets the preview
    of its first rows only: the IO manager adds its row count once it is written."""
    from loan_pipeline.core.partitions import is_dask

    if is_dask(df):
        return {"preview": markdown_table(df.head(PREVIEW_ROWS, npartitions=1))}
    return {"dagster/row_count": len(df), "preview": markdown_table(df.head(PREVIEW_ROWS))}


def markdown_table(df, headers: dict[str, str] | None = None) -> MetadataValue:
    """A table as markdown metadata, each number rounded to what it means
    (``core.rounding.markdown``); ``headers`` shortens column names so the table fits the page."""
    from loan_pipeline.core.rounding import markdown

    return MetadataValue.md(markdown(df, headers))


def png_image(png: bytes, title: str) -> str:
    """A markdown image of a PNG carried in the text itself (a ``data:`` URI): Dagster's markdown
    viewer has no folder to resolve a relative path against, so a link to the file shows a
    broken image there; the bytes inline always load."""
    encoded = base64.b64encode(png).decode("ascii")
    return f"![{title}](data:image/png;base64,{encoded})"


def png_markdown(png: bytes, title: str) -> MetadataValue:
    """A PNG embedded in markdown metadata, so the asset page shows the image itself."""
    return MetadataValue.md(png_image(png, title))


def column_lineage(columns: dict[str, list[tuple[str, str]]]) -> dict:
    """``dagster/column_lineage`` metadata: each output column with the (asset, column) pairs it
    is computed from, so the UI shows which source columns feed each derived column."""
    from dagster import AssetKey, TableColumnDep, TableColumnLineage

    return {
        "dagster/column_lineage": TableColumnLineage(
            deps_by_column={
                column: [TableColumnDep(asset_key=AssetKey(a), column_name=c) for a, c in deps]
                for column, deps in columns.items()
            }
        )
    }


@functools.cache
def _catalog() -> dict:
    path = Path(__file__).resolve().parents[1] / "schema_catalog.json"
    return json.loads(path.read_text())


def column_schema(model: str):
    """``dagster/column_schema`` metadata of a schema model (``loan_pipeline.schemas``), read from
    ``schema_catalog.json`` so that defining the assets imports neither pandas nor pandera."""
    from dagster import TableColumn, TableColumnConstraints, TableConstraints, TableSchema

    described = _catalog()[model]
    return TableSchema(
        columns=[
            TableColumn(
                name=c["name"],
                type=c["type"],
                description=c["description"],
                constraints=TableColumnConstraints(
                    nullable=c["nullable"], unique=c["unique"], other=c["checks"]
                ),
            )
            for c in described["columns"]
        ],
        constraints=TableConstraints(other=described["checks"]),
    )
