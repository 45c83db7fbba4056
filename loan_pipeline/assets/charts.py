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
from loan_pipeline.columns import LOAN_BOOK_COLUMNS, NUMERIC_COLUMNS
from loan_pipeline.io import runs

GROUP = "charts"
OWNERS = ["team:credit-risk"]
KINDS = {"seaborn", "matplotlib"}

# chart asset key -> (what it shows, the assets it is drawn from)
CHART_SPECS: dict[str, tuple[str, list[str]]] = {
    "chart_loan_amount_distribution": (
        "Loan amount distribution (histogram with a kernel density curve) and its relation to "
        "monthly income.",
        ["validated_loans"],
    ),
    "chart_payment_history_recovery": (
        "Recovery outcome by payment history.",
        ["validated_loans"],
    ),
    "chart_missed_payments_recovery": (
        "Recovery outcome mix by number of missed payments.",
        ["validated_loans"],
    ),
    "chart_income_loan_recovery": (
        "Monthly income against loan amount, coloured by recovery outcome.",
        ["validated_loans"],
    ),
    "chart_correlation_heatmap": (
        "Pearson correlations between every numeric column.",
        ["validated_loans"],
    ),
    "chart_borrower_segments": (
        "Borrower segments in the income / loan-amount plane, and their sizes; the title says "
        "whether the segmentation is stable (from cluster_model).",
        ["validated_loans", "borrower_segments", "cluster_model"],
    ),
    "chart_k_selection": (
        "How k was chosen: prediction strength (reproducibility) and the gap statistic (gain "
        "over a structureless book) for each candidate k, the k used marked, the verdict in "
        "the title.",
        ["cluster_model"],
    ),
    "chart_calibration": (
        "Calibration of the held-out risk scores: observed outcome rate against the predicted "
        "probability, by decile.",
        ["risk_scores"],
    ),
    "chart_capacity_gains": (
        "The capacity gain curve: for a worklist of each size, the share of the not fully "
        "recovered (and of the written-off) balance caught, ranked by expected loss against the "
        "score alone, on held-out resolved loans; the current worklist sizes marked.",
        ["capacity_gains"],
    ),
}
DESCRIPTIONS = {key: description for key, (description, _) in CHART_SPECS.items()}


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
    merged from the partitions and a bounded sample (``core.charts.figures``)."""
    from loan_pipeline.core import charts

    tables = charts.figures(
        [key for key in keys if key in charts.TABLE_CHARTS],
        loans=inputs["validated_loans"],
        segments=inputs["borrower_segments"],
        scores=inputs["risk_scores"],
        segmentation=inputs["cluster_model"].segmentation,
    )
    for key in keys:
        if key == "chart_k_selection":
            model = inputs["cluster_model"]
            yield key, charts.k_selection(model.selection)
        elif key == "chart_capacity_gains":  # a small table: drawn as it is
            yield key, charts.capacity_gains(inputs["capacity_gains"])
        else:
            yield next(tables)


@multi_asset(
    name="draw_charts",
    pool=settings.HEAVY_POOL,
    specs=[
        AssetSpec(
            key,
            deps=deps,
            description=description,
            group_name=GROUP,
            owners=OWNERS,
            kinds=KINDS,
            skippable=True,
        )
        for key, (description, deps) in CHART_SPECS.items()
    ],
    ins={
        "validated_loans": AssetIn(),
        "borrower_segments": AssetIn(),
        "risk_scores": AssetIn(),
        "cluster_model": AssetIn(input_manager_key="model_io_manager"),
        "capacity_gains": AssetIn(),
    },
    can_subset=True,
    # the columns the charts read (every numeric one: the correlation heatmap), in book order;
    # on a Dask cluster the tables stay in partitions: only summaries and samples come here
    op_tags=columns_tags(
        partitioned=True,
        validated_loans=[
            c
            for c in LOAN_BOOK_COLUMNS
            if c in NUMERIC_COLUMNS or c in ("Borrower_ID", "Payment_History", "Recovery_Status")
        ],
        borrower_segments=["Borrower_ID", "segment_id", "segment_name"],
        risk_scores=["risk_score", "observed", "score_source"],
    ),
)
def draw_charts(
    context: AssetExecutionContext,
    validated_loans,
    borrower_segments,
    risk_scores,
    cluster_model,
    capacity_gains,
):
    """Draw the selected charts, each from the assets it depends on."""
    inputs = {
        "validated_loans": validated_loans,
        "borrower_segments": borrower_segments,
        "risk_scores": risk_scores,
        "cluster_model": cluster_model,
        "capacity_gains": capacity_gains,
    }
    selected = [key for key in CHART_SPECS if AssetKey(key) in context.selected_asset_keys]
    for key, fig in drawn(selected, inputs):
        yield _store(context, key, fig)


chart_assets = [draw_charts]
