"""Monitoring and reports: fairness of the strategies, drift of the book, the model card."""

import json

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetIn,
    MaterializeResult,
    MetadataValue,
    Output,
    asset,
)

from loan_pipeline import domain, settings
from loan_pipeline.assets.common import (
    column_lineage,
    column_schema,
    columns_of,
    markdown_table,
    png_markdown,
    table_metadata,
)
from loan_pipeline.io import runs

GROUP = "monitoring"
OWNERS = ["team:credit-risk"]
FAIRNESS_CHECK = "no_unexplained_strategy_gap"
PSI_CHECK = "population_is_stable"
PROFILE = "monitoring/profile.json"


@asset(
    pool=settings.HEAVY_POOL,
    group_name=GROUP,
    owners=OWNERS,
    kinds={"pandas", "duckdb"},
    metadata={"dagster/column_schema": column_schema("FairnessReport")},
    ins={
        "validated_loans": columns_of(
            "Borrower_ID", "Gender", "Age", "Recovery_Status", partitioned=True
        ),
        "recovery_strategies": columns_of(
            "Borrower_ID", "risk_score", "recovery_strategy", partitioned=True
        ),
    },
    check_specs=[
        AssetCheckSpec(
            FAIRNESS_CHECK,
            asset="fairness_report",
            description="No Gender or age-band group (of at least min_group borrowers) gets the "
            "harshest strategy at a rate that differs from the overall rate by more than max_gap "
            "beyond what its observed outcomes explain. WARN only.",
        )
    ],
    description="Rate of each strategy and mean score by Gender and by age band, next to each "
    "group's observed rate of 'not Fully Recovered' (neither Gender nor Age is a model input). "
    "On a Dask cluster, counted a partition at a time on the workers.",
)
def fairness_report(
    context: AssetExecutionContext,
    config: settings.FairnessConfig,
    validated_loans,
    recovery_strategies,
):
    from loan_pipeline.core.monitoring import fairness_flags, fairness_table
    from loan_pipeline.schemas import FairnessReport, validate

    table = validate(
        fairness_table(validated_loans, recovery_strategies),
        FairnessReport,
        source="fairness_report",
    )
    flagged = fairness_flags(table, max_gap=config.max_gap, min_group=config.min_group)
    strategy = [("recovery_strategies", "recovery_strategy")]
    outcome = [("validated_loans", "Recovery_Status")]
    groups = [("validated_loans", "Gender"), ("validated_loans", "Age")]
    lineage = {
        "group": groups,
        "borrowers": groups,
        "mean_score": [("recovery_strategies", "risk_score")],
    }
    lineage |= {
        c: strategy
        for c in (
            "share_legal",
            "share_settlement",
            "share_reminders",
            "share_legal_se",
            "harshest_gap",
        )
    }
    lineage |= {
        c: outcome
        for c in ("resolved", "observed_not_fully_recovered", "observed_se", "outcome_gap")
    }
    lineage["unexplained_gap"] = strategy + outcome
    yield Output(
        table,
        metadata={
            **table_metadata(table),
            **column_lineage(lineage),
            "report": markdown_table(table),
        },
    )
    yield AssetCheckResult(
        check_name=FAIRNESS_CHECK,
        passed=flagged.empty,
        severity=AssetCheckSeverity.WARN,
        metadata={
            "max_gap": config.max_gap,
            "min_group": config.min_group,
            "flagged_groups": MetadataValue.json(
                {
                    f"{r.group_type}={r.group}": round(r.unexplained_gap, 3)
                    for r in flagged.itertuples()
                }
            ),
        },
    )


@asset(
    pool=settings.HEAVY_POOL,
    group_name=GROUP,
    owners=OWNERS,
    kinds={"pandas", "duckdb"},
    metadata={"dagster/column_schema": column_schema("PopulationStability")},
    ins={
        "validated_loans": columns_of("Borrower_ID", domain.RISK_NUMERIC, partitioned=True),
        "risk_scores": columns_of("Borrower_ID", "risk_score", partitioned=True),
    },
    check_specs=[
        AssetCheckSpec(
            PSI_CHECK,
            asset="population_stability",
            description="Every model input and the score have a population stability index of "
            "at most 0.25 against the previous materialization. WARN only.",
        )
    ],
    description="Population stability index (PSI) of each model input and of the risk score "
    "against the previous materialization (decile bins of the previous run). On a Dask "
    "cluster, counted and profiled a partition at a time on the workers.",
)
def population_stability(
    context: AssetExecutionContext,
    validated_loans,
    risk_scores,
):
    from loan_pipeline.core.monitoring import stability_columns, stability_report
    from loan_pipeline.core.partitions import per_partition
    from loan_pipeline.core.risk import RISK_NUMERIC
    from loan_pipeline.schemas import PopulationStability, validate

    # on a cluster the two tables are partitioned alike: each partition of the book is joined
    # to its own scores, and only counts and histograms of the columns come back (see
    # core.summaries.quantiles for the profile's exact deciles)
    current = per_partition(stability_columns, validated_loans, risk_scores)
    published = runs.published_file(PROFILE)  # the last published run's deciles
    previous = json.loads(published.read_text()) if published is not None else None
    table, profile = stability_report(previous, current)
    table = validate(table, PopulationStability, source="population_stability")
    runs.write_file(context, PROFILE, json.dumps(profile).encode())
    shifted = table[table["psi"] > 0.25]
    yield Output(
        table,
        metadata={
            **table_metadata(table),
            **column_lineage(
                {
                    "psi": [("validated_loans", c) for c in RISK_NUMERIC]
                    + [("risk_scores", "risk_score")],
                    "column": [("validated_loans", c) for c in RISK_NUMERIC]
                    + [("risk_scores", "risk_score")],
                }
            ),
            "compared_with_previous_run": previous is not None,
            "psi": markdown_table(table),
            "max_psi": float(table["psi"].max()) if previous is not None else float("nan"),
        },
    )
    yield AssetCheckResult(
        check_name=PSI_CHECK,
        passed=shifted.empty,
        severity=AssetCheckSeverity.WARN,
        metadata={
            "shifted": MetadataValue.json(
                dict(zip(shifted["column"], shifted["psi"].round(3), strict=True))
            )
        },
        description="first run: nothing to compare with" if previous is None else None,
    )


@asset(
    group_name="reports",
    owners=OWNERS,
    kinds={"markdown"},
    ins={"risk_model": AssetIn(input_manager_key="model_io_manager")},
    deps=["chart_calibration"],
    description="The model card (data, target, features, excluded columns and why, metrics vs "
    "baselines, calibration, fairness), written to storage/reports/model_card.md; "
    "`python -m loan_pipeline model-card` copies it to docs/model_card.md.",
)
def model_card(context: AssetExecutionContext, risk_model, fairness_report) -> MaterializeResult:
    from loan_pipeline.core.report import model_card_markdown

    chart = runs.find_file(context, "charts/chart_calibration.png")
    if risk_model.primary is None:
        text = (
            "# Model card\n\nThe notebook method is running: its model predicts the high-burden "
            "segments, not an outcome, so it has no outcome metrics. Run the recommended method "
            "for a model card.\n\n## Fairness\n\n"
            + fairness_report.to_markdown(index=False, floatfmt=".3f")
        )
    else:
        text = model_card_markdown(
            risk_model,
            fairness=fairness_report,
            calibration_image="![Calibration](../charts/chart_calibration.png)",
        )
    path = runs.write_file(context, "reports/model_card.md", text.encode())
    metadata = {"path": MetadataValue.path(str(path)), "model_card": MetadataValue.md(text)}
    if chart is not None:
        metadata["calibration_chart"] = png_markdown(chart.read_bytes(), "calibration")
    return MaterializeResult(metadata=metadata)
