"""Drift against a fixed baseline: population_stability materialized in-process on a drifting
sequence of generated books (Days_Past_Due 10 % higher than the last, four times), the baseline
pinned to another snapshot (by a run, and by the CLI), cleared snapshots, a failed run and a
tampered frozen model.

The runs materialize only what population_stability needs (the book, the risk model and its
scores) and the publication: the rest of the graph has no part in drift, and leaving it out keeps
each run to a few seconds.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from dagster import AssetKey, DagsterInstance

from loan_pipeline.__main__ import PIN_ASSETS
from loan_pipeline.core.generator import generate_loan_book
from loan_pipeline.io.baseline import MODEL, RECORD
from loan_pipeline_tests.conftest import PipelineRun, environment

# Enough loans for stable deciles (each index within 0.02 of what a 10,000-row book gives): the
# third step 0.21 against the baseline, under the 0.25 of a significant shift; the fourth 0.31
ROWS = 3_000
SEED = 1
STEPS = 4  # books after the first, each with Days_Past_Due 1.1 times the last's
PSI_CHECK = "population_is_stable"
BOOK_ASSETS = [
    "raw_loans",
    "validated_loans",
    "quarantined_loans",
    "risk_model",
    "risk_scores",
    "population_stability",
    "published_snapshot",
]


def materialize(
    storage: Path,
    instance: DagsterInstance,
    csv: Path | None = None,
    baseline: str | None = None,
    keep_days: float | None = None,
) -> PipelineRun:
    """A run of ``BOOK_ASSETS`` on ``csv``, or without one a pin run (``PIN_ASSETS``, what
    ``pin-baseline`` runs: population_stability on the published tables, and the publication);
    ``baseline``: population_stability's ``baseline`` config."""
    from loan_pipeline.definitions import defs

    ops: dict = {}
    if csv is not None:
        ops["ingest_loan_book"] = {"config": {"csv_path": str(csv)}}
    if baseline is not None:
        ops["population_stability"] = {"config": {"baseline": baseline}}
    env = {"LOAN_PIPELINE_STORAGE": str(storage)}
    if keep_days is not None:
        env["LOAN_PIPELINE_KEEP_DAYS"] = str(keep_days)
    with environment(**env):
        result = defs.resolve_job_def("full_refresh").execute_in_process(
            run_config={"ops": ops},
            instance=instance,
            raise_on_error=False,
            asset_selection=[AssetKey(a) for a in (BOOK_ASSETS if csv else PIN_ASSETS)],
        )
    return PipelineRun(result=result, storage=storage, instance=instance)


def succeeded(run: PipelineRun) -> PipelineRun:
    failures = [
        (e.step_key, e.step_failure_data.error.message if e.step_failure_data.error else None)
        for e in run.result.get_step_failure_events()
    ]
    assert run.result.success, failures
    return run


def stability(run: PipelineRun) -> pd.DataFrame:
    """The run's own population_stability table (the catalog shows the latest run's)."""
    table = run.storage / "runs" / run.result.run_id / "tables" / "population_stability"
    return pd.read_parquet(table).set_index("column")


def meta(run: PipelineRun) -> dict:
    return {k: v.value for k, v in run.materialized()["population_stability"].items()}


def check(run: PipelineRun):
    (found,) = [
        e.event_specific_data
        for e in run.result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
        and e.event_specific_data.check_name == PSI_CHECK
    ]
    return found


def published_baseline(storage: Path) -> dict:
    return json.loads((storage / "current" / RECORD).read_text())


def continue_from(storage: Path, target: Path) -> Path:
    """A copy of a storage folder, for runs that follow the ones made in it."""
    shutil.copytree(storage, target, symlinks=True)
    return target


@pytest.fixture(scope="module")
def drift(tmp_path_factory) -> dict:
    """Five runs into one storage: a generated book, then four books each with Days_Past_Due
    1.1 times the last's (rounded to whole days, as the contract wants)."""
    folder = tmp_path_factory.mktemp("drift")
    book = generate_loan_book(ROWS, seed=SEED)
    instance = DagsterInstance.ephemeral()
    storage = folder / "storage"
    runs = []
    for step in range(STEPS + 1):
        drifted = book.assign(Days_Past_Due=(book["Days_Past_Due"] * 1.1**step).round())
        csv = folder / f"book{step}.csv"
        drifted.astype({"Days_Past_Due": "int64"}).to_csv(csv, index=False)
        runs.append(succeeded(materialize(storage, instance, csv)))
    return {"runs": runs, "storage": storage, "instance": instance, "folder": folder}


def test_a_slow_drift_is_stable_step_by_step_and_significant_against_the_baseline(drift):
    first, *later = drift["runs"]
    baseline_id = first.result.run_id
    # the first published run is the baseline: nothing to compare with yet
    table = stability(first)
    assert (table["status_vs_baseline"] == "this run is the baseline").all()
    assert meta(first)["this_run_is_the_baseline"] is True
    assert check(first).passed is True
    assert published_baseline(drift["storage"])["snapshot"] == baseline_id

    steps = []
    for step, run in enumerate(later, start=1):
        table = stability(run)
        dpd = table.loc["Days_Past_Due"]
        steps.append((dpd["psi_vs_previous"], dpd["psi_vs_baseline"]))
        # against the previous run every step looks stable, inputs and both scores
        assert (table["psi_vs_previous"] < 0.10).all(), (step, table)
        assert (table["status_vs_previous"] == "stable").all(), (step, table)
        assert meta(run)["baseline_snapshot"] == baseline_id
        assert meta(run)["this_run_is_the_baseline"] is False
        assert meta(run)["baseline_pinned_at"]
        # the baseline is carried over (a hard link of the first run's file), not written again
        manifest = drift["storage"] / "runs" / run.result.run_id / "manifest.json"
        items = json.loads(manifest.read_text())["items"]
        assert items[RECORD]["run"] == items[MODEL]["run"] == baseline_id
    # against the baseline the steps add up: the fourth is a significant shift, and warns
    assert steps[-1][1] > 0.25, steps
    assert [b for _, b in steps] == sorted(b for _, b in steps), steps
    assert stability(later[-1]).loc["Days_Past_Due", "status_vs_baseline"] == "significant shift"
    assert [check(run).passed for run in later] == [True, True, True, False]
    warned = check(later[-1])
    assert "Days_Past_Due" in warned.metadata["shifted"].value
    assert baseline_id in warned.metadata["against"].value
    assert warned.metadata["baseline_snapshot"].value == baseline_id
    assert warned.severity.value == "WARN"
    # the other inputs did not move
    others = stability(later[-1]).drop(index=["Days_Past_Due", "risk_score", "frozen_model_score"])
    assert (others.loc[others["measure"] == "CSI", "psi_vs_baseline"] < 0.01).all(), others


def test_the_frozen_models_score_shifts_where_the_refitted_ones_does_not(drift):
    first, *later = drift["runs"]
    last = stability(later[-1])
    frozen = last.loc["frozen_model_score"]
    refitted = last.loc["risk_score"]
    assert frozen["measure"] == refitted["measure"] == "PSI"
    assert "frozen" in frozen["what"] and "refitted" in refitted["what"]
    # a refitted model standardises the rescaled input away; the first run's model does not
    assert refitted["psi_vs_baseline"] < 0.01, last
    assert frozen["psi_vs_baseline"] > 0.05, last
    # the page shows an index to 3 decimals (core.rounding); the table keeps every digit
    assert meta(later[-1])["frozen_model_score_psi_vs_baseline"] == round(
        frozen["psi_vs_baseline"], 3
    )
    assert meta(later[-1])["refitted_model_score_psi_vs_baseline"] == round(
        refitted["psi_vs_baseline"], 3
    )
    frozen_psi = [stability(run).loc["frozen_model_score", "psi_vs_baseline"] for run in later]
    assert frozen_psi == sorted(frozen_psi), frozen_psi
    # the frozen model is the first run's, byte for byte
    risk_model = first.materialized()["risk_model"]["sha256"].value
    assert meta(later[-1])["baseline_model_sha256"] == risk_model
    kept = drift["storage"] / "current" / MODEL
    assert (
        kept.read_bytes() == (drift["storage"] / "runs" / first.result.run_id / MODEL).read_bytes()
    )


def test_a_pinned_baseline_survives_clearing_and_a_failed_run_leaves_it(
    drift, tmp_path, monkeypatch
):
    storage = continue_from(drift["storage"], tmp_path / "storage")
    instance = drift["instance"]
    runs = drift["runs"]
    second = runs[2].result.run_id  # Days_Past_Due x 1.21; the published book is x 1.4641

    # pin the third run's snapshot by the start of its id, in a run of its own
    pin = succeeded(materialize(storage, instance, baseline=second[:8]))
    assert published_baseline(storage)["snapshot"] == second
    assert published_baseline(storage)["pinned_by"] == pin.result.run_id
    assert meta(pin)["baseline_snapshot"] == second
    assert meta(pin)["baseline_model_sha256"] == (
        runs[2].materialized()["risk_model"]["sha256"].value
    )
    pinned = stability(pin)
    # the published book against the pinned one: 1.4641 / 1.21 = 1.21, two steps of drift
    assert 0.05 < pinned.loc["Days_Past_Due", "psi_vs_baseline"] < 0.25, pinned
    # the previous run scored with the first run's model: not comparable with the new one
    assert pinned.loc["frozen_model_score", "status_vs_previous"] == (
        "previous run used another frozen model"
    )
    assert check(pin).passed is True

    # the pinned snapshot's folder is cleared; the baseline stays, carried in every snapshot
    book = drift["folder"] / f"book{STEPS}.csv"
    after = succeeded(materialize(storage, instance, book, keep_days=0))
    assert not (storage / "runs" / second).exists()
    assert meta(after)["baseline_snapshot"] == second
    assert published_baseline(storage)["snapshot"] == second
    assert stability(after).loc["frozen_model_score", "status_vs_previous"] == "stable"

    # a run that pins another baseline and then fails publishes nothing: the baseline stays
    from loan_pipeline.store.files import StorageError
    from loan_pipeline.store.snapshots import Store

    before = (storage / "current" / RECORD).read_bytes()

    def full_disk(*args, **kwargs):
        raise StorageError("could not publish: no space left on the device")

    monkeypatch.setattr(Store, "publish", full_disk)
    failed = materialize(storage, instance, baseline="current")
    assert not failed.result.success
    monkeypatch.undo()
    own = storage / "runs" / failed.result.run_id / RECORD
    assert json.loads(own.read_text())["snapshot"] == after.result.run_id  # written, unpublished
    assert (storage / "current" / RECORD).read_bytes() == before
    again = succeeded(materialize(storage, instance, book))
    assert meta(again)["baseline_snapshot"] == second


def test_a_tampered_frozen_model_is_refused(drift, tmp_path):
    storage = continue_from(drift["storage"], tmp_path / "storage")
    model = storage / "current" / MODEL
    model.unlink()  # a hard link shared with older snapshots: replaced, not written through
    model.write_bytes(b"not the frozen model")
    book = drift["folder"] / "book0.csv"
    run = materialize(storage, drift["instance"], book)
    assert not run.result.success
    (failure,) = run.result.get_step_failure_events()
    assert failure.step_key == "population_stability"
    assert "was changed after it was written" in str(failure.step_failure_data.error)
    assert (storage / "current").resolve().name == drift["runs"][-1].result.run_id


def test_the_cli_pins_the_published_snapshot(drift, tmp_path, capsys, monkeypatch):
    from loan_pipeline.__main__ import main

    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("LOAN_PIPELINE_STORAGE", str(tmp_path / "empty"))
    assert main(["pin-baseline"]) == 1
    assert "Nothing to pin: nothing is published yet" in capsys.readouterr().err

    storage = continue_from(drift["storage"], tmp_path / "storage")
    monkeypatch.setenv("LOAN_PIPELINE_STORAGE", str(storage))
    last = drift["runs"][-1].result.run_id
    assert main(["pin-baseline", "current"]) == 0
    out = capsys.readouterr().out
    assert f"Baseline: snapshot {last} (pinned (current)" in out, out
    assert published_baseline(storage)["snapshot"] == last
    assert main(["pin-baseline", "no-such-snapshot"]) == 1
    err = capsys.readouterr().err
    assert "cannot pin 'no-such-snapshot' as the drift baseline" in err, err
    assert "Nothing was published" in err
    assert published_baseline(storage)["snapshot"] == last
