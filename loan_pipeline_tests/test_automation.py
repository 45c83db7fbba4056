"""Sensors and schedules, evaluated for real against a Dagster instance."""

from __future__ import annotations

import builtins
import errno
import os
import shutil
import threading
import time
from pathlib import Path

import pytest
from dagster import (
    DagsterEvent,
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    RunRequest,
    SkipReason,
    build_run_status_sensor_context,
    build_schedule_context,
    build_sensor_context,
    instance_for_test,
)

from loan_pipeline import automation, settings
from loan_pipeline.automation import daily_refresh, incoming_loan_files, move_processed_files
from loan_pipeline.definitions import defs
from loan_pipeline_tests.conftest import SAMPLE_CSV, environment, run_pipeline


@pytest.fixture
def folders(tmp_path):
    incoming, processed, storage = (
        tmp_path / "incoming",
        tmp_path / "processed",
        tmp_path / "storage",
    )
    incoming.mkdir()
    with environment(
        LOAN_PIPELINE_INCOMING=str(incoming),
        LOAN_PIPELINE_PROCESSED=str(processed),
        LOAN_PIPELINE_STORAGE=str(storage),
    ):
        yield incoming, processed, storage


def _tick(cursor: str | None, instance: DagsterInstance, definitions=None):
    context = build_sensor_context(cursor=cursor, instance=instance, definitions=definitions)
    result = incoming_loan_files(context)
    requests = result if isinstance(result, list) else []
    return requests, result, context.cursor


def test_sensor_runs_each_file_once_and_again_when_edited(folders):
    incoming, _, _ = folders
    instance = DagsterInstance.ephemeral()
    requests, result, cursor = _tick(None, instance)
    assert isinstance(result, SkipReason) and "no new or changed CSV" in result.skip_message

    first = incoming / "book_2026-11-26.csv"
    shutil.copy(SAMPLE_CSV, first)
    requests, _, cursor = _tick(cursor, instance)
    assert len(requests) == 1
    request = requests[0]
    assert isinstance(request, RunRequest)
    assert request.run_key.startswith(f"book_2026-11-26.csv:{first.stat().st_size}:")
    assert request.run_config["ops"]["ingest_loan_book"]["config"]["csv_path"] == str(first)
    assert request.tags[automation.TAG_FILE] == str(first)

    # same file again: nothing
    requests, result, cursor = _tick(cursor, instance)
    assert requests == [] and isinstance(result, SkipReason)
    # re-copied identical file (new mtime, same bytes): still nothing
    time.sleep(0.01)
    shutil.copy(SAMPLE_CSV, first)
    os.utime(first, None)
    requests, result, cursor = _tick(cursor, instance)
    assert requests == [], "an identical re-copy must not start a second run"
    # edited file: a new run with a new key
    with open(first, "a") as fh:
        fh.write(
            SAMPLE_CSV.read_text()
            .splitlines()[1]
            .replace("BRW_1,", "BRW_9999,")
            .replace("LN_1,", "LN_9999,")
            + "\n"
        )
    requests, _, cursor = _tick(cursor, instance)
    assert len(requests) == 1 and requests[0].run_key != request.run_key


def test_a_bad_file_fails_its_own_run_and_the_next_good_file_runs_and_is_moved(folders):
    incoming, processed, storage = folders
    instance = DagsterInstance.ephemeral()
    bad = incoming / "a_bad.csv"
    text = SAMPLE_CSV.read_text()
    bad.write_text(text.replace("Age,", "Borrower_Age,", 1))
    good = incoming / "b_good.csv"
    shutil.copy(SAMPLE_CSV, good)
    requests, _, _ = _tick(None, instance)
    assert [r.tags[automation.TAG_FILE] for r in requests] == [str(bad), str(good)]

    outcomes = {}
    for request in requests:
        path = request.tags[automation.TAG_FILE]
        run = run_pipeline(path, storage, instance=instance)
        outcomes[path] = run.result
    assert not outcomes[str(bad)].success
    message = (
        outcomes[str(bad)]
        .get_step_failure_events()[0]
        .step_failure_data.user_failure_data.description
    )
    assert "required column(s) missing: Age (found 'Borrower_Age': renamed?)" in message
    assert outcomes[str(good)].success

    # the run-status sensor moves a file only after its run succeeded
    for path, result in outcomes.items():
        dagster_run = instance.get_run_by_id(result.run_id)
        tagged = dagster_run.with_tags({**dagster_run.tags, automation.TAG_FILE: path})
        if result.success:
            context = build_run_status_sensor_context(
                sensor_name="move_processed_files",
                dagster_instance=instance,
                dagster_run=tagged,
                dagster_event=result.get_run_success_event(),
            )
            move_processed_files(context)
    assert not good.exists() and (processed / "b_good.csv").exists()
    assert bad.exists(), "a failed file stays where it was dropped"


def test_schedule_skips_when_neither_data_nor_code_changed(folders, monkeypatch, tmp_path):
    _, _, storage = folders
    book = tmp_path / "book.csv"
    shutil.copy(SAMPLE_CSV, book)
    with instance_for_test() as instance, environment(LOAN_BOOK_CSV=str(book)):
        first = daily_refresh(build_schedule_context(instance=instance))
        assert isinstance(first, RunRequest)  # nothing ran yet
        assert first.tags[automation.TAG_TRIGGER] == "schedule: data and code changed"
        run = run_pipeline(book, storage, instance=instance)
        assert run.result.success

        skipped = daily_refresh(build_schedule_context(instance=instance))
        assert isinstance(skipped, SkipReason)
        assert f"nothing changed since run {run.result.run_id}" in skipped.skip_message
        assert "same data (book.csv, sha256" in skipped.skip_message

        monkeypatch.setattr(automation, "code_version", lambda: "new-code")
        changed = daily_refresh(build_schedule_context(instance=instance))
        assert isinstance(changed, RunRequest)
        assert changed.tags[automation.TAG_TRIGGER] == "schedule: code changed"
        monkeypatch.undo()

        with open(book, "a") as fh:
            fh.write("\n")
        data = daily_refresh(build_schedule_context(instance=instance))
        assert (
            isinstance(data, RunRequest)
            and data.tags[automation.TAG_TRIGGER] == "schedule: data changed"
        )


def test_schedule_is_daily_at_six_in_the_configured_timezone():
    assert daily_refresh.cron_schedule == "0 6 * * *"
    assert daily_refresh.execution_timezone == os.environ.get("LOAN_PIPELINE_TIMEZONE", "UTC")


# --- LOAN_PIPELINE_RUN_CONFIG: the standing run config of the sensor's and the schedule's runs --

REPOSITORY = defs.get_repository_def()
STANDING = """\
ops:
  ingest_loan_book:
    config: {csv_path: /not/this/book.csv, max_quarantine_share: 0.2}
  recovery_strategies:
    config:
      experiment: {name: standing-exp, share: 0.3, eligible: [legal action, reminders]}
resources:
  analysis:
    config: {method: notebook}
"""


def test_the_sensors_and_the_schedules_runs_carry_the_run_config_file(folders, tmp_path):
    incoming, _, _ = folders
    dropped, book = incoming / "book.csv", tmp_path / "scheduled.csv"
    shutil.copy(SAMPLE_CSV, dropped)
    shutil.copy(SAMPLE_CSV, book)
    with instance_for_test() as instance, environment(LOAN_BOOK_CSV=str(book)):
        # unset: the book alone, as before the setting existed
        [plain], _, _ = _tick(None, instance, defs)
        assert plain.run_config == {
            "ops": {"ingest_loan_book": {"config": {"csv_path": str(dropped)}}}
        }
        assert automation.TAG_CONFIG not in plain.tags

        run_yaml = tmp_path / "run.yaml"
        run_yaml.write_text(STANDING)
        with environment(LOAN_PIPELINE_RUN_CONFIG=str(run_yaml)):
            [request], _, _ = _tick(None, instance, defs)
            scheduled = daily_refresh(
                build_schedule_context(instance=instance, repository_def=REPOSITORY)
            )
        assert isinstance(scheduled, RunRequest)
        for run_request, csv in ((request, dropped), (scheduled, book)):
            ops = run_request.run_config["ops"]
            # the file's settings kept, its csv_path overruled by the book this run is for
            assert ops["ingest_loan_book"]["config"] == {
                "csv_path": str(csv),
                "max_quarantine_share": 0.2,
            }
            assert ops["recovery_strategies"]["config"]["experiment"] == {
                "name": "standing-exp",
                "share": 0.3,
                "eligible": ["legal action", "reminders"],
            }
            assert run_request.run_config["resources"] == {
                "analysis": {"config": {"method": "notebook"}}
            }
            assert run_request.tags[automation.TAG_CONFIG] == str(run_yaml)


BAD_FILES = {
    "missing": (None, "cannot be read: [Errno 2] No such file or directory"),
    "not YAML": ("ops: [unclosed\n", "cannot be read: while parsing"),
    "not run config": ("opps: {}\n", "must be a mapping of ops: and resources:, not opps"),
    "a list": ("- ops\n", "must be a mapping of ops: and resources:"),
    "an unknown op": (
        "ops: {recovery_strategy: {config: {}}}\n",
        'does not fit job full_refresh: Received unexpected config entry "recovery_strategy"',
    ),
    "a share that is no number": (
        "ops: {recovery_strategies: {config: {experiment: {share: lots}}}}\n",
        "does not fit job full_refresh: Invalid scalar at path root:ops:recovery_strategies",
    ),
}


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_a_run_config_file_that_cannot_be_used_fails_the_tick_naming_it(folders, tmp_path, kind):
    incoming, _, _ = folders
    text, problem = BAD_FILES[kind]
    run_yaml = tmp_path / "run.yaml"
    if text is not None:
        run_yaml.write_text(text)
    dropped, book = incoming / "book.csv", tmp_path / "scheduled.csv"
    shutil.copy(SAMPLE_CSV, dropped)
    shutil.copy(SAMPLE_CSV, book)
    instance = DagsterInstance.ephemeral()
    with environment(LOAN_PIPELINE_RUN_CONFIG=str(run_yaml), LOAN_BOOK_CSV=str(book)):
        for evaluate in (
            lambda: incoming_loan_files(build_sensor_context(instance=instance, definitions=defs)),
            lambda: daily_refresh(
                build_schedule_context(instance=instance, repository_def=REPOSITORY)
            ),
        ):
            with pytest.raises(settings.RunConfigFileError) as raised:
                evaluate()
            message = str(raised.value)
            assert message.startswith(f"LOAN_PIPELINE_RUN_CONFIG: the run config {run_yaml} ")
            assert problem in message
    # nothing ran without the config: once the file is mended, the waiting file runs with it
    run_yaml.write_text(STANDING)
    with environment(LOAN_PIPELINE_RUN_CONFIG=str(run_yaml)):
        [request], _, _ = _tick(None, instance, defs)
    assert request.tags[automation.TAG_FILE] == str(dropped)
    assert request.run_config["resources"] == {"analysis": {"config": {"method": "notebook"}}}


def test_a_transient_read_error_is_retried(folders, monkeypatch):
    _, _, storage = folders
    # the step reads the book with ingest_verdict.read_whole, which looks read_loan_book up there
    from loan_pipeline.core import ingest_verdict

    calls = {"n": 0}
    real = ingest_verdict.read_loan_book

    def flaky(path, max_bytes=None):
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError(errno.EAGAIN, "Resource temporarily unavailable (still being copied)")
        return real(path, max_bytes=max_bytes)

    monkeypatch.setattr(ingest_verdict, "read_loan_book", flaky)
    run = run_pipeline(SAMPLE_CSV, storage, job="full_refresh")
    assert run.result.success
    assert calls["n"] == 2
    retried = [e for e in run.result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert [e.step_key for e in retried] == ["ingest_loan_book"]


def test_a_permanent_read_error_fails_at_once_naming_the_cause(folders, monkeypatch):
    """Retries are for passing faults only: a permission error fails the step at once, and the
    message says what could not be done, where, and why (never only "Exceeded max_retries")."""
    _, _, storage = folders
    from loan_pipeline.core import ingest_verdict

    def denied(path, max_bytes=None):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(ingest_verdict, "read_loan_book", denied)
    run = run_pipeline(SAMPLE_CSV, storage, job="full_refresh")
    assert not run.result.success
    assert not [e for e in run.result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    (failure,) = run.result.get_step_failure_events()
    error = failure.step_failure_data.error
    while error.cause is not None and "DagsterExecution" in (error.cls_name or ""):
        error = error.cause
    assert error.message.startswith("loan_pipeline.store.files.StorageError: could not read")
    assert f"{SAMPLE_CSV}: permission denied" in error.message


def test_bad_data_is_not_retried(folders, tmp_path):
    _, _, storage = folders
    bad = tmp_path / "bad.csv"
    bad.write_text(SAMPLE_CSV.read_text().replace("Age,", "Borrower_Age,", 1))
    run = run_pipeline(bad, storage)
    assert not run.result.success
    assert not [e for e in run.result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]


def test_history_keeps_each_snapshot_and_latest_is_the_newest(folders, tmp_path):
    _, _, storage = folders
    instance = DagsterInstance.ephemeral()
    yesterday = tmp_path / "book_yesterday.csv"
    today = tmp_path / "book_today.csv"
    shutil.copy(SAMPLE_CSV, yesterday)
    lines = SAMPLE_CSV.read_text().splitlines()
    today.write_text("\n".join(lines[:-10]) + "\n")  # today's book lost 10 loans
    for book in (yesterday, today, today):  # the same snapshot twice: replaced, not doubled
        run = run_pipeline(book, storage, instance=instance)
        assert run.result.success
    counts = run.table("recovery_strategies_history").groupby("snapshot_id").size()
    assert sorted(counts.tolist()) == [490, 500]
    assert {i.split("@")[0] for i in counts.index} == {"book_yesterday.csv", "book_today.csv"}
    latest = run.table("latest_recovery_strategies")
    assert len(latest) == 490 and set(latest["source_file"]) == {str(today)}
    # today's book run again is compared with yesterday's, not with itself: 10 borrowers left
    compared = run.materialized()["roll_rates"]
    assert compared["compared"].value.startswith("book_yesterday.csv@")
    assert (compared["left_the_book"].value, compared["new_to_the_book"].value) == (10, 0)
    # the shipped sample has no open loan: nobody delinquent, no cure rate to give
    cures = run.table("cure_rates")
    assert cures[["dimension", "delinquent"]].values.tolist() == [["all", 0]]
    assert cures["cure_rate"].isna().all()


# --- entries in the incoming folder that are not plain CSV files ------------------------------


def _tick_within(cursor: str | None, instance: DagsterInstance, seconds: float = 20):
    """``_tick`` in a thread, failing the test if it has not returned after ``seconds``.

    A sensor that opens a FIFO or reads /dev/zero never returns; the thread is a daemon so the
    test can fail instead of hanging the suite (the stuck read itself cannot be interrupted)."""
    outcome: dict = {}

    def evaluate():
        try:
            outcome["value"] = _tick(cursor, instance)
        except BaseException as err:  # re-raised in the test's thread below
            outcome["error"] = err

    thread = threading.Thread(target=evaluate, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        pytest.fail(f"the sensor tick did not return within {seconds} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def _requested_files(requests) -> list[str]:
    return [r.tags[automation.TAG_FILE] for r in requests]


def _spy_on_opens(monkeypatch) -> list[str]:
    """Record the real path of every file opened through os.open or open() from now on."""
    opened: list[str] = []
    real_os_open, real_open = os.open, builtins.open

    def os_open(path, *args, **kwargs):
        opened.append(os.path.realpath(path))
        return real_os_open(path, *args, **kwargs)

    def open_(file, *args, **kwargs):
        if isinstance(file, (str, bytes, os.PathLike)):
            opened.append(os.path.realpath(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(os, "open", os_open)
    monkeypatch.setattr(builtins, "open", open_)
    return opened


def test_a_directory_named_csv_is_skipped_and_the_good_file_beside_it_runs(folders, capfd):
    incoming, _, _ = folders
    instance = DagsterInstance.ephemeral()
    (incoming / "x.csv").mkdir()
    requests, result, cursor = _tick_within(None, instance)
    assert requests == [] and isinstance(result, SkipReason)
    assert "x.csv is a directory" in result.skip_message

    good = incoming / "good.csv"
    shutil.copy(SAMPLE_CSV, good)
    requests, _, _ = _tick_within(cursor, instance)
    assert _requested_files(requests) == [str(good)]
    # with a run requested there is no skip message: the reason goes to the tick's log
    assert "x.csv is a directory" in capfd.readouterr().err


@pytest.mark.timeout(60)
def test_a_fifo_named_csv_is_never_opened_and_the_good_file_runs(folders):
    incoming, _, _ = folders
    instance = DagsterInstance.ephemeral()
    fifo = incoming / "f.csv"
    os.mkfifo(fifo)
    good = incoming / "good.csv"
    shutil.copy(SAMPLE_CSV, good)
    try:
        requests, _, cursor = _tick_within(None, instance)
    finally:
        # if the sensor is stuck opening the FIFO, a writer lets its open return
        try:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass  # no reader waiting: the sensor did not open it
    assert _requested_files(requests) == [str(good)]
    _, result, _ = _tick_within(cursor, instance)
    assert isinstance(result, SkipReason) and "f.csv is a FIFO" in result.skip_message


@pytest.mark.timeout(60)
def test_a_link_to_dev_zero_is_skipped(folders):
    incoming, _, _ = folders
    instance = DagsterInstance.ephemeral()
    (incoming / "z.csv").symlink_to("/dev/zero")
    good = incoming / "good.csv"
    shutil.copy(SAMPLE_CSV, good)
    requests, _, cursor = _tick_within(None, instance)
    assert _requested_files(requests) == [str(good)]
    _, result, _ = _tick_within(cursor, instance)
    assert "z.csv links outside the incoming folder" in result.skip_message


def test_a_link_out_of_the_incoming_folder_is_not_followed(folders, tmp_path, monkeypatch, capfd):
    incoming, _, _ = folders
    instance = DagsterInstance.ephemeral()
    secret = tmp_path / "elsewhere" / "secret.csv"
    secret.parent.mkdir()
    marker = "secret-first-line-7f3a9c"
    secret.write_text(f"{marker}\n1,2,3\n")
    link = incoming / "y.csv"
    link.symlink_to(secret)

    opened = _spy_on_opens(monkeypatch)
    requests, result, _ = _tick_within(None, instance)
    monkeypatch.undo()
    assert requests == [] and isinstance(result, SkipReason)
    assert "y.csv links outside the incoming folder" in result.skip_message
    assert str(secret.resolve()) not in opened, "the link's target was opened"
    assert marker not in result.skip_message and marker not in capfd.readouterr().err


def test_a_link_inside_the_incoming_folder_is_not_followed_either(folders):
    incoming, _, _ = folders
    instance = DagsterInstance.ephemeral()
    good = incoming / "good.csv"
    shutil.copy(SAMPLE_CSV, good)
    (incoming / "latest.csv").symlink_to(good)
    requests, _, cursor = _tick_within(None, instance)
    assert _requested_files(requests) == [str(good)]
    _, result, _ = _tick_within(cursor, instance)
    assert "latest.csv is a symbolic link" in result.skip_message


def test_an_unreadable_file_is_skipped(folders):
    incoming, _, _ = folders
    instance = DagsterInstance.ephemeral()
    locked = incoming / "locked.csv"
    shutil.copy(SAMPLE_CSV, locked)
    locked.chmod(0)
    # root (with CAP_DAC_OVERRIDE) reads a chmod 000 file anyway: nothing to test then
    try:
        locked.open("rb").close()
    except PermissionError:
        pass
    else:
        locked.chmod(0o644)
        pytest.skip(f"this process (euid {os.geteuid()}) can read a chmod 000 file (root)")
    good = incoming / "good.csv"
    shutil.copy(SAMPLE_CSV, good)
    try:
        requests, _, cursor = _tick_within(None, instance)
        assert _requested_files(requests) == [str(good)]
        _, result, _ = _tick_within(cursor, instance)
        assert "locked.csv could not be read" in result.skip_message
    finally:
        locked.chmod(0o644)


@pytest.mark.parametrize(
    ("trouble", "reason"),
    [
        (PermissionError(13, "Permission denied"), "could not be read (Permission denied)"),
        ("vanish", "vanished before it could be read"),
    ],
)
def test_a_file_that_cannot_be_opened_when_hashed_is_skipped(folders, monkeypatch, trouble, reason):
    """Between listing and hashing a file can be deleted or lose its permissions (simulated
    here, so the test also holds when run as root)."""
    incoming, _, _ = folders
    instance = DagsterInstance.ephemeral()
    flaky = incoming / "a_flaky.csv"
    shutil.copy(SAMPLE_CSV, flaky)
    good = incoming / "b_good.csv"
    shutil.copy(SAMPLE_CSV, good)
    real_os_open, real_open = os.open, builtins.open

    def interfere(path):
        if os.path.basename(path) == flaky.name:
            if trouble == "vanish":
                flaky.unlink(missing_ok=True)
            else:
                raise trouble

    def os_open(path, *args, **kwargs):
        interfere(path)
        return real_os_open(path, *args, **kwargs)

    def open_(file, *args, **kwargs):
        if isinstance(file, (str, os.PathLike)):
            interfere(os.fspath(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(os, "open", os_open)
    monkeypatch.setattr(builtins, "open", open_)
    requests, _, cursor = _tick_within(None, instance)
    assert _requested_files(requests) == [str(good)]
    if trouble == "vanish":
        assert not flaky.exists()
        shutil.copy(SAMPLE_CSV, flaky)  # and again, to see the reason in the skip message
    _, result, _ = _tick_within(cursor, instance)
    monkeypatch.undo()
    assert f"a_flaky.csv {reason}" in result.skip_message


def _succeeded_run_context(instance: DagsterInstance, source: Path):
    run = DagsterRun(
        job_name="full_refresh",
        run_id="0f1e2d3c-0000-4000-8000-000000000001",
        tags={automation.TAG_FILE: str(source), automation.TAG_SHA: "ab" * 32},
        status=DagsterRunStatus.SUCCESS,
    )
    return build_run_status_sensor_context(
        sensor_name="move_processed_files",
        dagster_instance=instance,
        dagster_run=run,
        dagster_event=DagsterEvent(event_type_value="PIPELINE_SUCCESS", job_name="full_refresh"),
    )


def test_move_does_not_follow_a_link_out_of_the_incoming_folder(folders, tmp_path):
    incoming, processed, _ = folders
    instance = DagsterInstance.ephemeral()
    outside = tmp_path / "elsewhere" / "book.csv"
    outside.parent.mkdir()
    shutil.copy(SAMPLE_CSV, outside)
    link = incoming / "book.csv"
    link.symlink_to(outside)

    result = move_processed_files(_succeeded_run_context(instance, link))
    assert isinstance(result, SkipReason)
    assert "book.csv links outside the incoming folder" in result.skip_message
    assert link.is_symlink() and outside.read_bytes() == SAMPLE_CSV.read_bytes()
    assert not (processed / "book.csv").exists() and not (processed / "book.csv").is_symlink()

    # a regular file in the incoming folder is still moved
    link.unlink()
    shutil.copy(SAMPLE_CSV, link)
    assert move_processed_files(_succeeded_run_context(instance, link)) is None
    assert not link.exists() and (processed / "book.csv").read_bytes() == SAMPLE_CSV.read_bytes()
