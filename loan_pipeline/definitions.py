"""The code location: every asset, job and resource of the loan-recovery pipeline."""

from __future__ import annotations

from dagster import Definitions

from loan_pipeline.assets import charts, features, ingest, risk, segmentation
from loan_pipeline.automation import in_process_by_default, jobs
from loan_pipeline.io import DuckDBTableIOManager, PickleModelIOManager

all_assets = [
    ingest.ingest_loan_book,
    features.scaled_features,
    segmentation.cluster_model,
    segmentation.borrower_segments,
    risk.risk_model,
    risk.risk_scores,
    risk.recovery_strategies,
    *charts.chart_assets,
]

defs = Definitions(
    assets=all_assets,
    jobs=jobs,
    resources={
        "io_manager": DuckDBTableIOManager(),
        "model_io_manager": PickleModelIOManager(),
    },
    executor=in_process_by_default,
)
