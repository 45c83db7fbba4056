"""Jobs, schedules and sensors, and the default executor.

- ``full_refresh`` and ``charts_only``: the asset jobs.
- ``incoming_loan_files`` (sensor): each new or changed CSV in the incoming folder starts one
  ``full_refresh`` run on that file; ``move_processed_files`` (run-status sensor) moves the file to
  the processed folder once its run has succeeded. Only regular files are considered: symbolic
  links, directories, FIFOs and devices named *.csv are skipped with the reason, never opened.
- ``daily_refresh`` (schedule): re-materializes the graph on the configured book, unless neither
  the data nor the code changed since the last successful run (the tick says why it skipped).
- Both carry the run config of the file ``LOAN_PIPELINE_RUN_CONFIG`` names (``standing_config``),
  their own book's csv_path over it; a file that cannot be used fails the tick, naming it.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import stat
from datetime import timedelta
from pathlib import Path

from dagster import (
    AssetKey,
    AssetSelection,
    AssetSpec,
    AutomationCondition,
    AutomationConditionSensorDefinition,
    DagsterInstance,
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
from dagster._utils.merger import deep_merge_dicts

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
TAG_CONFIG = "loan_pipeline/run_config_file"


def standing_config(
    context: SensorEvaluationContext | ScheduleEvaluationContext,
) -> tuple[dict, dict]:
    """The run config the schedule's and the sensor's runs carry (``LOAN_PIPELINE_RUN_CONFIG``'s
    ``ops:`` and ``resources:``; none when unset), checked against full_refresh, and the tag
    naming its file. A file that cannot be used raises settings.RunConfigFileError naming it
    and the problem: the tick fails, rather than start runs without the config asked for."""
    path = settings.run_config_file()
    if path is None:
        return {}, {}
    try:
        config = settings.read_run_config_file(path)
        _check_fits_the_job(config, path, context)
    except settings.RunConfigFileError as err:
        # the setting named too: the tick is where an operator meets it, far from the file
        raise settings.RunConfigFileError(f"LOAN_PIPELINE_RUN_CONFIG: {err}") from None
    return config, {TAG_CONFIG: str(path)}


def _check_fits_the_job(config: dict, path: Path, context) -> None:
    """What a run would reject (an unknown op, a value of the wrong type) fails the tick naming
    the file, instead of every run the tick starts failing at launch with Dagster's message
    alone. The job comes from the tick's own definitions (this module is part of them)."""
    from dagster import DagsterInvariantViolationError, validate_run_config
    from dagster._core.errors import DagsterInvalidConfigError

    try:
        repository = context.repository_def  # a schedule's context raises when it has none
    except DagsterInvariantViolationError:
        repository = None
    if repository is None:  # only a context built by hand, without the definitions
        raise RuntimeError(
            "the run config file cannot be checked: this evaluation context has no definitions"
        )
    try:
        validate_run_config(repository.get_job(full_refresh_job.name), config)
    except DagsterInvalidConfigError as err:
        problems = "; ".join(e.message for e in err.errors)
        raise settings.RunConfigFileError(
            f"the run config {path} does not fit job {full_refresh_job.name}: {problems}"
        ) from None


def _run_config(csv: Path, standing: dict) -> dict:
    """The standing config with this run's book: the file's csv_path, if it sets one, loses to
    the book the sensor or the schedule runs on."""
    own = {"ops": {"ingest_loan_book": {"config": {"csv_path": str(csv)}}}}
    return deep_merge_dicts(standing, own)


# --- new files ---------------------------------------------------------------------------------


def file_run_key(name: str, size: int, digest: str) -> str:
    """One run per file content: name, size and content hash. A re-copied identical file has
    the same key (no second run); an edited one a new key."""
    return f"{name}:{size}:{digest[:16]}"


# What the sensor looks at: regular files named *.csv directly in the incoming folder, and nothing
# else. A symbolic link is never followed, even to a file inside the folder: checking where a link
# points and then opening it leaves a window in which it can be re-pointed, whereas opening the
# entry itself with O_NOFOLLOW makes the check and the read refer to the same file. A link to a
# file in the folder gains nothing anyway (the file itself is seen).


def _entry_kind(mode: int) -> str:
    """What a directory entry that is not a regular file is, in words, for a skip reason."""
    for test, kind in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return kind
    return "not a regular file"


def _link_reason(path: Path, folder: Path) -> str:
    """Why a symbolic link is skipped. realpath reads the links only; the target is never opened."""
    target = os.path.realpath(path)
    home = os.path.realpath(folder)
    if os.path.commonpath([home, target]) != home:
        return f"{path.name} links outside the incoming folder"
    return f"{path.name} is a symbolic link (links are not followed)"


def _skip_reason(path: Path, entry: os.stat_result, folder: Path) -> str | None:
    """Why ``path`` (its lstat ``entry``) is not a candidate, or None for a regular file."""
    if stat.S_ISLNK(entry.st_mode):
        return _link_reason(path, folder)
    if not stat.S_ISREG(entry.st_mode):
        return f"{path.name} is {_entry_kind(entry.st_mode)}"
    return None


class _EntryChanged(Exception):
    """The entry opened is not the regular file that lstat saw (replaced in between)."""


# O_NOFOLLOW: an entry swapped for a link since lstat fails to open (ELOOP) instead of being
# followed. O_NONBLOCK: an entry swapped for a FIFO opens at once instead of waiting for a writer
# (and is then refused by the fstat check). Neither changes how a regular file is read.
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK


def _hash_regular_file(path: Path, entry: os.stat_result) -> tuple[str, int]:
    """(sha256, size) of the regular file ``path`` that lstat described as ``entry``."""
    fd = os.open(path, _OPEN_FLAGS)
    with os.fdopen(fd, "rb") as fh:
        opened = os.fstat(fd)
        same_file = (opened.st_dev, opened.st_ino) == (entry.st_dev, entry.st_ino)
        if not (stat.S_ISREG(opened.st_mode) and same_file):
            raise _EntryChanged
        return hashlib.file_digest(fh, "sha256").hexdigest(), opened.st_size


def _read_error(name: str, err: OSError) -> str:
    if isinstance(err, FileNotFoundError):
        return f"{name} vanished before it could be read"
    if err.errno == errno.ELOOP:  # O_NOFOLLOW met a link: the file was replaced by one
        return f"{name} became a symbolic link (links are not followed)"
    return f"{name} could not be read ({err.strerror or err})"


@sensor(
    job=full_refresh_job,
    minimum_interval_seconds=settings.sensor_interval_seconds(),
    default_status=DefaultSensorStatus.RUNNING,
    description="Starts one full_refresh run for each new or changed CSV in the incoming folder "
    "($LOAN_PIPELINE_INCOMING, default data/incoming). A bad file fails its own run and does not "
    "block the next file. Only regular files are considered: directories, FIFOs, devices and "
    "symbolic links named *.csv are skipped, with the reason in the tick's log. Its runs carry "
    "the run config in $LOAN_PIPELINE_RUN_CONFIG, if set (a file that cannot be used fails the "
    "tick).",
)
def incoming_loan_files(context: SensorEvaluationContext):
    standing, config_tags = standing_config(context)
    folder = settings.incoming_dir()
    if not folder.is_dir():
        return SkipReason(f"incoming folder {folder} does not exist")
    try:
        names = sorted(name for name in os.listdir(folder) if name.endswith(".csv"))
    except OSError as err:
        return SkipReason(f"cannot list the incoming folder {folder}: {err}")
    # cursor: {"files": {name|size|mtime: run key}, "keys": [every run key requested]}, so a file
    # is hashed once and a re-copied identical file (new mtime, same content) never runs twice
    state = json.loads(context.cursor) if context.cursor else {"files": {}, "keys": []}
    files: dict[str, str] = state["files"]
    keys: list[str] = state["keys"]
    requests, present, skipped = [], {}, []
    for name in names:
        path = folder / name
        # each entry on its own: one that cannot be used is reported and the others go on
        try:
            entry = os.lstat(path)  # the entry itself: a link is not followed
            reason = _skip_reason(path, entry, folder)
            if reason:
                skipped.append(reason)
                continue
            identity = f"{name}|{entry.st_size}|{entry.st_mtime_ns}"
            if identity in files:
                present[identity] = files[identity]
                continue
            digest, size = _hash_regular_file(path, entry)
        except _EntryChanged:
            skipped.append(f"{name} was replaced while it was being read")
            continue
        except OSError as err:
            skipped.append(_read_error(name, err))
            continue
        key = file_run_key(name, size, digest)
        present[identity] = key
        if key in keys:
            continue
        keys.append(key)
        requests.append(
            RunRequest(
                run_key=key,
                run_config=_run_config(path, standing),
                tags={
                    TAG_FILE: str(path),
                    TAG_SHA: digest,
                    TAG_TRIGGER: "incoming file",
                    **config_tags,
                },
            )
        )
    for reason in skipped:
        context.log.warning(f"skipped {reason}")
    context.update_cursor(json.dumps({"files": present, "keys": keys[-10_000:]}))
    if not requests:
        why = f"; skipped: {'; '.join(skipped)}" if skipped else ""
        return SkipReason(f"no new or changed CSV in {folder}{why}")
    return requests


@run_status_sensor(
    run_status=DagsterRunStatus.SUCCESS,
    monitored_jobs=[full_refresh_job],
    # Dagster's default for a run-status sensor is 30 s too; the same setting as the file sensor
    minimum_interval_seconds=settings.sensor_interval_seconds(),
    default_status=DefaultSensorStatus.RUNNING,
    description="Moves an incoming file to the processed folder once its run has succeeded "
    "(never before, so a failed file stays where it was dropped).",
)
def move_processed_files(context: RunStatusSensorContext):
    source = context.dagster_run.tags.get(TAG_FILE)
    if not source:
        return SkipReason("the run did not come from an incoming file")
    path = Path(source)
    folder = settings.incoming_dir()
    not_waiting = SkipReason(f"{path} is not waiting in the incoming folder")
    if path.parent.resolve() != folder.resolve():
        return not_waiting
    # lstat, as the sensor does: only a regular file is moved; a link (which the sensor never
    # requests a run for, but a hand-made run's tag could name) is neither followed nor moved
    try:
        entry = os.lstat(path)
    except FileNotFoundError:
        return not_waiting
    reason = _skip_reason(path, entry, folder)
    if reason:
        return SkipReason(f"not moved: {reason}")
    target_dir = settings.processed_dir()
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / path.name
    # lexists: a link already standing at the name (even a broken one) counts as taken, so the
    # move never lands in a directory such a link points to
    if os.path.lexists(target):
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
    "in the tick history, when neither the data nor the code changed since the last run. Its "
    "runs carry the run config in $LOAN_PIPELINE_RUN_CONFIG, if set (a file that cannot be used "
    "fails the tick).",
)
def daily_refresh(context: ScheduleEvaluationContext):
    standing, config_tags = standing_config(context)
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
        run_config=_run_config(csv, standing),
        tags={
            TAG_SHA: digest,
            TAG_CODE: version,
            TAG_TRIGGER: f"schedule: {' and '.join(changed)} changed",
            **config_tags,
        },
    )


# --- policies set once for every asset --------------------------------------------------------

# Downstream of the tables, assets follow their inputs: when an upstream asset is materialized
# (by any job, or by hand in the UI), these update by themselves (declarative automation).
# publication too: a hand-picked selection that left published_snapshot out is published by
# the run the automation sensor starts once that selection's run has succeeded
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
    minimum_interval_seconds=settings.sensor_interval_seconds(),
    description="Materializes charts, monitoring, reports and history when their inputs change "
    "(their eager automation conditions).",
)


def show_automation_on(instance: DagsterInstance) -> bool:
    """Make the UI's "Auto-materialize" tag say what runs; True if it now says "on".

    The tag, in a job's header and launchpad whenever its assets carry automation conditions,
    reads the instance's switch from before automation ran as sensors (a daemon cursor that a new
    instance leaves unset, which the UI reads as "off"). Dagster 1.13 evaluates automation
    conditions in automation sensors (``auto_materialize: use_sensors``, on by default), and that
    switch gates nothing: what runs is ``follow_upstream_changes``, RUNNING by default, and the UI
    offers no toggle for the old switch. So it is set to "not paused" here (by `make setup` and
    `make ui`), and the tag reads "Auto-materialize on" as the sensor does. An instance that
    still uses the pre-sensor daemon (use_sensors: false) is left alone: there the switch does
    decide, and its owner sets it on the Daemons page."""
    # no public API writes it; dagster is pinned, and test_dg reads it back through GraphQL
    from dagster._daemon.asset_daemon import set_auto_materialize_paused

    if not instance.auto_materialize_use_sensors:
        return False
    set_auto_materialize_paused(instance, False)
    return True


jobs = [full_refresh_job, charts_job]
schedules = [daily_refresh]
sensors = [incoming_loan_files, move_processed_files, follow_upstream]
