"""`python -m loan_pipeline run` (what `make run` calls) against a real Dagster instance."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from dagster import AssetKey, DagsterEventType, DagsterInstance, DagsterRunStatus

from loan_pipeline_tests.conftest import PROJECT_ROOT, SAMPLE_CSV, environment
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


def _cli_here(args: list[str], env: dict[str, str], capsys) -> subprocess.CompletedProcess:
    """The command's own function (``main``) in this process, with ``env``'s instance and
    storage: for the tests about what a run decides and says. The process itself (start-up,
    exit code, no traceback on stderr) is what the tests that use ``_cli`` are about."""
    from loan_pipeline.__main__ import main

    capsys.readouterr()
    with environment(
        DAGSTER_HOME=env["DAGSTER_HOME"], LOAN_PIPELINE_STORAGE=env["LOAN_PIPELINE_STORAGE"]
    ):
        code = main(args)
    out = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out.out, out.err)


def _summary(stdout: str) -> list[str]:
    """The run summary the CLI prints: from its header line to the end."""
    lines = stdout.rstrip("\n").splitlines()
    (start,) = [i for i, line in enumerate(lines) if line.startswith("Loan pipeline run ")]
    return lines[start:]


def _asset_rows(summary: list[str]) -> dict[str, int | None]:
    """The summary's asset lines (in their order): key -> row count, None where not a table."""
    start = summary.index("Assets, in graph order (each after what it reads), with table rows:")
    rows = {}
    for line in summary[start + 1 :]:
        if not line.startswith("  "):
            return rows
        key, *count = line.split()
        rows[key] = int(count[0].replace(",", "")) if count else None
    return rows


def _last_log_entry(instance: DagsterInstance, run_id: str) -> str:
    """The run's last log message (not an event of Dagster's own), as the UI's run page lists it."""
    messages = [e for e in instance.all_logs(run_id) if not e.is_dagster_event]
    return messages[-1].user_message


def _check(instance: DagsterInstance, run_id: str, name: str):
    (evaluation,) = [
        r.event_log_entry.dagster_event.event_specific_data
        for r in instance.get_records_for_run(
            run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION
        ).records
        if r.event_log_entry.dagster_event.event_specific_data.check_name == name
    ]
    return evaluation


def test_run_materializes_everything_and_records_the_run(tmp_path):
    from loan_pipeline.definitions import defs

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
        run_id = runs[0].run_id
        summary = _summary(done.stdout)
        # the UI shows the same summary as the run's last log entry (published_snapshot's)
        assert _last_log_entry(instance, run_id) == "\n".join(summary)
        checks = instance.get_records_for_run(
            run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION
        ).records
        stable = _check(instance, run_id, "chosen_k_is_stable")
        gate = _check(instance, run_id, "model_beats_base_rate")

    # every asset, in the order of the job's graph (each after the assets it reads), not
    # alphabetical; a table with its row count, a model or a chart without one
    rows = _asset_rows(summary)
    graph = defs.resolve_job_def("full_refresh").asset_layer.asset_graph
    assert list(rows) == [k.to_user_string() for k in graph.toposorted_asset_keys]
    assert list(rows) != sorted(rows)
    upstream = graph.asset_dep_graph["upstream"]
    for i, key in enumerate(rows):
        assert {u.to_user_string() for u in upstream[AssetKey(key)]} <= set(list(rows)[:i]), key
    assert set(rows) == set(EXPECTED)
    assert rows["validated_loans"] == rows["recovery_strategies"] == 500
    assert rows["quarantined_loans"] == 0
    assert rows["risk_model"] is None and rows["chart_calibration"] is None

    # the failed WARN check, with the check's own reason, on one line
    assert not stable.passed and stable.description.startswith("no stable segmentation: k=2")
    assert f"Checks:    {len(checks)} evaluated, 1 failed (1 WARN)" in summary
    assert f"  WARN  cluster_model / chosen_k_is_stable: {stable.description}" in summary
    # the policy and why: the gate's own figures
    skill = gate.metadata["brier_skill_vs_base_rate"].value
    assert gate.passed and skill >= 0.01
    assert (
        f"Policy:    score bands, because the risk model passed model_beats_base_rate "
        f"(Brier skill {skill:.4f} >= min_skill 0.0100) and coefficient_signs_agree_with_data"
    ) in summary
    assert "Quarantined: 0 of 500 rows (0.0%); see table quarantined_loans" in summary
    storage = tmp_path / "storage"
    paths = {
        "Warehouse: ": storage / "warehouse.duckdb",
        "Charts:    ": storage / "charts",
        "Export:    ": storage / "exports" / "recovery_strategies.csv",
        "Model card: ": storage / "reports" / "model_card.md",
    }
    for label, path in paths.items():
        (line,) = [line for line in summary if line.startswith(label)]
        assert line.removeprefix(label).split(" (")[0] == str(path) and path.exists(), line
    assert summary[-1].startswith(f"Published: snapshot {run_id} (storage/current; ")

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


def test_run_config_from_a_file_reaches_the_steps(tmp_path, capsys):
    """``--config`` takes run config as the launchpad does: here a looser quarantine threshold
    lets through a file the default 5 % stops (the test above), its bad rows set aside and reported;
    a file that is not run config starts nothing."""
    bad = _with_bad_ages(tmp_path, range(3, 33))
    config = tmp_path / "run.yaml"
    config.write_text("ops:\n  ingest_loan_book:\n    config:\n      max_quarantine_share: 0.1\n")
    done = _cli_here(["run", "--csv", str(bad), "--config", str(config)], _env(tmp_path), capsys)
    assert done.returncode == 0, done.stderr
    assert "Quarantined: 30 of 500 rows (6.0%)" in done.stdout

    # a csv_path in the file names the book when --csv does not, in every message
    elsewhere = tmp_path / "elsewhere.csv"
    config.write_text(f"ops:\n  ingest_loan_book:\n    config:\n      csv_path: {elsewhere}\n")
    done = _cli_here(["run", "--config", str(config)], _env(tmp_path), capsys)
    assert done.returncode == 1
    assert f"from {elsewhere} ..." in done.stdout
    assert f"FAILED (source: {elsewhere})" in done.stderr
    assert f"{elsewhere}: loan book not found" in done.stderr

    config.write_text("opps:\n  ingest_loan_book: {}\n")
    done = _cli_here(["run", "--config", str(config)], _env(tmp_path), capsys)
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


def test_a_model_that_fails_its_gate_shows_the_error_and_the_fallback_policy(tmp_path, capsys):
    """A bar the risk model cannot pass (min_skill 0.99): its ERROR check is listed first, with
    its reason, and the policy line says the strategies fell back, and on what figures."""
    config = tmp_path / "run.yaml"
    config.write_text("ops:\n  risk_model:\n    config:\n      min_skill: 0.99\n")
    done = _cli_here(["run", "--config", str(config)], _env(tmp_path), capsys)
    assert done.returncode == 0, done.stderr
    summary = _summary(done.stdout)
    failed = [line for line in summary if line.startswith(("  ERROR ", "  WARN  "))]
    assert failed[0] == (
        "  ERROR risk_model / model_beats_base_rate: The model does not beat the base rate; "
        "recovery_strategies uses the rules-based fallback policy instead of the scores."
    )
    assert failed[-1].startswith("  WARN  cluster_model / chosen_k_is_stable: ")
    (policy,) = [line for line in summary if line.startswith("Policy:")]
    assert policy.startswith(
        "Policy:    rules-based fallback, because the risk model failed model_beats_base_rate "
        "(Brier skill 0."
    )
    assert policy.endswith(
        " < min_skill 0.9900): the strategies come from the rules on arrears, not from the scores"
    )
