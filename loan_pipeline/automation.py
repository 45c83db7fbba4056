"""Jobs (and, later, schedules and sensors) and the default executor."""

from __future__ import annotations

from dagster import (
    AssetSelection,
    ExecutorDefinition,
    Field,
    define_asset_job,
    multi_or_in_process_executor,
)

# Dagster's default executor starts one process per step (seconds each); this graph's steps are
# short and share data through the warehouse, so one process is faster. The multiprocess
# executor stays selectable in the launchpad: execution: {config: {multiprocess: {}}}.
in_process_by_default = ExecutorDefinition(
    name="in_process_by_default",
    config_schema=Field(
        multi_or_in_process_executor.config_schema.as_field().config_type,
        default_value={"in_process": {}},
    ),
    requirements=multi_or_in_process_executor._requirements_fn,  # noqa: SLF001
    executor_creation_fn=multi_or_in_process_executor.executor_creation_fn,
    description="In-process by default; choose `multiprocess` in config to run steps in parallel.",
)

full_refresh_job = define_asset_job(
    "full_refresh",
    selection=AssetSelection.all(),
    description="Materialize every asset: ingest, features, segments, risk, strategies, charts.",
)
charts_job = define_asset_job(
    "charts_only",
    selection=AssetSelection.groups("charts"),
    description="Redraw the analyst charts from the stored tables.",
)

jobs = [full_refresh_job, charts_job]
