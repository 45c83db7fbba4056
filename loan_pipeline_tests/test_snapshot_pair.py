"""The five snapshot comparisons (roll rates, arrears forecast, cure rates, back-test, uplift)
read the two snapshots they compare once per run: the pair is kept in the process for the next
of them, by the files' identities, and the tables are those of a run that reads them in each."""

from __future__ import annotations

import pandas as pd
import pytest

from loan_pipeline import sample
from loan_pipeline.assets import history
from loan_pipeline_tests.conftest import run_pipeline
from loan_pipeline_tests.test_collections_over_time import KEPT_TABLES
from loan_pipeline_tests.test_collections_over_time import STANDING_CONFIG as EXPERIMENT

# the tables made by comparing two snapshots (the strategies aside)
COMPARISONS = [t for t in KEPT_TABLES if t != "recovery_strategies"]


@pytest.fixture(scope="module")
def books(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pair")
    t0, t1 = folder / "t0.csv", folder / "t1.csv"
    sample.main(["--rows", "600", "--seed", "3", "--open-fraction", "0.6", "--out", str(t0)])
    sample.main(["--follow-up", str(t0), "--seed", "4", "--new", "20", "--out", str(t1)])
    return t0, t1


def _second_snapshot(books, storage, keep_rows: int):
    """t0 then t1 on ``storage`` with a champion/challenger experiment (so the uplift has
    arms to compare), the pair kept up to ``keep_rows``: (t1's run, its reads)."""
    t0, t1 = books
    assert run_pipeline(t0, storage, EXPERIMENT).result.success
    reads = []
    real = history._read_pair

    def counted(*args):
        reads.append(real(*args))
        return reads[-1]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(history, "_read_pair", counted)
        patch.setattr(history, "KEEP_ROWS", keep_rows)
        run = run_pipeline(t1, storage, EXPERIMENT)
    assert run.result.success
    return run, reads


@pytest.fixture(scope="module")
def kept(books, tmp_path_factory):
    return _second_snapshot(books, tmp_path_factory.mktemp("kept"), history.KEEP_ROWS)


@pytest.fixture(scope="module")
def read_each_time(books, tmp_path_factory):
    return _second_snapshot(books, tmp_path_factory.mktemp("each"), 0)


def test_the_second_snapshot_is_read_once_for_all_five_comparisons(kept, read_each_time):
    run, reads = kept
    assert len(reads) == 1
    pair = reads[0]
    assert not pair.reason and len(pair.previous) == 600 and len(pair.current) == 620
    materialized = run.materialized()
    for key in COMPARISONS:
        assert materialized[key]["compared"].value == f"{pair.previous_id} -> {pair.snapshot_id}"
    # a book over KEEP_ROWS is read by each comparison
    assert len(read_each_time[1]) == len(COMPARISONS)


def test_the_comparisons_are_those_of_a_run_that_reads_in_each_step(kept, read_each_time):
    ids = ["previous_snapshot", "snapshot"]  # the two runs' own snapshot names
    for key in COMPARISONS:
        one, each = kept[0].table(key), read_each_time[0].table(key)
        assert len(one) > 0, key
        pd.testing.assert_frame_equal(
            one.drop(columns=ids, errors="ignore"), each.drop(columns=ids, errors="ignore"), obj=key
        )


def test_a_step_that_changes_its_frames_leaves_the_kept_pair_as_read(kept):
    pair = kept[1][0]
    selected = history._columns(pair.current, list(history.COMPARED_COLUMNS))
    selected["risk_score"] = -1.0
    assert (pair.current["risk_score"] != -1.0).all()
    assert list(selected.columns) == [
        c for c in history.COMPARED_COLUMNS if c in pair.current.columns
    ]


def test_text_filled_in_both_snapshots_stays_arrow_and_text_with_gaps_is_python_strings():
    """The pair's frames: a text column filled in both snapshots is Arrow strings (a million
    ids are not made Python strings one by one); one with an empty cell in either snapshot is
    Python strings and None in both, so comparing it across them, or filtering on it, reads
    as it did from pandas' own conversion."""
    import pyarrow as pa

    previous = pa.table(
        {"Borrower_ID": ["B1", "B2"], "Recovery_Status": ["Paid", None], "n": [1, 2]}
    )
    current = pa.table(
        {"Borrower_ID": ["B1", "B3"], "Recovery_Status": ["Paid", "Paid"], "n": [3, 4]}
    )
    before, after = history._frames(previous, current)
    for frame, table in ((before, previous), (after, current)):
        assert frame["Borrower_ID"].dtype == pd.StringDtype("pyarrow")
        assert frame["Recovery_Status"].dtype == object
        assert frame["n"].dtype == "int64"
        pd.testing.assert_frame_equal(frame.astype(object), table.to_pandas().astype(object))
    # the comparison a step makes across the snapshots gives plain True/False, no <NA>
    same = before["Recovery_Status"] == after["Recovery_Status"]
    assert same.tolist() == [True, False]
    assert before[before["Recovery_Status"] == "Paid"]["n"].tolist() == [1]
