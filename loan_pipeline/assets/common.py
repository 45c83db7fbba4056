"""Metadata helpers shared by the asset modules."""

import base64

import pandas as pd
from dagster import MetadataValue

PREVIEW_ROWS = 10


def table_metadata(df: pd.DataFrame) -> dict:
    """Row count and a markdown preview, for every table asset."""
    return {
        "dagster/row_count": len(df),
        "preview": MetadataValue.md(df.head(PREVIEW_ROWS).to_markdown(index=False)),
    }


def markdown_table(df: pd.DataFrame, floatfmt: str = ".3g") -> MetadataValue:
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
