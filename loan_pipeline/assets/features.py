"""Features: the standardised matrix the segmentation and the risk model read."""

from dagster import AssetExecutionContext, MetadataValue, asset

from loan_pipeline.assets.common import column_lineage, column_schema, columns_of, table_metadata
from loan_pipeline.columns import NUMERIC_COLUMNS
from loan_pipeline.domain import CLUSTER_FEATURES, NOTEBOOK_FEATURES
from loan_pipeline.settings import HEAVY_POOL, AnalysisMethod, FeatureConfig


@asset(
    pool=HEAVY_POOL,
    group_name="features",
    owners=["team:data-engineering"],
    kinds={"pandas", "scikit-learn", "duckdb"},
    metadata={"dagster/column_schema": column_schema("ScaledFeatures")},
    ins={"validated_loans": columns_of("Borrower_ID", NUMERIC_COLUMNS, partitioned=True)},
    description="Standardised clustering features keyed by Borrower_ID (by default the notebook's "
    "columns without Age; all ten in notebook mode), with the scaler's means and scales as metadata.",
)
def scaled_features(
    context: AssetExecutionContext,
    config: FeatureConfig,
    analysis: AnalysisMethod,
    validated_loans,
):
    import pandas as pd

    from loan_pipeline.core.features import scale_features
    from loan_pipeline.core.rounding import as_text, rounded_all, text_table
    from loan_pipeline.schemas import ScaledFeatures, validate

    default = NOTEBOOK_FEATURES if analysis.is_notebook else CLUSTER_FEATURES
    columns = list(config.columns) if config.columns else list(default)
    scaled, scaling = scale_features(validated_loans, columns)
    scaled = validate(scaled, ScaledFeatures, source="scaled_features")
    # each feature's mean and scale in its own unit, rounded by what it is (money, a count...)
    means = rounded_all(dict(zip(scaling.columns, scaling.means, strict=True)))
    scales = rounded_all(dict(zip(scaling.columns, scaling.scales, strict=True)))
    stats = pd.DataFrame(
        {
            "feature": scaling.columns,
            "mean": [as_text(c, means[c]) for c in scaling.columns],
            "scale": [as_text(c, scales[c]) for c in scaling.columns],
        }
    )
    context.add_output_metadata(
        {
            **table_metadata(scaled),
            **column_lineage(
                {"Borrower_ID": [("validated_loans", "Borrower_ID")]}
                | {c: [("validated_loans", c)] for c in columns}
            ),
            "features": columns,
            "scaler": MetadataValue.md(text_table(stats)),
            "scaler_means": MetadataValue.json(means),
            "scaler_scales": MetadataValue.json(scales),
        }
    )
    return scaled
