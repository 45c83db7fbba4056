"""Nothing lost: same input -> same outputs; a killed run leaves no half-written output; exports
are safe to open in a spreadsheet."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from PIL import Image

from loan_pipeline.core.sample import write_loan_book
from loan_pipeline_tests.conftest import PROJECT_ROOT, SAMPLE_CSV, run_pipeline

TABLES = [
    "raw_loans",
    "validated_loans",
    "quarantined_loans",
    "scaled_features",
    "borrower_segments",
    "risk_scores",
    "recovery_strategies",
    "segment_profiles",
    "fairness_report",
    "population_stability",
]


def test_same_input_gives_same_outputs(tmp_path, sample_run):
    again = run_pipeline(SAMPLE_CSV, tmp_path / "again")
    assert again.result.success
    for table in TABLES:
        pd.testing.assert_frame_equal(again.table(table), sample_run.table(table), obj=table)
    for chart in sorted((sample_run.storage / "charts").glob("*.png")):
        assert (again.storage / "charts" / chart.name).read_bytes() == chart.read_bytes(), (
            chart.name
        )
    export = "exports/recovery_strategies.csv"
    assert (again.storage / export).read_bytes() == (sample_run.storage / export).read_bytes()


def test_formula_like_ids_are_neutralised_in_the_export(tmp_path):
    lines = SAMPLE_CSV.read_text().splitlines()
    lines[1] = lines[1].replace("BRW_1,", '"=HYPERLINK(""http://example.invalid"",""x"")",', 1)
    lines[2] = lines[2].replace("BRW_2,", "@SUM(A1),", 1)
    csv = tmp_path / "formulas.csv"
    csv.write_text("\n".join(lines) + "\n")
    run = run_pipeline(csv, tmp_path / "storage")
    assert run.result.success
    ids = set(run.table("recovery_strategies")["Borrower_ID"])
    assert '=HYPERLINK("http://example.invalid","x")' in ids and "@SUM(A1)" in ids  # kept as data
    exported = pd.read_csv(run.storage / "exports" / "recovery_strategies.csv")
    assert '\'=HYPERLINK("http://example.invalid","x")' in set(exported["Borrower_ID"])
    assert "'@SUM(A1)" in set(exported["Borrower_ID"])
    assert not exported["Borrower_ID"].str.match(r"^[=+\-@]").any()


def _snapshot(storage: Path) -> dict:
    """Every output, read back whole: row counts of tables, decoded charts, parsed export."""
    out: dict = {}
    with duckdb.connect(str(storage / "warehouse.duckdb"), read_only=True) as con:
        for table in TABLES:
            out[table] = con.execute(f'SELECT count(*) FROM "{table}"').fetchall()[0][0]
    for png in sorted((storage / "charts").glob("*.png")):
        image = Image.open(io.BytesIO(png.read_bytes()))
        image.load()  # raises on a truncated file
        out[png.name] = image.size
    out["export_rows"] = len(pd.read_csv(storage / "exports" / "recovery_strategies.csv"))
    for model in sorted((storage / "models").glob("*.pkl")):
        import pickle

        pickle.loads(model.read_bytes())  # raises on a truncated file
        out[model.name] = True
    return out


@pytest.mark.slow
def test_sigkill_midway_leaves_every_output_whole(tmp_path):
    """Kill `python -m loan_pipeline run` at several moments of a run on a bigger book: every
    table, chart, model and export is readable and either the previous run's or the new one's."""
    storage = tmp_path / "storage"
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {k: v for k, v in os.environ.items() if k != "LOAN_BOOK_CSV"}
    env.update(DAGSTER_HOME=str(home), LOAN_PIPELINE_STORAGE=str(storage))
    big = write_loan_book(tmp_path / "big.csv", rows=20_000, seed=11)

    def cli(csv: Path) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "loan_pipeline", "run", "--csv", str(csv)],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    assert cli(SAMPLE_CSV).wait(timeout=600) == 0
    small = _snapshot(storage)
    started = time.monotonic()
    assert cli(big).wait(timeout=600) == 0
    full = time.monotonic() - started
    large = _snapshot(storage)
    assert small["validated_loans"] == 500 and large["validated_loans"] == 20_000

    assert cli(SAMPLE_CSV).wait(timeout=600) == 0  # back to the small book
    kills = 0
    for fraction in (0.4, 0.6, 0.8):
        proc = cli(big)
        time.sleep(full * fraction)
        if proc.poll() is not None:
            continue
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        kills += 1
        state = _snapshot(storage)
        for key, value in state.items():
            assert value in (small.get(key), large.get(key)), (fraction, key, value)
    assert kills >= 2, "the run finished before most kill points; use a bigger book"
    # and a normal run afterwards succeeds, cleaning up
    assert cli(big).wait(timeout=600) == 0
    assert _snapshot(storage) == large
    leftovers = [p for p in storage.rglob("*.tmp")]
    assert leftovers == []
