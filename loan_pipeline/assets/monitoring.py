"""Monitoring and reports: fairness of the strategies, drift of the book, the model card."""

import json
from datetime import UTC, datetime

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
    png_image,
    table_metadata,
)
from loan_pipeline.core.rounding import rounded_all, transposed_markdown
from loan_pipeline.io import runs

GROUP = "monitoring"
OWNERS = ["team:credit-risk"]
FAIRNESS_CHECK = "no_unexplained_strategy_gap"
PSI_CHECK = "population_is_stable"
# where the model_card asset writes the card, inside the storage (published with the rest)
MODEL_CARD = "reports/model_card.md"


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
            description="No Gender or age-band group (of at least min_group borrowers) gets legal "
            "action at a rate more than max_gap (rate points) from the rate its observed "
            "outcomes would give (unexplained_legal_gap). WARN only.",
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
            "legal_gap",
        )
    }
    lineage |= {
        c: outcome
        for c in ("resolved", "observed_not_fully_recovered", "observed_se", "outcome_gap")
    }
    lineage["expected_share_legal"] = strategy + outcome
    lineage["unexplained_legal_gap"] = strategy + outcome
    yield Output(
        table,
        metadata={
            **table_metadata(table),
            **column_lineage(lineage),
            "report": MetadataValue.md(transposed_markdown(table, "group")),
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
                    f"{r.group_type}={r.group}": round(r.unexplained_legal_gap, 3)
                    for r in flagged.itertuples()
                }
            ),
        },
        description=None
        if flagged.empty
        else "legal action more often (or less) than the group's outcomes explain, beyond "
        f"max_gap {config.max_gap:.2f}: "
        + "; ".join(
            f"{r.group_type} {r.group} {r.unexplained_legal_gap:+.3f}" for r in flagged.itertuples()
        ),
    )


@asset(
    pool=settings.HEAVY_POOL,
    group_name=GROUP,
    owners=OWNERS,
    kinds={"pandas", "duckdb"},
    metadata={"dagster/column_schema": column_schema("PopulationStability")},
    ins={
        "validated_loans": columns_of(
            "Borrower_ID", domain.RISK_NUMERIC, domain.RISK_CATEGORICAL, partitioned=True
        ),
        "risk_scores": columns_of("Borrower_ID", "risk_score", partitioned=True),
        "risk_model": AssetIn(input_manager_key="model_io_manager"),
    },
    check_specs=[
        AssetCheckSpec(
            PSI_CHECK,
            asset="population_stability",
            description="Against the drift baseline (a snapshot kept with its frozen risk "
            "model: the first published run's until another is pinned; the metadata names it), "
            "every model input's CSI and the frozen model's score PSI are at most "
            f"{domain.PSI_SIGNIFICANT}. The comparison with the previous run and the refitted "
            "model's score are reported, not judged. WARN only.",
        )
    ],
    description="Drift: the characteristic stability index (CSI) of each model input and the "
    "population stability index (PSI) of the score, against the baseline snapshot and against "
    "the previous run (decile bins of each). Two scores: the published one (this run's model, "
    "refitted) and the baseline's frozen model scoring this book. On a Dask cluster, scored, "
    "counted and profiled a partition at a time on the workers.",
)
def population_stability(
    context: AssetExecutionContext,
    config: settings.StabilityConfig,
    validated_loans,
    risk_scores,
    risk_model,
):
    from loan_pipeline.core.monitoring import (
        drift_summary,
        frozen_pipeline,
        significant_shifts,
        stability_frame,
        stability_report,
    )
    from loan_pipeline.io import baseline as baselines
    from loan_pipeline.schemas import PopulationStability, validate

    own_data, own_digest = baselines.own_model(context)
    pin = config.baseline.strip()
    baseline = baselines.pinned(context, pin) if pin else baselines.kept(context)
    first = baseline is None  # no baseline yet: this run becomes it, its model the frozen one
    own = (frozen_pipeline(risk_model), own_digest)
    frozen = own if first else (frozen_pipeline(baseline.model), baseline.record["model_sha256"])
    # on a cluster the two tables are partitioned alike: each partition of the book is joined
    # to its own scores and scored by the models on the workers, and only counts and histograms
    # of the columns come back (see core.summaries.quantiles for the profile's exact deciles)
    current, digests = stability_frame(validated_loans, risk_scores, frozen, own)
    published = runs.published_file(baselines.PROFILE)  # the last published run's deciles
    previous = json.loads(published.read_text()) if published is not None else None
    table, profile = stability_report(
        current, previous, None if first else baseline.record["profiles"], digests
    )
    table = validate(table, PopulationStability, source="population_stability")
    if first:
        baseline = baselines.of_this_run(context, profile, risk_model, own_data, own_digest)
    if first or pin:
        baselines.write(context, baseline)
    runs.write_file(context, baselines.PROFILE, json.dumps(profile).encode())
    record = baseline.record
    pinned_at = datetime.fromtimestamp(record["pinned_at"], UTC).isoformat(timespec="seconds")
    against = f"baseline snapshot {record['snapshot']} (pinned {pinned_at}, {record['how']})"
    inputs = [("validated_loans", c) for c in domain.RISK_NUMERIC] + [("risk_scores", "risk_score")]
    yield Output(
        table,
        metadata={
            **table_metadata(table),
            **column_lineage({c: inputs for c in ("column", "psi_vs_baseline", "psi_vs_previous")}),
            "baseline_snapshot": record["snapshot"],
            "baseline_pinned_at": pinned_at,
            "baseline_how": record["how"],
            "baseline_pinned_by_run": record["pinned_by"],
            # the frozen model's digest, recorded outside the storage folder: a later run
            # loads the baseline's model only if its bytes still have it (io/models.py)
            baselines.RECORDED_BY[1]: record["model_sha256"],
            "this_run_is_the_baseline": first,
            "compared_with_previous_run": previous is not None,
            **rounded_all(drift_summary(table)),
            "psi": markdown_table(table),
        },
    )
    shifted = significant_shifts(table, "baseline")
    yield AssetCheckResult(
        check_name=PSI_CHECK,
        passed=not shifted,
        severity=AssetCheckSeverity.WARN,
        metadata={
            "against": against,
            "baseline_snapshot": record["snapshot"],
            "baseline_pinned_at": pinned_at,
            "threshold": domain.PSI_SIGNIFICANT,
            "shifted": MetadataValue.json(shifted),
            # reported, not judged: a jump since the previous run shows against the baseline too
            "shifted_vs_previous_run": MetadataValue.json(significant_shifts(table, "previous")),
        },
        description="this run is the baseline: nothing to compare with"
        if first
        else f"against the {against}"
        + (
            f": shifted beyond PSI {domain.PSI_SIGNIFICANT}: "
            + ", ".join(f"{column} {psi:.3f}" for column, psi in shifted.items())
            if shifted
            else ""
        ),
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
    from loan_pipeline.core.model_card import fairness_markdown, model_card_markdown

    chart = runs.find_file(context, "charts/chart_calibration.png")

    def card(calibration_image: str) -> str:
        if risk_model.primary is None:
            return (
                "# Model card\n\nThe notebook method is running: its model predicts the "
                "high-burden segments, not an outcome, so it has no outcome metrics. Run the "
                "recommended method for a model card.\n\n## Fairness\n\n"
                + fairness_markdown(fairness_report)
            )
        return model_card_markdown(
            risk_model, fairness=fairness_report, calibration_image=calibration_image
        )

    # on disk the card links the chart beside it (reports/ and charts/ are siblings in every
    # snapshot, and in docs/); the UI's copy carries the image itself (common.png_image)
    text = card("![Calibration](../charts/chart_calibration.png)")
    path = runs.write_file(context, MODEL_CARD, text.encode())
    shown = text if chart is None else card(png_image(chart.read_bytes(), "Calibration"))
    return MaterializeResult(
        metadata={"path": MetadataValue.path(str(path)), "model_card": MetadataValue.md(shown)}
    )
