"""`python -m loan_pipeline run` (what `make run` calls) against a real Dagster instance."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from dagster import DagsterInstance, DagsterRunStatus

from loan_pipeline_tests.conftest import PROJECT_ROOT, SAMPLE_CSV
from loan_pipeline_tests.test_definitions import EXPECTED


def _env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "dagster_home"
    home.mkdir(exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {k: v for k, v in os.environ.items() if k not in {"LOAN_BOOK_CSV"}}
    env.update(DAGSTER_HOME=str(home), LOAN_PIPELINE_STORAGE=str(tmp_path / "storage"))
    return env


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "loan_pipeline", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=PROJECT_ROOT,
        timeout=600,
    )


def test_run_materializes_everything_and_records_the_run(tmp_path):
    env = _env(tmp_path)
    done = _cli(["run"], env)
    assert done.returncode == 0, done.stderr
    assert f"succeeded: {len(EXPECTED)} assets" in done.stdout
    assert str(SAMPLE_CSV) in done.stdout
    # the shipped sample has no groups (docs/method.md): the summary says so
    assert "Segments:  no stable segmentation: k=2 shown as a convenient split" in done.stdout
    charts = sorted(p.name for p in (tmp_path / "storage" / "charts").glob("*.png"))
    assert len(charts) == sum(key.startswith("chart_") for key in EXPECTED)
    assert (tmp_path / "storage" / "exports" / "recovery_strategies.csv").exists()
    with DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        runs = instance.get_runs()
        assert len(runs) == 1 and runs[0].status == DagsterRunStatus.SUCCESS
        assert runs[0].job_name == "full_refresh"

    # The multiprocess executor stays selectable: redraw the charts with it via the Dagster CLI.
    config = tmp_path / "multiprocess.yaml"
    config.write_text("execution:\n  config:\n    multiprocess:\n      max_concurrent: 2\n")
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "dagster"),
            "job",
            "execute",
            "-m",
            "loan_pipeline.definitions",
            "-a",
            "defs",
            "-j",
            "charts_only",
            "-c",
            str(config),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=PROJECT_ROOT,
        timeout=600,
    )
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-3000:]
    assert "Executing steps using multiprocess executor" in log, log[-3000:]


def test_missing_file_is_a_readable_message_not_a_traceback(tmp_path):
    done = _cli(["run", "--csv", str(tmp_path / "nope.csv")], _env(tmp_path))
    assert done.returncode == 1
    assert f"{tmp_path / 'nope.csv'}: loan book not found" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert not (tmp_path / "storage" / "warehouse.duckdb").exists()


def _with_bad_ages(tmp_path: Path, rows: range) -> Path:
    lines = SAMPLE_CSV.read_text().splitlines()
    header = lines[0].split(",")
    for i in rows:
        row = lines[i].split(",")
        row[header.index("Age")] = "-7"
        lines[i] = ",".join(row)
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(lines) + "\n")
    return bad


def test_a_bad_row_is_quarantined_and_reported(tmp_path):
    done = _cli(["run", "--csv", str(_with_bad_ages(tmp_path, range(3, 4)))], _env(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "Quarantined: 1 of 500 rows (0.2%)" in done.stdout


def test_too_many_bad_rows_name_file_column_rule_and_rows(tmp_path):
    bad = _with_bad_ages(tmp_path, range(3, 33))
    done = _cli(["run", "--csv", str(bad)], _env(tmp_path))
    assert done.returncode == 1
    assert f"{bad}: 30 of 500 rows (6.0%) failed validation, over the 5.0% threshold" in done.stderr
    assert (
        "column Age, rule greater_than_or_equal_to(18): 30 row(s); e.g. line 4: '-7'; line 5: '-7'; "
        "line 6: '-7'; line 7: '-7'; line 8: '-7'\n" in done.stderr
    )
    assert "Traceback" not in done.stderr


def test_run_config_from_a_file_reaches_the_steps(tmp_path):
    """``--config`` takes run config as the launchpad does: here a looser quarantine threshold
    lets the same bad file through; a file that is not run config starts nothing."""
    bad = _with_bad_ages(tmp_path, range(3, 33))
    config = tmp_path / "run.yaml"
    config.write_text("ops:\n  ingest_loan_book:\n    config:\n      max_quarantine_share: 0.1\n")
    done = _cli(["run", "--csv", str(bad), "--config", str(config)], _env(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "Quarantined: 30 of 500 rows (6.0%)" in done.stdout

    config.write_text("opps:\n  ingest_loan_book: {}\n")
    done = _cli(["run", "--config", str(config)], _env(tmp_path))
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"Not started: the run config {config} must be a mapping of ops: and resources:, not opps"
    )


def test_the_imports_made_ahead_are_the_ones_the_steps_make():
    """`run` imports the steps' heavy modules in a thread while the CSV is read; a renamed
    module would make that silently useless, so each name must import, and each must be one a
    step really imports (its top-level package appears in the code of the steps)."""
    import importlib

    from loan_pipeline.__main__ import _STEP_IMPORTS

    sources = "\n".join(
        p.read_text()
        for p in (PROJECT_ROOT / "loan_pipeline").rglob("*.py")
        if p.name != "__main__.py"
    )
    for name in _STEP_IMPORTS:
        importlib.import_module(name)
        assert f"from {name} import" in sources or f"import {name}" in sources, name


def test_setup_home_makes_an_instance_with_one_run_at_a_time(tmp_path):
    """`make setup` (python -m loan_pipeline setup-home) writes the instance's dagster.yaml: the
    run queue lets one run at a time write the storage (the UI, the schedule, the sensors)."""
    env = {k: v for k, v in os.environ.items()} | {"DAGSTER_HOME": str(tmp_path / "home")}
    done = _cli(["setup-home"], env)
    assert done.returncode == 0, done.stderr
    with DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        assert instance.get_concurrency_config().run_queue_config.max_concurrent_runs == 1
