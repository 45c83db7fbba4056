"""Charts: one asset per analyst chart, saved as PNG and shown on the asset page.

The charts are drawn by one step (a subsettable multi-asset): each chart is still its own
asset with its own lineage, history and page, and can be materialized alone, but a full run pays
Dagster's per-step cost (events, input loading) once instead of eight times.

A chart whose inputs, code and libraries have the same digest as one drawn before
(``core.charts.digests_of``) is not drawn again: its PNG is taken from the result store
(``settings.results_dir``), byte for byte what drawing would give. Rendering is most of the
charts' cost and the same whatever the book's size, so a re-run of an unchanged book (a retried
schedule, a re-execution, the tests' many runs of the sample) skips it.
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
from loan_pipeline.store.files import StorageError
from loan_pipeline.store.results import ResultStore

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


def _store(context, key: str, png: bytes, digest: str, reused: bool) -> MaterializeResult:
    path = runs.write_file(context, f"charts/{key}.png", png)
    return MaterializeResult(
        asset_key=key,
        metadata={
            "path": MetadataValue.path(str(path)),
            "size_bytes": len(png),
            "inputs_digest": digest,
            "drawn": "no: the PNG drawn before from the same inputs" if reused else "yes",
            "chart": png_markdown(png, key),
        },
    )


def drawn(keys: list[str], inputs: dict):
    """``(key, figure)`` of each chart of ``keys`` in turn, from its input assets (by asset
    name). The tables may be Dask frames in partitions: the charts are drawn from summaries
    merged from the partitions and a bounded sample (``core.charts.draw``)."""
    from loan_pipeline.core import charts

    return charts.draw(keys, inputs)


def _result_store(context) -> ResultStore | None:
    folder = settings.results_dir()
    if folder is None:
        return None
    results = ResultStore(folder, settings.keep_days())
    try:
        results.prune()
    except OSError as err:
        context.log.warning(f"could not prune the result store {folder}: {err}")
    return results


def pngs(context, keys: list[str], inputs: dict) -> dict[str, tuple[bytes, str, bool]]:
    """``key -> (png, digest, reused)`` of each chart of ``keys``: the PNG kept for its
    digest, else drawn now (and kept). A store that cannot be written is said in the log and
    otherwise changes nothing. The digest shown of a chart not kept says why."""
    from loan_pipeline.core.charts import DIGEST_MAX_ROWS, digests_of, figure_to_png

    results = _result_store(context)
    digests = digests_of(keys, inputs) if results is not None else dict.fromkeys(keys)
    out: dict[str, tuple[bytes, str, bool]] = {}
    unkept = (
        "none: the result store is off"
        if results is None
        else f"none: not kept (a book in partitions, or over {DIGEST_MAX_ROWS:,} rows)"
    )
    for key, digest in digests.items():
        kept = results.get(digest) if results is not None and digest else None
        if kept is not None:
            out[key] = (kept, digest, True)
    for key, fig in drawn([k for k in keys if k not in out], inputs):
        png = figure_to_png(fig)
        out[key] = (png, digests[key] or unkept, False)
        if results is not None and digests[key]:
            try:
                results.put(digests[key], png)
            except StorageError as err:
                context.log.warning(f"{key} drawn but not kept for re-use: {err}")
    return out


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
        made = pngs(context, selected, inputs)
        for key in selected:
            yield _store(context, key, *made[key])

    return draw


draw_charts, draw_history_charts = (chart_step(step) for step in chart_registry.STEPS)
chart_assets = [draw_charts, draw_history_charts]
