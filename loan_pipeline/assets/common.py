"""Metadata helpers shared by the asset modules."""

import base64
import functools
import json
from pathlib import Path

from dagster import MetadataValue

PREVIEW_ROWS = 10


def table_metadata(df) -> dict:
    """Row count and a markdown preview, for every table asset."""
    return {
        "dagster/row_count": len(df),
        "preview": MetadataValue.md(df.head(PREVIEW_ROWS).to_markdown(index=False)),
    }


def markdown_table(df, floatfmt: str = ".3g") -> MetadataValue:
    return MetadataValue.md(df.to_markdown(index=False, floatfmt=floatfmt))


def png_markdown(png: bytes, title: str) -> MetadataValue:
    """A PNG embedded in markdown metadata, so the asset page shows the image itself."""
    encoded = base64.b64encode(png).decode("ascii")
    return MetadataValue.md(f"![{title}](data:image/png;base64,{encoded})")


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
