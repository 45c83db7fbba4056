"""Charts: one asset per analyst chart, saved as PNG and shown on the asset page.

The charts are drawn by one step (a subsettable multi-asset): each chart is still its own
asset with its own lineage, history and page, and can be materialized alone, but a full run pays
Dagster's per-step cost (events, input loading) once instead of eight times.
"""

from dagster import (
    AssetExecutionContext,
    AssetIn,
    AssetKey,
    AssetSpec,
    MaterializeResult,
    MetadataValue,
    multi_asset,
)

from loan_pipeline import settings
from loan_pipeline.assets.common import columns_tags, png_markdown
from loan_pipeline.core import chart_registry
from loan_pipeline.io import runs

GROUP = "charts"
OWNERS = ["team:credit-risk"]
KINDS = {"seaborn", "matplotlib"}

# Every chart, with what it shows and what it is drawn from, is in core.chart_registry: the assets
# below are made from it, one step per registry step. An input the charts read columns of comes
# in partitions on a cluster; the others (the model, the small tables) whole.
INPUT_MANAGERS = {"cluster_model": "model_io_manager"}
# the loan book's charts read big tables (and may wait for a slot of the heavy pool); the
# history's charts small ones
POOLS = {chart_registry.BOOK_STEP: settings.HEAVY_POOL}


def _store(context, key: str, fig) -> MaterializeResult:
    from loan_pipeline.core.charts import figure_to_png

    png = figure_to_png(fig)
    path = runs.write_file(context, f"charts/{key}.png", png)
    return MaterializeResult(
        asset_key=key,
        metadata={
            "path": MetadataValue.path(str(path)),
            "size_bytes": len(png),
            "chart": png_markdown(png, key),
        },
    )


def drawn(keys: list[str], inputs: dict):
    """``(key, figure)`` of each chart of ``keys`` in turn, from its input assets (by asset
    name). The tables may be Dask frames in partitions: the charts are drawn from summaries
    merged from the partitions and a bounded sample (``core.charts.draw``)."""
    from loan_pipeline.core import charts

    return charts.draw(keys, inputs)


def chart_step(step: str):
    """The multi-asset drawing the charts of registry step ``step``."""
    keys = chart_registry.keys_of(step)
    table_columns = chart_registry.columns_read(keys)
    inputs = [
        *table_columns,
        *(n for n in chart_registry.inputs_read(keys) if n not in table_columns),
    ]

    @multi_asset(
        name=step,
        pool=POOLS.get(step),
        specs=[
            AssetSpec(
                chart.key,
                deps=list(chart.inputs),
                description=chart.description,
                group_name=GROUP,
                owners=OWNERS,
                kinds=KINDS,
                skippable=True,
            )
            for chart in map(chart_registry.chart, keys)
        ],
        ins={name: AssetIn(input_manager_key=INPUT_MANAGERS.get(name)) for name in inputs},
        can_subset=True,
        # the columns the charts read (of the loan book: every numeric one, for the correlation
        # heatmap), in the table's order; on a Dask cluster these tables stay in partitions: only
        # summaries and samples come here
        op_tags=columns_tags(partitioned=True, **table_columns),
    )
    def draw(context: AssetExecutionContext, **inputs):
        """Draw the selected charts, each from the assets it depends on."""
        selected = [key for key in keys if AssetKey(key) in context.selected_asset_keys]
        for key, fig in drawn(selected, inputs):
            yield _store(context, key, fig)

    return draw


draw_charts, draw_history_charts = (chart_step(step) for step in chart_registry.STEPS)
chart_assets = [draw_charts, draw_history_charts]
