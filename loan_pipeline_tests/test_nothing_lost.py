"""Nothing lost: same input -> same outputs; exports are safe to open in a spreadsheet. (A killed
run leaving nothing half-published: test_publication.py.)"""

from __future__ import annotations

import pandas as pd

from loan_pipeline_tests.conftest import SAMPLE_CSV, run_pipeline
from loan_pipeline_tests.test_contracts import run_selected, strategy_assets

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
    # the strategies, their export and what they read: the rest of the graph has no part here
    run = run_selected(csv, tmp_path / "storage", strategy_assets())
    assert run.result.success
    ids = set(run.table("recovery_strategies")["Borrower_ID"])
    assert '=HYPERLINK("http://example.invalid","x")' in ids and "@SUM(A1)" in ids  # kept as data
    exported = pd.read_csv(run.storage / "exports" / "recovery_strategies.csv")
    assert '\'=HYPERLINK("http://example.invalid","x")' in set(exported["Borrower_ID"])
    assert "'@SUM(A1)" in set(exported["Borrower_ID"])
    assert not exported["Borrower_ID"].str.match(r"^[=+\-@]").any()
