"""The result store: a chart with the inputs, code and libraries of one drawn before is not drawn
again, and its PNG is byte for byte the one drawing gives (``settings.results_dir``)."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import pytest

from loan_pipeline.core import chart_registry
from loan_pipeline_tests.conftest import SAMPLE_CSV, PipelineRun, environment, run_pipeline

pytestmark = pytest.mark.slow

BOOK_CHARTS = chart_registry.keys_of(chart_registry.BOOK_STEP)


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
def three_runs(tmp_path_factory):
    """The sample with no store, then twice with a new one: drawn and kept, then used."""
    results = tmp_path_factory.mktemp("results")
    fresh = _run(SAMPLE_CSV, tmp_path_factory.mktemp("fresh"), "off")
    first = _run(SAMPLE_CSV, tmp_path_factory.mktemp("first"), results)
    second = _run(SAMPLE_CSV, tmp_path_factory.mktemp("second"), results)
    return results, fresh, first, second


def test_a_kept_png_is_byte_for_byte_the_drawn_one(three_runs):
    results, fresh, first, second = three_runs
    assert set(_drawn(fresh).values()) == {"yes"}
    assert set(_drawn(first).values()) == {"yes"}
    assert set(_drawn(second).values()) == {"no: the PNG drawn before from the same inputs"}
    assert len(_pngs(fresh)) == len(chart_registry.KEYS)
    assert _pngs(first) == _pngs(fresh)
    assert _pngs(second) == _pngs(fresh)
    # one kept PNG per chart, named by its digest, which the asset's metadata shows
    kept = {p.stem for p in results.glob("*.png")}
    assert kept == set(_digests(second).values()) == set(_digests(first).values())
    assert len(kept) == len(chart_registry.KEYS)


def test_a_kept_png_that_is_cut_short_is_drawn_again(three_runs, tmp_path):
    results, fresh, _, second = three_runs
    kept = results / f"{_digests(second)['chart_k_selection']}.png"
    kept.write_bytes(kept.read_bytes()[:1000])  # a file cut short (a copy that failed midway)

    run = _run(SAMPLE_CSV, tmp_path / "storage", results)

    drawn = _drawn(run)
    assert drawn.pop("chart_k_selection") == "yes"
    assert set(drawn.values()) == {"no: the PNG drawn before from the same inputs"}
    assert _pngs(run) == _pngs(fresh)
    assert kept.read_bytes() == _pngs(fresh)["chart_k_selection"]  # kept whole again


def test_a_changed_book_is_drawn_again(three_runs, tmp_path):
    results, fresh, _, _ = three_runs
    book = pd.read_csv(SAMPLE_CSV)
    book.loc[0, "Loan_Amount"] = book["Loan_Amount"].max() * 3  # one value, far out
    csv = tmp_path / "changed.csv"
    book.to_csv(csv, index=False)

    run = _run(csv, tmp_path / "storage", results)

    drawn = _drawn(run)
    assert {drawn[key] for key in BOOK_CHARTS} == {"yes"}
    changed = _pngs(run)["chart_loan_amount_distribution"]
    assert changed != _pngs(fresh)["chart_loan_amount_distribution"]


def test_a_store_that_cannot_be_written_is_said_and_changes_nothing_else(three_runs, tmp_path):
    _, fresh, _, _ = three_runs
    blocker = tmp_path / "a file"
    blocker.write_text("not a folder")
    results = blocker / "results"  # cannot be made: its parent is a file

    run = _run(SAMPLE_CSV, tmp_path / "storage", results)

    assert set(_drawn(run).values()) == {"yes"}
    assert _pngs(run) == _pngs(fresh)
    warnings = [w for w in _warnings(run) if "not kept for re-use" in w]
    assert len(warnings) == len(chart_registry.KEYS)
    assert all(str(results) in w for w in warnings)
