"""Champion/challenger: the uplift of an experiment's challenger arm once its outcomes arrive.

The arms are drawn in recovery_strategies (core.experiment.apply_experiment) and kept in each
snapshot's history file; this compares the previous snapshot's arms with this run's outcomes,
as the roll rates compare its buckets (history.snapshot_pair).
"""

from dagster import AssetExecutionContext, MetadataValue, Output, asset

from loan_pipeline import settings
from loan_pipeline.assets.common import column_schema, table_metadata
from loan_pipeline.assets.history import _compared, _of_snapshots, snapshot_pair
from loan_pipeline.domain import EXPERIMENT_COLUMNS


@asset(
    group_name="history",
    owners=["team:credit-risk"],
    kinds={"pandas", "duckdb"},
    deps=["strategy_history"],
    metadata={"dagster/column_schema": column_schema("ChallengerUplift")},
    description="Champion/challenger: of the borrowers in an experiment at the previous "
    "snapshot (t) with an open loan then and resolved at this one (t+1), the Fully Recovered "
    "share of the challenger arm minus the champion arm's, with Newcombe's 95% interval, the "
    "recovered balance of each arm, and the resolved borrowers per arm still needed to detect "
    "the uplift (two-proportion sample size, 80% power, 5% significance). Empty on the first "
    "snapshot or when no experiment ran at t (the metadata says why).",
)
def challenger_uplift(context: AssetExecutionContext, config: settings.UpliftConfig):
    from loan_pipeline.core.experiment import empty_uplift, experiment_at, uplift
    from loan_pipeline.core.rounding import transposed_markdown
    from loan_pipeline.schemas import ChallengerUplift, validate

    pair = snapshot_pair(context, optional=EXPERIMENT_COLUMNS)
    reason = pair.reason or experiment_at(pair.previous)
    table = (
        empty_uplift()
        if reason
        else uplift(
            pair.previous,
            pair.current,
            significance=config.significance,
            power=config.power,
            min_uplift=config.min_uplift,
        )
    )
    table = validate(_of_snapshots(table, pair), ChallengerUplift, source="challenger_uplift")
    compared = _compared(pair)
    if reason:
        compared["compared"] = reason
    shown = table.drop(columns=["previous_snapshot", "snapshot"])
    return Output(
        table,
        metadata={
            **table_metadata(table),
            **compared,
            "experiments": len(table),
            "significance": config.significance,
            "power": config.power,
            "min_uplift": config.min_uplift if config.min_uplift is not None else "observed",
            # one column per experiment: the page's metadata column is narrow, the table long
            "uplift": MetadataValue.md(transposed_markdown(shown, "experiment")),
        },
    )
