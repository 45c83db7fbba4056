"""Sensors and schedules, evaluated for real against a Dagster instance."""

from __future__ import annotations

import errno
import os
import shutil
import time

import pytest
from dagster import (
    DagsterInstance,
    RunRequest,
    SkipReason,
    build_run_status_sensor_context,
    build_schedule_context,
    build_sensor_context,
    instance_for_test,
)

from loan_pipeline import automation
from loan_pipeline.automation import daily_refresh, incoming_loan_files, move_processed_files
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


def _tick(cursor: str | None, instance: DagsterInstance):
    context = build_sensor_context(cursor=cursor, instance=instance)
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


def test_a_transient_read_error_is_retried(folders, monkeypatch):
    _, _, storage = folders
    from loan_pipeline.core import ingest  # the step imports read_loan_book from here when it runs

    calls = {"n": 0}
    real = ingest.read_loan_book

    def flaky(path, max_bytes=None):
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError(errno.EAGAIN, "Resource temporarily unavailable (still being copied)")
        return real(path, max_bytes=max_bytes)

    monkeypatch.setattr(ingest, "read_loan_book", flaky)
    run = run_pipeline(SAMPLE_CSV, storage, job="full_refresh")
    assert run.result.success
    assert calls["n"] == 2
    retried = [e for e in run.result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert [e.step_key for e in retried] == ["ingest_loan_book"]


def test_a_permanent_read_error_fails_at_once_naming_the_cause(folders, monkeypatch):
    """Retries are for passing faults only: a permission error fails the step at once, and the
    message says what could not be done, where, and why (never only "Exceeded max_retries")."""
    _, _, storage = folders
    from loan_pipeline.core import ingest

    def denied(path, max_bytes=None):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(ingest, "read_loan_book", denied)
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
        assert run_pipeline(book, storage, instance=instance).result.success
    run = run_pipeline(today, storage, instance=instance)
    counts = run.table("recovery_strategies_history").groupby("snapshot_id").size()
    assert sorted(counts.tolist()) == [490, 500]
    assert {i.split("@")[0] for i in counts.index} == {"book_yesterday.csv", "book_today.csv"}
    latest = run.table("latest_recovery_strategies")
    assert len(latest) == 490 and set(latest["source_file"]) == {str(today)}
