"""Segmentation: the KMeans model and the borrower segment table."""

import pandas as pd
from dagster import AssetExecutionContext, AssetIn, MetadataValue, asset

from loan_pipeline.assets.common import markdown_table, table_metadata
from loan_pipeline.core.features import feature_matrix
from loan_pipeline.core.segmentation import (
    SegmentModel,
    assign_segments,
    fit_segments,
    segment_profile,
)
from loan_pipeline.schemas import BorrowerSegments, table_schema, validate
from loan_pipeline.settings import ClusterConfig

GROUP = "segmentation"
OWNERS = ["team:credit-risk"]


@asset(
    group_name=GROUP,
    owners=OWNERS,
    kinds={"scikit-learn"},
    io_manager_key="model_io_manager",
    description="KMeans fitted on the scaled features (k, random_state, n_init from config); "
    "segments are numbered by centroid burden and named from their centroids.",
)
def cluster_model(
    context: AssetExecutionContext, config: ClusterConfig, scaled_features: pd.DataFrame
) -> SegmentModel:
    features = [c for c in scaled_features.columns if c != "Borrower_ID"]
    model = fit_segments(
        feature_matrix(scaled_features),
        features,
        k=config.k,
        random_state=config.random_state,
        n_init=config.n_init,
    )
    sizes = {model.names[s]: n for s, n in model.sizes.items()}
    centroids = model.centroids.assign(segment_name=[model.names[s] for s in model.centroids.index])
    context.add_output_metadata(
        {
            "k": config.k,
            "inertia": model.metrics["inertia"],
            "silhouette": model.metrics["silhouette"],
            "silhouette_sample": int(model.metrics["silhouette_sample"]),
            "cluster_sizes": MetadataValue.json(sizes),
            "centroids (standardised)": markdown_table(centroids.reset_index(), floatfmt=".2f"),
        }
    )
    return model


@asset(
    group_name=GROUP,
    owners=OWNERS,
    kinds={"pandas", "duckdb"},
    metadata={"dagster/column_schema": table_schema(BorrowerSegments)},
    ins={"cluster_model": AssetIn(input_manager_key="model_io_manager")},
    description="One row per borrower: segment id (0 = lowest centroid burden) and segment name "
    "(from the centroid); the segment profile (size, mean of each feature) as metadata.",
)
def borrower_segments(
    context: AssetExecutionContext,
    validated_loans: pd.DataFrame,
    scaled_features: pd.DataFrame,
    cluster_model: SegmentModel,
) -> pd.DataFrame:
    segments = assign_segments(
        cluster_model, scaled_features["Borrower_ID"], feature_matrix(scaled_features)
    )
    segments = validate(segments, BorrowerSegments, source="borrower_segments")
    profile = segment_profile(validated_loans, segments, cluster_model.features)
    context.add_output_metadata(
        {
            **table_metadata(segments),
            "segment_profile": markdown_table(profile),
            "segment_sizes": MetadataValue.json(segments["segment_name"].value_counts().to_dict()),
        }
    )
    return segments
