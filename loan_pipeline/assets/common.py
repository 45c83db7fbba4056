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
