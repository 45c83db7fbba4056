"""The ingest step's shortcuts give exactly what the longer way gives.

- text columns skip trimming when no cell can have anything to trim (``_nothing_to_trim``);
- a file with malformed rows numbers them with a one-column serial pass, not a whole re-read;
- repeated ids are found with one hashing pass (``_repeats``);
- the quarantine table looks up only the quarantined records (``quarantine_table``);
- the ingest asset validates its own frames in place (no defensive copy).

Each test compares against the longer way, kept here as the reference where the code no longer
has it.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loan_pipeline.core import (
    ingest_lines,
    ingest_quarantine,
    ingest_records,
    ingest_verdict,
)
from loan_pipeline.schemas import CATEGORIES, LOAN_BOOK_COLUMNS
from loan_pipeline.settings import IngestConfig
from loan_pipeline_tests.defaults import config_kwargs
from loan_pipeline_tests.test_contracts import LINES, edited, joined

INGEST = config_kwargs(ingest_verdict.split_rows, IngestConfig)  # the run configuration's limits
LENIENT = INGEST | {"max_quarantine_share": 0.2}  # messy books: a fifth of the rows set aside

# --- text: trimming skipped only when it changes nothing --------------------------------------

EDGES = [
    " ", "\t", "\n", "\r", "\x0b", "\x0c", "\x1c", "\x1f", "\x85", "\u00a0", "\u2000", "\u200b",
    "\u2028", "\u3000", "\ufeff", "é", "ß", "~", "!", "",
]  # fmt: skip


def assert_same_text(values: list[str | None] | pa.Array, column: str) -> None:
    arr = values if isinstance(values, pa.Array) else pa.array(values, pa.string())
    fast_series, fast_changed = ingest_records._parse_text(arr, column, fast=True)
    slow_series, slow_changed = ingest_records._parse_text(arr, column, fast=False)
    pd.testing.assert_series_equal(fast_series, slow_series, check_exact=True)
    assert fast_series.array._pa_array.equals(slow_series.array._pa_array)
    assert fast_changed == slow_changed


@pytest.mark.parametrize("column", ["Borrower_ID", "Gender", "Recovery_Status"])
@pytest.mark.parametrize("edge", EDGES)
@pytest.mark.parametrize("where", ["start", "end", "alone"])
def test_text_with_an_odd_edge_agrees(column: str, edge: str, where: str) -> None:
    plain = CATEGORIES.get(column, ["BRW_1", "BRW_2"])
    cell = {"start": edge + plain[0], "end": plain[0] + edge, "alone": edge}[where]
    assert_same_text([*plain, None, cell, *plain], column)


@pytest.mark.parametrize(
    "values",
    [[], [None], [None, None], [""], ["", None], ["a", ""], ["a b", "Fully Recovered"], ["x"]],
)
def test_text_edge_cases_agree(values: list[str | None]) -> None:
    assert_same_text(values, "Loan_ID")


def test_plain_text_takes_the_shortcut_and_a_sliced_array_is_read_at_its_offset() -> None:
    arr = pa.array([" padded ", "LN_1", None, "LN_2", "Fully Recovered"], pa.string())
    assert ingest_records._nothing_to_trim(arr.slice(1)) is True
    assert ingest_records._nothing_to_trim(arr) is False  # the sliced-off first cell needs trimming
    assert ingest_records._nothing_to_trim(arr.slice(0, 1)) is False
    assert_same_text(arr.slice(1), "Loan_ID")
    assert_same_text(arr.slice(1, 2), "Loan_ID")
    assert ingest_records._nothing_to_trim(pa.array(["a", ""])) is False


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    column=st.sampled_from(["Loan_ID", "Gender", "Legal_Action_Taken"]),
    values=st.lists(
        st.one_of(
            st.none(),
            st.sampled_from(["Male", "female", "Yes", "NO", "LN_1"]),
            st.text(alphabet="aB_ \t\u00a0\u3000é\x1f", max_size=6),
        ),
        max_size=10,
    ),
)
def test_text_agrees_on_generated_cells(column: str, values: list[str | None]) -> None:
    assert_same_text(values, column)


# --- malformed rows: numbered by a one-column serial pass -------------------------------------


def test_malformed_rows_are_numbered_as_by_a_whole_serial_read(tmp_path: Path, monkeypatch) -> None:
    lines = edited({(9, "Gender"): "female"})
    lines = [
        *lines[:3],
        lines[3] + ",extra",  # line 4: too many fields
        "",  # line 5: blank
        "   ",  # line 6: spaces only
        *lines[4:10],
        lines[10].rsplit(",", 1)[0],  # too few fields
        *lines[11:],
        lines[5] + ",extra",  # too many fields, near the end
        lines[3] + ",extra",  # the same text as line 4: numbered apart
        "",
    ]
    path = tmp_path / "book.csv"
    path.write_text(joined(lines), encoding="utf-8")

    calls: list[list[str] | None] = []
    original = ingest_lines._read_text

    def spy(path, header, use_threads, columns=None):
        calls.append(columns)
        return original(path, header, use_threads, columns)

    monkeypatch.setattr(ingest_lines, "_read_text", spy)
    short = ingest_records.read_loan_book(path)
    assert calls == [None, LOAN_BOOK_COLUMNS[:1]]  # the parallel read, then the numbering pass

    def whole_serial_read(path, header, use_threads, columns=None):
        return original(path, header, use_threads=False)

    monkeypatch.setattr(ingest_lines, "_read_text", whole_serial_read)
    whole = ingest_records.read_loan_book(path)
    pd.testing.assert_frame_equal(short.frame, whole.frame, check_exact=True)
    pd.testing.assert_frame_equal(short.malformed, whole.malformed, check_exact=True)
    pd.testing.assert_frame_equal(short.issues, whole.issues, check_exact=True)
    assert short.blank_lines == whole.blank_lines == 3
    assert short.malformed["source_line"].tolist()[:2] == [4, 13]
    assert len(short.malformed) == 4


# --- repeated ids -----------------------------------------------------------------------------


def reference_repeats(ids: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """The previous code: duplicated() twice and a reindex on the first occurrences."""
    dup = (ids.notna() & ids.duplicated(keep="first")).to_numpy()
    frame = pd.DataFrame({"id": ids, "position": np.arange(len(ids))})
    first = frame.loc[~frame["id"].duplicated(keep="first")].set_index("id")["position"]
    return dup, first.reindex(ids[dup]).to_numpy()


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.none(), st.sampled_from(["a", "b", "", "é", "LN_1", "LN_10"]))))
def test_repeats_equal_the_pandas_duplicated_way(values: list[str | None]) -> None:
    ids = pd.Series(pd.array(values, dtype=pd.StringDtype("pyarrow")))
    dup, first = ingest_quarantine._repeats(ids)
    expected_dup, expected_first = reference_repeats(ids)
    assert dup.dtype == bool and np.array_equal(dup, expected_dup)
    assert np.array_equal(first, expected_first)


# --- quarantine table -------------------------------------------------------------------------


def reference_quarantine_table(
    read: ingest_records.ReadResult, split: ingest_quarantine.SplitResult
) -> pd.DataFrame:
    """The previous code: the whole book indexed by line, records looked up one by one."""
    frame = read.frame.set_index("source_line")
    originals: dict[int, str] = {}
    in_frame = frame.index.intersection(split.quarantined_lines)
    if len(in_frame):
        subset = frame.loc[in_frame].astype(object)
        subset = subset.where(frame.loc[in_frame].notna(), None)
        raw_values = split.issues.set_index(["source_line", "column"])["value"]
        for line, record in zip(in_frame, subset.to_dict("records"), strict=True):
            for col in record:
                key = (line, col)
                if record[col] is None and key in raw_values.index:
                    found = raw_values.loc[key]
                    record[col] = found if not isinstance(found, pd.Series) else found.iloc[0]
            originals[int(line)] = json.dumps(record, default=str)
    for line, text in zip(read.malformed["source_line"], read.malformed["text"], strict=True):
        originals[int(line)] = json.dumps({"<row>": text})
    out = split.issues.copy()
    ids = frame["Borrower_ID"].astype(object)
    out.insert(
        1,
        "Borrower_ID",
        out["source_line"].map(ids).astype(object).where(lambda s: s.notna(), None),
    )
    out["original_row"] = out["source_line"].map(originals).astype(object)
    out["source_file"] = str(read.path)
    return out.reset_index(drop=True)


def messy_lines(seed: int) -> list[str]:
    """The sample with ~5% of its rows broken in assorted ways, and a quoted extra column."""
    rnd = random.Random(seed)
    changes: dict[tuple[int, str], str] = {}
    n_rows = len(LINES) - 1
    for line in rnd.sample(range(2, n_rows + 2), 24):
        column, value = rnd.choice(
            [
                ("Age", "abc"),
                ("Age", "150"),
                ("Age", "99999999999999999999"),
                ("Employment_Type", ""),
                ("Loan_Type", "Timeshare"),
                ("Borrower_ID", "BRW_1"),
                ("Borrower_ID", ""),
                ("Loan_ID", LINES[2].split(",")[6]),
                ("Monthly_Income", "$5000"),
                ("Collateral_Value", "-5"),
                ("Gender", " female "),
                ("Recovery_Status", ""),
            ]
        )
        changes[(line, column)] = value
    lines = edited(changes)
    lines = [lines[0] + ",Notes"] + [
        f'{line},"note {n}, quoted"' for n, line in enumerate(lines[1:])
    ]
    lines[7] = lines[7].rsplit(",", 3)[0]  # too few fields
    return lines


@pytest.mark.parametrize("seed", range(6))
def test_quarantine_table_equals_the_reference(tmp_path: Path, seed: int) -> None:
    path = tmp_path / "book.csv"
    path.write_text(joined(messy_lines(seed)), encoding="utf-8")
    read = ingest_records.read_loan_book(path)
    split = ingest_verdict.split_rows(read, **LENIENT)
    assert split.quarantined >= 10
    got = ingest_quarantine.quarantine_table(read, split)
    expected = reference_quarantine_table(read, split)
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
    assert [type(v) for v in got["Borrower_ID"]] == [type(v) for v in expected["Borrower_ID"]]
    assert got["Borrower_ID"].isna().any()  # a blank id and the malformed row: None


def test_quarantine_table_with_lines_out_of_order(tmp_path: Path) -> None:
    """A ReadResult whose lines are not ascending (read_loan_book never makes one) is still
    looked up correctly: the general lookup, not the binary search."""
    path = tmp_path / "book.csv"
    path.write_text(joined(messy_lines(1)), encoding="utf-8")
    read = ingest_records.read_loan_book(path)
    shuffled = read.frame.sample(frac=1.0, random_state=3).reset_index(drop=True)
    read = ingest_records.ReadResult(**{**read.__dict__, "frame": shuffled})
    split = ingest_verdict.split_rows(read, **LENIENT)
    pd.testing.assert_frame_equal(
        ingest_quarantine.quarantine_table(read, split), reference_quarantine_table(read, split)
    )


def test_quarantine_table_shows_the_first_issue_value_of_a_cell(tmp_path: Path) -> None:
    """Two issues on one blank cell (read_loan_book's rules never make two with different
    values, a hand-built split can): the record shows the first one's value, as before."""
    path = tmp_path / "book.csv"
    path.write_text(joined(edited({(4, "Age"): "abc"})), encoding="utf-8")
    read = ingest_records.read_loan_book(path)
    split = ingest_verdict.split_rows(read, **INGEST)
    extra = split.issues.assign(rule="another", reason="another", value="second")
    split = ingest_quarantine.SplitResult(
        valid=split.valid,
        issues=pd.concat([split.issues, extra], ignore_index=True),
        quarantined_lines=split.quarantined_lines,
        records=split.records,
    )
    got = ingest_quarantine.quarantine_table(read, split)
    pd.testing.assert_frame_equal(got, reference_quarantine_table(read, split))
    assert {json.loads(r)["Age"] for r in got["original_row"]} == {"abc"}


def test_row_positions() -> None:
    lines = np.array([2, 3, 5, 8, 9], dtype="int64")
    wanted = np.array([1, 2, 4, 5, 9, 10], dtype="int64")
    positions = ingest_quarantine.row_positions
    assert positions(lines, wanted).tolist() == [-1, 0, -1, 2, 4, -1]
    assert positions(lines[::-1].copy(), wanted).tolist() == [-1, 4, -1, 2, 0, -1]
    assert positions(lines[:0], wanted).tolist() == [-1] * 6


# --- validation in place ---------------------------------------------------------------------


def test_validation_in_place_returns_what_a_copying_validation_returns(tmp_path: Path) -> None:
    from loan_pipeline.schemas import LoanBook, QuarantinedLoans, RawLoans, validate

    path = tmp_path / "book.csv"
    path.write_text(joined(messy_lines(2)), encoding="utf-8")
    read = ingest_records.read_loan_book(path)
    split = ingest_verdict.split_rows(read, **LENIENT)
    quarantine = ingest_quarantine.quarantine_table(read, split)
    for frame, model in (
        (read.frame, RawLoans),
        (split.valid, LoanBook),
        (quarantine, QuarantinedLoans),
    ):
        expected = model.validate(frame.copy(), lazy=True)  # pandera's own copy
        pd.testing.assert_frame_equal(validate(frame, model, source=str(path)), expected)


def test_validation_in_place_fails_with_a_readable_message(tmp_path: Path) -> None:
    from loan_pipeline.schemas import LoanBook, SchemaViolation, validate

    path = tmp_path / "book.csv"
    path.write_text(joined(LINES), encoding="utf-8")
    valid = ingest_verdict.split_rows(ingest_records.read_loan_book(path), **INGEST).valid
    broken = valid.assign(Age=valid["Age"].where(valid.index != 3, 7))
    with pytest.raises(SchemaViolation) as got:
        validate(broken, LoanBook, source="book.csv")
    assert "column Age, rule greater_than_or_equal_to(18): 1 row(s); e.g. row 3: 7" in str(
        got.value
    )
