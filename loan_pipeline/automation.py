"""Jobs, schedules and sensors, and the default executor.

- ``full_refresh`` and ``charts_only``: the asset jobs.
- ``incoming_loan_files`` (sensor): each new or changed CSV in the incoming folder starts one
  ``full_refresh`` run on that file; ``move_processed_files`` (run-status sensor) moves the file to
  the processed folder once its run has succeeded.
- ``daily_refresh`` (schedule): re-materializes the graph on the configured book, unless neither
  the data nor the code changed since the last successful run (the tick says why it skipped).
"""

from __future__ import annotations

import json
import shutil
from datetime import timedelta
from pathlib import Path

from dagster import (
    AssetKey,
    AssetSelection,
    AssetSpec,
    AutomationCondition,
    AutomationConditionSensorDefinition,
    DagsterRunStatus,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    ExecutorDefinition,
    Field,
    FreshnessPolicy,
    RunRequest,
    RunStatusSensorContext,
    ScheduleEvaluationContext,
    SensorEvaluationContext,
    SkipReason,
    define_asset_job,
    multi_or_in_process_executor,
    run_status_sensor,
    schedule,
    sensor,
)

from loan_pipeline import settings
from loan_pipeline.versioning import code_version, file_sha256

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
    description="Materialize every asset: ingest, features, segments, risk, strategies, "
    "monitoring, reports and charts.",
)
charts_job = define_asset_job(
    "charts_only",
    selection=AssetSelection.groups("charts") | AssetSelection.assets("published_snapshot"),
    description="Redraw the analyst charts from the published tables, and publish them.",
)

TAG_FILE = "loan_pipeline/source_file"
TAG_SHA = "loan_pipeline/source_sha256"
TAG_CODE = "loan_pipeline/code_version"
TAG_TRIGGER = "loan_pipeline/trigger"


def _run_config(csv: Path) -> dict:
    return {"ops": {"ingest_loan_book": {"config": {"csv_path": str(csv)}}}}


# --- new files ---------------------------------------------------------------------------------


def file_run_key(path: Path, digest: str) -> str:
    """One run per file content: name, size and content hash. A re-copied identical file has
    the same key (no second run); an edited one a new key."""
    return f"{path.name}:{path.stat().st_size}:{digest[:16]}"


@sensor(
    job=full_refresh_job,
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.RUNNING,
    description="Starts one full_refresh run for each new or changed CSV in the incoming folder "
    "($LOAN_PIPELINE_INCOMING, default data/incoming). A bad file fails its own run and does not "
    "block the next file.",
)
def incoming_loan_files(context: SensorEvaluationContext):
    folder = settings.incoming_dir()
    if not folder.is_dir():
        return SkipReason(f"incoming folder {folder} does not exist")
    # cursor: {"files": {name|size|mtime: run key}, "keys": [every run key requested]}, so a file
    # is hashed once and a re-copied identical file (new mtime, same content) never runs twice
    state = json.loads(context.cursor) if context.cursor else {"files": {}, "keys": []}
    files: dict[str, str] = state["files"]
    keys: list[str] = state["keys"]
    requests, present = [], {}
    for path in sorted(folder.glob("*.csv")):
        stat = path.stat()
        identity = f"{path.name}|{stat.st_size}|{stat.st_mtime_ns}"
        if identity in files:
            present[identity] = files[identity]
            continue
        digest = file_sha256(path)
        key = file_run_key(path, digest)
        present[identity] = key
        if key in keys:
            continue
        keys.append(key)
        requests.append(
            RunRequest(
                run_key=key,
                run_config=_run_config(path),
                tags={TAG_FILE: str(path), TAG_SHA: digest, TAG_TRIGGER: "incoming file"},
            )
        )
    context.update_cursor(json.dumps({"files": present, "keys": keys[-10_000:]}))
    if not requests:
        return SkipReason(f"no new or changed CSV in {folder}")
    return requests


@run_status_sensor(
    run_status=DagsterRunStatus.SUCCESS,
    monitored_jobs=[full_refresh_job],
    default_status=DefaultSensorStatus.RUNNING,
    description="Moves an incoming file to the processed folder once its run has succeeded "
    "(never before, so a failed file stays where it was dropped).",
)
def move_processed_files(context: RunStatusSensorContext):
    source = context.dagster_run.tags.get(TAG_FILE)
    if not source:
        return SkipReason("the run did not come from an incoming file")
    path = Path(source)
    if not path.exists() or path.parent.resolve() != settings.incoming_dir().resolve():
        return SkipReason(f"{path} is not waiting in the incoming folder")
    target_dir = settings.processed_dir()
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / path.name
    if target.exists():
        digest = context.dagster_run.tags.get(TAG_SHA, "")[:12]
        target = target_dir / f"{path.stem}.{digest}{path.suffix}"
    shutil.move(str(path), target)
    context.log.info(f"moved {path} to {target}")
    return None


# --- schedule ----------------------------------------------------------------------------------


def last_refresh_fingerprint() -> tuple[str | None, str | None, str | None]:
    """(source sha256, code version, snapshot) of the published snapshot: what the last run
    that finished was made from. A failed or killed run published nothing, so it never makes
    the schedule skip."""
    from loan_pipeline.io import runs

    manifest = runs.store().manifest()
    if manifest is None or "source" not in manifest:
        return None, None, None
    source = manifest["source"]
    return source.get("sha256"), source.get("code_version"), manifest["snapshot"]


@schedule(
    cron_schedule="0 6 * * *",
    job=full_refresh_job,
    execution_timezone=settings.schedule_timezone(),
    default_status=DefaultScheduleStatus.RUNNING,
    description="Daily re-materialization on the configured loan book ($LOAN_BOOK_CSV or the "
    "shipped sample) at 06:00 ($LOAN_PIPELINE_TIMEZONE, default UTC); skipped, with the reason "
    "in the tick history, when neither the data nor the code changed since the last run.",
)
def daily_refresh(context: ScheduleEvaluationContext):
    csv = settings.source_csv()
    if not csv.exists():
        return SkipReason(f"the loan book {csv} does not exist")
    digest = file_sha256(csv)
    version = code_version()
    last_sha, last_code, run_id = last_refresh_fingerprint()
    if last_sha == digest and last_code == version:
        return SkipReason(
            f"nothing changed since run {run_id}: same data ({csv.name}, sha256 {digest[:12]}) "
            f"and same code (version {version})"
        )
    changed = [
        what
        for what, same in (("data", last_sha == digest), ("code", last_code == version))
        if not same
    ]
    return RunRequest(
        run_config=_run_config(csv),
        tags={
            TAG_SHA: digest,
            TAG_CODE: version,
            TAG_TRIGGER: f"schedule: {' and '.join(changed)} changed",
        },
    )


# --- policies set once for every asset --------------------------------------------------------

# Downstream of the tables, assets follow their inputs: when an upstream asset is materialized
# (by any job, or by hand in the UI), these update by themselves (declarative automation).
FOLLOWERS = {"charts", "monitoring", "reports", "history", "publication"}


def apply_policies(spec: AssetSpec) -> AssetSpec:
    """Code version, tags, automation and freshness, the same way for every asset."""
    changes: dict = {
        "code_version": code_version(),
        "tags": {**spec.tags, "domain": "loan-recovery", "stage": spec.group_name or "default"},
    }
    if spec.group_name in FOLLOWERS:
        changes["automation_condition"] = AutomationCondition.eager()
    if spec.key == AssetKey("recovery_strategies"):
        # the daily schedule runs at 06:00: a table older than a day and a bit is stale
        changes["freshness_policy"] = FreshnessPolicy.time_window(
            fail_window=timedelta(hours=30), warn_window=timedelta(hours=25)
        )
    return spec.replace_attributes(**changes)


# Dagster creates an automation sensor by itself, but STOPPED; declare it RUNNING so the eager
# assets above really follow their inputs under `make ui`.
follow_upstream = AutomationConditionSensorDefinition(
    "follow_upstream_changes",
    target=AssetSelection.all(),
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Materializes charts, monitoring, reports and history when their inputs change "
    "(their eager automation conditions).",
)

jobs = [full_refresh_job, charts_job]
schedules = [daily_refresh]
sensors = [incoming_loan_files, move_processed_files, follow_upstream]
