"""The code location: every asset, job and resource of the loan-recovery pipeline."""

from __future__ import annotations

import warnings

from dagster import Definitions
from dagster._utils.warnings import PreviewWarning

from loan_pipeline.assets import (
    charts,
    experiment,
    features,
    history,
    ingest,
    monitoring,
    publication,
    risk,
    segmentation,
)
from loan_pipeline.automation import (
    apply_policies,
    in_process_by_default,
    jobs,
    schedules,
    sensors,
)
from loan_pipeline.io.models import ModelIOManager
from loan_pipeline.io.tables import TableIOManager
from loan_pipeline.settings import AnalysisMethod, DaskClusterResource

analysis_assets = [
    ingest.ingest_loan_book,
    features.scaled_features,
    segmentation.cluster_model,
    segmentation.borrower_segments,
    segmentation.segment_profiles,
    risk.risk_model,
    risk.risk_scores,
    risk.recovery_strategies,
    risk.capacity_gains,
    monitoring.fairness_report,
    monitoring.population_stability,
    monitoring.model_card,
    history.strategy_history,
    history.roll_rates,
    history.arrears_forecast,
    history.cure_rates,
    history.strategy_backtest,
    experiment.challenger_uplift,
    *charts.chart_assets,
]
# the last step of every run: publishes the run's outputs, all of them or none
all_assets = [
    *analysis_assets,
    publication.publication_asset([key for a in analysis_assets for key in a.keys]),
]


def _definitions() -> Definitions:
    base = Definitions(
        assets=all_assets,
        jobs=jobs,
        schedules=schedules,
        sensors=sensors,
        resources={
            "io_manager": TableIOManager(),
            "model_io_manager": ModelIOManager(),
            "analysis": AnalysisMethod(),
            "dask": DaskClusterResource(),
        },
        executor=in_process_by_default,
    )
    with warnings.catch_warnings():
        # map_asset_specs is marked "preview" in dagster 1.13 (pinned): it is the documented way
        # to set a policy once for every asset, so its notice is not repeated to every user
        warnings.simplefilter("ignore", PreviewWarning)
        return base.map_asset_specs(func=apply_policies)


# the one Definitions object of the code location (workspace.yaml and [tool.dagster] name it)
defs = _definitions()


def job_named(name: str):
    """The asset job ``name`` of ``defs``: what ``python -m loan_pipeline run`` executes through
    ``dagster.execute_job`` (a reconstructable job needs a module-level function to rebuild it)."""
    return defs.resolve_job_def(name)
