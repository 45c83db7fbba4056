"""Segmentation: choose k, fit the segments, match them to the last run, profile them."""

import math

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetIn,
    MetadataValue,
    Output,
    asset,
)

from loan_pipeline import settings
from loan_pipeline.assets.common import (
    column_lineage,
    column_schema,
    columns_of,
    markdown_table,
    partitioned_input,
    table_metadata,
)
from loan_pipeline.columns import NUMERIC_COLUMNS
from loan_pipeline.core.rounding import rounded_all, transposed_markdown
from loan_pipeline.io.models import published_model
from loan_pipeline.io.tables import previous_table

GROUP = "segmentation"
OWNERS = ["team:credit-risk"]
STABILITY_CHECK = "chosen_k_is_stable"


@asset(
    pool=settings.HEAVY_POOL,
    group_name=GROUP,
    owners=OWNERS,
    kinds={"scikit-learn"},
    io_manager_key="model_io_manager",
    ins={
        "validated_loans": columns_of(NUMERIC_COLUMNS, partitioned=True),
        "scaled_features": partitioned_input(),
    },
    check_specs=[
        AssetCheckSpec(
            STABILITY_CHECK,
            asset="cluster_model",
            description="The segments shown are a stable segmentation: refits on halves of "
            "the book reproduce them (prediction strength >= stability_threshold) and they beat "
            "a structureless book of the same shape (gap statistic). WARN only.",
        )
    ],
    description="KMeans segments. k is chosen from the data unless configured: the largest k "
    "in a range whose segments are reproducible (prediction strength) and beat a structureless "
    "book (gap statistic); when none does, the metadata says there is no stable segmentation. "
    "Segments are matched to the last run's so ids and names stay put.",
)
def cluster_model(
    context: AssetExecutionContext,
    config: settings.ClusterConfig,
    analysis: settings.AnalysisMethod,
    validated_loans,
    scaled_features,
):
    from loan_pipeline.core.features import column_scaling, feature_matrix
    from loan_pipeline.core.partitions import (
        is_dask,
        partition_lengths,
        summarise,
        take_positions,
    )
    from loan_pipeline.core.segmentation import (
        evaluate_k,
        fit_segments,
        partition_cluster_counts,
        sample_rows,
    )

    features = [c for c in scaled_features.columns if c != "Borrower_ID"]
    scaling = column_scaling(validated_loans, features)
    fit_sample = None if analysis.is_notebook else config.fit_sample
    if is_dask(scaled_features):
        # Partitions on a cluster: the same fixed-seed samples by position over the whole book
        # (so the same rows, and the same models, as a local run), fetched from the partitions
        # that hold them; borrowers per segment counted on the workers.
        n = sum(partition_lengths(scaled_features))

        def sample(size):
            rows = sample_rows(n, size, config.random_state)
            return feature_matrix(take_positions(scaled_features, rows))

        X_select, X_fit = sample(config.selection_sample), sample(fit_sample)

        def count_clusters(kmeans):
            return summarise(partition_cluster_counts, sum, scaled_features, kmeans)

    else:
        X_select = X_fit = feature_matrix(scaled_features)
        count_clusters = None
    fixed_k = config.k if config.k is not None else (4 if analysis.is_notebook else None)
    candidates = [fixed_k] if fixed_k is not None else list(range(config.k_min, config.k_max + 1))
    selection = evaluate_k(
        X_select,
        sorted(set(candidates) | ({4} if analysis.is_notebook else set())),
        selection_sample=config.selection_sample,
        resamples=config.resamples,
        references=config.references,
        random_state=config.random_state,
        stability_threshold=config.stability_threshold,
        fixed_k=fixed_k,
    )
    k = selection.chosen
    model = fit_segments(
        X_fit,
        features,
        k=k,
        random_state=config.random_state,
        n_init=config.n_init,
        fit_sample=fit_sample,
        count_clusters=count_clusters,
        means=scaling.means,
        scales=scaling.scales,
        previous=None
        if analysis.is_notebook
        else published_model("cluster_model", context.instance),
        selection=selection,
    )
    chosen = selection.chosen_row
    summary = selection.summary
    # the k's evidence; the gap only where it was computed (at a stable k)
    evidence = {
        name: float(chosen[name])
        for name in ("prediction_strength", "prediction_strength_min", "gap_gain", "gap_sd")
        if not math.isnan(chosen[name])
    }
    centroids = model.centroids.assign(segment_name=[model.names[s] for s in model.centroids.index])
    yield Output(
        model,
        metadata={
            "k": k,
            "k_chosen_by": k_chosen_by(selection),
            "segmentation_verdict": summary,
            "k_selection": markdown_table(selection.table),
            **rounded_all(
                {
                    "inertia": model.metrics["inertia"],
                    "silhouette": model.metrics["silhouette"],
                    **evidence,
                }
            ),
            "fit_rows": model.fit_rows,
            "cluster_sizes": MetadataValue.json(
                {model.names[s]: n for s, n in model.sizes.items()}
            ),
            # a column per segment, a row per feature (in standard deviations from the mean)
            "centroids_sd": MetadataValue.md(
                transposed_markdown(
                    centroids,
                    "segment_name",
                    "feature (sd)",
                    unit="sd",
                )
            ),
            "matched_to_last_run": MetadataValue.json(
                {model.names[s]: round(d, 3) for s, d in model.matched.items()}
            ),
            "method": analysis.method,
        },
    )
    stable = selection.supported
    yield AssetCheckResult(
        check_name=STABILITY_CHECK,
        passed=stable,
        severity=AssetCheckSeverity.WARN,
        metadata={
            "k": k,
            "verdict": summary,
            **rounded_all(evidence),
            "threshold": config.stability_threshold,
            "resamples": selection.resamples,
        },
        description=None if stable else f"{summary}. {why_not_stable(chosen, selection)}",
    )


def k_chosen_by(selection) -> str:
    if selection.configured:
        return "config"
    if selection.supported:
        return (
            "data: the largest k that is reproducible (prediction strength >= "
            f"{selection.stability_threshold}) and beats a structureless book (gap statistic)"
        )
    table = selection.table
    best = table.loc[table["prediction_strength"].idxmax()]
    if not table["stable"].any():
        # every k fails the first test: say so, not "no k passes both"
        return (
            f"data: no k is reproducible (prediction strength below "
            f"{selection.stability_threshold} for every k from {int(table['k'].min())} to "
            f"{int(table['k'].max())}); k={selection.chosen}, the most reproducible "
            f"({best['prediction_strength']:.2f}), is shown as a convenient split"
        )
    return (
        "data: no k is both reproducible and better than a structureless book (the gap "
        f"statistic); k={selection.chosen}, the most reproducible "
        f"({best['prediction_strength']:.2f}), is shown as a convenient split"
    )


def why_not_stable(row, selection) -> str:
    """Which of the two tests the k shown fails, in numbers."""
    if not row["stable"]:
        return (
            f"Refits on halves of the book reproduce its segments with a prediction strength of "
            f"{row['prediction_strength']:.2f} (< {selection.stability_threshold}); read the "
            "segments as a convenient partition, not as groups the data insist on."
        )
    return (
        f"Its segments are reproducible (prediction strength {row['prediction_strength']:.2f}) "
        f"but gain no more over k-1 than a structureless book of the same shape (gap gain "
        f"{row['gap_gain']:.3f}, standard error {row['gap_sd']:.3f}): a reproducible cut "
        "through a continuum, not groups the data insist on."
    )


@asset(
    pool=settings.HEAVY_POOL,
    group_name=GROUP,
    owners=OWNERS,
    kinds={"pandas", "duckdb"},
    metadata={"dagster/column_schema": column_schema("BorrowerSegments")},
    ins={
        "cluster_model": AssetIn(input_manager_key="model_io_manager"),
        "scaled_features": partitioned_input(),
    },
    description="One row per borrower: segment id and segment name (from the centroid). "
    "Reports how many borrowers changed segment since the last run.",
)
def borrower_segments(
    context: AssetExecutionContext,
    scaled_features,
    cluster_model,
):
    from loan_pipeline.core.partitions import (
        is_dask,
        per_partition,
        sum_counts,
        summarise,
        value_counts,
    )
    from loan_pipeline.core.segmentation import segments_of
    from loan_pipeline.schemas import BorrowerSegments, validate

    segments = per_partition(segments_of, scaled_features, cluster_model)
    segments = validate(segments, BorrowerSegments, source="borrower_segments")
    from_features = [("scaled_features", c) for c in cluster_model.features]
    metadata = {
        **table_metadata(segments),
        **column_lineage(
            {
                "Borrower_ID": [("scaled_features", "Borrower_ID")],
                "segment_id": from_features,
                "segment_name": from_features,
            }
        ),
    }
    if is_dask(segments):
        # computed once and kept on the workers, for the counts here and the write
        segments = segments.persist()
    sizes = summarise(value_counts, sum_counts, segments, ["segment_name"])
    metadata["segment_sizes"] = MetadataValue.json(
        sizes.sort_values(ascending=False, kind="stable").to_dict()
    )
    metadata["segmentation_verdict"] = cluster_model.segmentation or "unknown"
    if is_dask(segments):  # (the change since the last run is counted on a local run only)
        context.add_output_metadata(metadata)
        return segments
    before = previous_table("borrower_segments", ["Borrower_ID", "segment_id"])
    if before is not None:
        both = segments.merge(before, on="Borrower_ID", suffixes=("", "_before"))
        changed = int((both["segment_id"] != both["segment_id_before"]).sum())
        metadata |= {
            "changed_segment_since_last_run": changed,
            "borrowers_in_both_runs": len(both),
            "new_borrowers": len(segments) - len(both),
        }
    context.add_output_metadata(metadata)
    return segments


@asset(
    group_name=GROUP,
    owners=OWNERS,
    kinds={"pandas", "duckdb"},
    metadata={"dagster/column_schema": column_schema("SegmentProfiles")},
    ins={
        "cluster_model": AssetIn(input_manager_key="model_io_manager"),
        "validated_loans": columns_of(
            "Borrower_ID", NUMERIC_COLUMNS, "Recovery_Status", partitioned=True
        ),
        "borrower_segments": partitioned_input(),
    },
    description="Per segment: size, share of the book, mean of each clustering feature (original "
    "units), and the observed recovery outcome mix of its resolved loans. On a Dask cluster, "
    "summed a partition at a time on the workers.",
)
def segment_profiles(
    context: AssetExecutionContext,
    validated_loans,
    borrower_segments,
    cluster_model,
):
    from loan_pipeline.core.segmentation import rounded_profile, segment_profile
    from loan_pipeline.schemas import SegmentProfiles, validate

    features = cluster_model.features
    profile = rounded_profile(
        segment_profile(validated_loans, borrower_segments, features), features
    )
    # the verdict beside the profiles, where an analyst reading them in SQL will see it
    profile["segmentation_verdict"] = cluster_model.verdict
    profile = validate(profile, SegmentProfiles, source="segment_profiles")
    lineage = {
        c: [("validated_loans", c), ("borrower_segments", "segment_id")]
        for c in cluster_model.features
    }
    lineage |= {
        "segment_id": [("borrower_segments", "segment_id")],
        "segment_name": [("borrower_segments", "segment_name")],
        "borrowers": [("borrower_segments", "Borrower_ID")],
        "open_loans": [("validated_loans", "Recovery_Status")],
    } | {
        s: [("validated_loans", "Recovery_Status")]
        for s in ("share_fully_recovered", "share_partially_recovered", "share_written_off")
    }
    context.add_output_metadata(
        {
            **table_metadata(profile),
            **column_lineage(lineage),
            "segmentation_verdict": cluster_model.segmentation or "unknown",
            # a column per segment: the profile's eighteen columns would run off the page
            "profile": MetadataValue.md(transposed_markdown(profile, "segment_name", "segment")),
        }
    )
    return profile
