"""The result store: a chart with the inputs, code and libraries of one drawn before is not drawn
again, and its PNG is byte for byte the one drawing gives (``settings.results_dir``)."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import pandas as pd
import pytest

from loan_pipeline.core import chart_registry
from loan_pipeline_tests.conftest import SAMPLE_CSV, PipelineRun, environment, run_pipeline
from loan_pipeline_tests.golden import golden_path

pytestmark = pytest.mark.slow

BOOK_CHARTS = chart_registry.keys_of(chart_registry.BOOK_STEP)
LOAN_BOOK_ONLY = [c.key for c in chart_registry.CHARTS if c.inputs == ("validated_loans",)]


def _run(csv: Path, storage: Path, results: Path | str) -> PipelineRun:
    with environment(LOAN_PIPELINE_RESULTS=str(results)):
        run = run_pipeline(csv, storage)
    assert run.result.success
    return run


def _pngs(run: PipelineRun) -> dict[str, bytes]:
    folder = (run.storage / "current" / "charts").resolve()
    return {p.stem: p.read_bytes() for p in sorted(folder.glob("*.png"))}


def _drawn(run: PipelineRun) -> dict[str, str]:
    """Per chart, the ``drawn`` metadata of its materialization in the run."""
    return {
        e.asset_key.to_user_string(): e.materialization.metadata["drawn"].value
        for e in run.result.get_asset_materialization_events()
        if e.asset_key.to_user_string() in chart_registry.KEYS
    }


def _digests(run: PipelineRun) -> dict[str, str]:
    """Per chart, the digest of its inputs the run's materialization shows."""
    return {
        e.asset_key.to_user_string(): e.materialization.metadata["inputs_digest"].value
        for e in run.result.get_asset_materialization_events()
        if e.asset_key.to_user_string() in chart_registry.KEYS
    }


def _warnings(run: PipelineRun) -> list[str]:
    return [
        entry.user_message
        for entry in run.instance.all_logs(run.result.run_id)
        if entry.level == logging.WARNING
    ]


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """The sample twice with a new store: drawn and kept, then taken from the store."""
    results = tmp_path_factory.mktemp("results")
    first = _run(SAMPLE_CSV, tmp_path_factory.mktemp("first"), results)
    second = _run(SAMPLE_CSV, tmp_path_factory.mktemp("second"), results)
    return results, first, second


def _golden_pngs() -> dict[str, str]:
    """The sample's charts as drawn when the golden digests were made (test_golden)."""
    golden = json.loads(golden_path("sample").read_text())
    return {key: golden[f"charts/{key}.png"] for key in chart_registry.KEYS}


def _digests_of_pngs(run: PipelineRun) -> dict[str, str]:
    return {key: hashlib.sha256(png).hexdigest() for key, png in _pngs(run).items()}


def test_a_kept_png_is_byte_for_byte_the_drawn_one(two_runs):
    """The second run takes from the store every chart whose inputs have the first run's
    digest: at least those drawn from the loan book alone. (The cluster model's k-selection
    evidence can differ in its last bit between two fits of the same book, as scikit-learn sums
    inertia over threads: its charts are then drawn again, never taken wrongly.)"""
    results, first, second = two_runs
    assert set(_drawn(first).values()) == {"yes"}
    same = {k for k in chart_registry.KEYS if _digests(first)[k] == _digests(second)[k]}
    reused = {k for k, v in _drawn(second).items() if v != "yes"}
    assert reused == same and set(LOAN_BOOK_ONLY) <= reused
    assert _digests_of_pngs(first) == _golden_pngs()
    assert _digests_of_pngs(second) == _golden_pngs()
    # one kept PNG per digest, its name, which the asset's metadata shows
    kept = {p.stem for p in results.glob("*.png")}
    assert kept == set(_digests(first).values()) | set(_digests(second).values())


def test_a_changed_book_is_drawn_again(two_runs, tmp_path):
    results, first, _ = two_runs
    book = pd.read_csv(SAMPLE_CSV)
    book.loc[0, "Loan_Amount"] = book["Loan_Amount"].max() * 3  # one value, far out
    csv = tmp_path / "changed.csv"
    book.to_csv(csv, index=False)

    run = _run(csv, tmp_path / "storage", results)

    drawn = _drawn(run)
    assert {drawn[key] for key in BOOK_CHARTS} == {"yes"}
    changed = _pngs(run)["chart_loan_amount_distribution"]
    assert changed != _pngs(first)["chart_loan_amount_distribution"]


def test_a_store_that_cannot_be_written_is_said_and_changes_nothing_else(tmp_path):
    blocker = tmp_path / "a file"
    blocker.write_text("not a folder")
    results = blocker / "results"  # cannot be made: its parent is a file

    run = _run(SAMPLE_CSV, tmp_path / "storage", results)

    assert set(_drawn(run).values()) == {"yes"}
    assert _digests_of_pngs(run) == _golden_pngs()
    warnings = [w for w in _warnings(run) if "not kept for re-use" in w]
    assert len(warnings) == len(chart_registry.KEYS)
    assert all(str(results) in w for w in warnings)
