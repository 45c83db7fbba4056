"""Charts: one asset per analyst chart, saved as PNG and shown on the asset page."""

import pandas as pd
from dagster import (
    AssetExecutionContext,
    AssetIn,
    AssetsDefinition,
    MaterializeResult,
    MetadataValue,
    asset,
)

from loan_pipeline import settings
from loan_pipeline.assets.common import png_markdown
from loan_pipeline.core.segmentation import SegmentModel
from loan_pipeline.io import atomic_write_bytes

GROUP = "charts"
OWNERS = ["team:credit-risk"]
KINDS = {"seaborn", "matplotlib"}

# chart asset key -> what it shows
DESCRIPTIONS: dict[str, str] = {
    "chart_loan_amount_distribution": "Loan amount distribution (histogram with a kernel density "
    "curve) and its relation to monthly income.",
    "chart_payment_history_recovery": "Recovery outcome by payment history.",
    "chart_missed_payments_recovery": "Recovery outcome mix by number of missed payments.",
    "chart_income_loan_recovery": "Monthly income against loan amount, coloured by recovery outcome.",
    "chart_correlation_heatmap": "Pearson correlations between every numeric column.",
    "chart_borrower_segments": "Borrower segments in the income / loan-amount plane, and their sizes.",
}


def _publish(context: AssetExecutionContext, fig) -> MaterializeResult:
    from loan_pipeline.core.charts import figure_to_png

    key = context.asset_key.path[-1]
    png = figure_to_png(fig)
    path = atomic_write_bytes(settings.charts_dir() / f"{key}.png", png)
    return MaterializeResult(
        metadata={
            "path": MetadataValue.path(str(path)),
            "size_bytes": len(png),
            "chart": png_markdown(png, key),
        }
    )


def _loans_chart(key: str) -> AssetsDefinition:
    @asset(
        name=key,
        group_name=GROUP,
        owners=OWNERS,
        kinds=KINDS,
        description=DESCRIPTIONS[key],
    )
    def _chart(context: AssetExecutionContext, validated_loans: pd.DataFrame) -> MaterializeResult:
        from loan_pipeline.core.charts import CHARTS

        return _publish(context, CHARTS[key](validated_loans))

    return _chart


@asset(
    group_name=GROUP,
    owners=OWNERS,
    kinds=KINDS,
    description=DESCRIPTIONS["chart_borrower_segments"],
)
def chart_borrower_segments(
    context: AssetExecutionContext, validated_loans: pd.DataFrame, borrower_segments: pd.DataFrame
) -> MaterializeResult:
    from loan_pipeline.core.charts import CHARTS

    return _publish(context, CHARTS["chart_borrower_segments"](validated_loans, borrower_segments))


@asset(
    group_name=GROUP,
    owners=OWNERS,
    kinds=KINDS,
    ins={"cluster_model": AssetIn(input_manager_key="model_io_manager")},
    description="How k was chosen: silhouette, Davies-Bouldin, Calinski-Harabasz and bootstrap "
    "stability for each candidate k, the chosen k marked.",
)
def chart_k_selection(
    context: AssetExecutionContext, cluster_model: SegmentModel
) -> MaterializeResult:
    from loan_pipeline.core.charts import k_selection

    k = len(cluster_model.names)
    return _publish(context, k_selection(cluster_model.selection.table, k))


@asset(
    group_name=GROUP,
    owners=OWNERS,
    kinds=KINDS,
    description="Calibration of the held-out risk scores: observed outcome rate against the "
    "predicted probability, by decile.",
)
def chart_calibration(
    context: AssetExecutionContext, risk_scores: pd.DataFrame
) -> MaterializeResult:
    from loan_pipeline.core.charts import calibration_curve

    return _publish(context, calibration_curve(risk_scores))


loan_charts = [_loans_chart(key) for key in DESCRIPTIONS if key != "chart_borrower_segments"]
chart_assets = [*loan_charts, chart_borrower_segments, chart_k_selection, chart_calibration]
