"""Bad input, read in bounded memory and described in full.

- blank lines are counted, not kept: ten million of them (a 10 MB file) are read in well under
  0.6 GB, and the rows around them keep their line numbers;
- the reader skips empty lines itself, and they are found in the bytes: the same result as
  reading each one as a row of nulls (kept here as the reference), on messy files;
- a file where every row fails says which column and rule failed, how often, and on which
  lines, read whole, in blocks, and through the command line.
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loan_pipeline.core import ingest_lines, ingest_records
from loan_pipeline.core.ingest_blocks import read_in_blocks
from loan_pipeline.core.ingest_header import LoanBookFileError
from loan_pipeline.core.ingest_records import read_loan_book, read_records
from loan_pipeline.core.ingest_verdict import split_rows
from loan_pipeline.schemas import LOAN_BOOK_COLUMNS
from loan_pipeline.settings import IngestConfig
from loan_pipeline_tests.conftest import PROJECT_ROOT, SAMPLE_CSV
from loan_pipeline_tests.defaults import config_kwargs

INGEST = config_kwargs(split_rows, IngestConfig)  # the run configuration's limits

SAMPLE = SAMPLE_CSV.read_text(encoding="utf-8").splitlines()
HEADER, ROWS = SAMPLE[0], SAMPLE[1:]  # 500 rows, no quoted field


def good_rows(n: int) -> list[str]:
    """``n`` valid rows: the sample's, over again, with ids made unique."""
    out = []
    for k in range(n):
        cells = ROWS[k % len(ROWS)].split(",")
        cells[0], cells[6] = f"BRW_{k + 1}", f"LN_{k + 1}"
        out.append(",".join(cells))
    return out


# --- ten million blank lines, in a child process ----------------------------------------------

GOOD, BLANK = 2_000, 10_000_000
PER_ROW = BLANK // GOOD  # blank lines after each good row, when interleaved

CHILD = f"""
import json, sys
from loan_pipeline.core.ingest_records import read_loan_book
from loan_pipeline.core.ingest_verdict import split_rows
out = {{}}
for path in sys.argv[1:]:
    read = read_loan_book(path)
    split = split_rows(read, **{INGEST!r})
    lines = read.frame["source_line"]
    out[path] = [read.blank_lines, read.records, len(split.valid), int(lines.iloc[1]),
                 int(lines.iloc[-1])]
print(json.dumps(out))
"""

# The reader runs in a grandchild: the wrapper's RUSAGE_CHILDREN is then that process's peak
# alone, whatever else this test session has run.
WRAPPER = """
import json, resource, subprocess, sys
done = subprocess.run([sys.executable, "-c", sys.argv[1], *sys.argv[2:]], capture_output=True,
                      text=True)
print(json.dumps({"rc": done.returncode, "out": done.stdout, "err": done.stderr[-3000:],
                  "peak_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
"""


def test_ten_million_blank_lines_are_counted_in_bounded_memory(tmp_path: Path) -> None:
    rows = good_rows(GOOD)
    interleaved = tmp_path / "interleaved.csv"
    interleaved.write_text(
        HEADER + "\n" + "".join(row + "\n" + "\n" * PER_ROW for row in rows), encoding="utf-8"
    )
    at_end = tmp_path / "at_end.csv"
    at_end.write_text(HEADER + "\n" + "\n".join(rows) + "\n" * (BLANK + 1), encoding="utf-8")
    assert interleaved.stat().st_size < 11e6  # a 10 MB file, as users sent

    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", WRAPPER, CHILD, str(interleaved), str(at_end)],
        capture_output=True,
        text=True,
        env=env,
        cwd=PROJECT_ROOT,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["rc"] == 0, report["err"]
    counts = json.loads(report["out"])

    # ru_maxrss is in KiB on Linux; before, this read peaked at 2.29 GB
    assert report["peak_kib"] * 1024 < 0.6e9, f"peak RSS {report['peak_kib'] * 1024 / 1e9:.2f} GB"
    # every blank line counted, every row kept, each on its line in the file
    assert counts[str(interleaved)] == [BLANK, GOOD, GOOD, 3 + PER_ROW, 2 + 1999 * (PER_ROW + 1)]
    assert counts[str(at_end)] == [BLANK, GOOD, GOOD, 3, GOOD + 1]


# --- empty lines found in the bytes: as if read as rows of nulls ------------------------------


def exact_read(monkeypatch, read):
    """``read()`` with every empty line read as a row of nulls (the reference)."""
    none = np.empty(0, np.int64)
    with monkeypatch.context() as m:
        m.setattr(
            ingest_records,
            "read_lines",
            lambda source, header, line_count=None: (
                ingest_lines._read_numbered(source, header, ignore_empty_lines=False)
                + ((none, none),)
            ),
        )
        return outcome(read)


def outcome(read):
    """What a read gives: its frames and counts, or the error's type and message."""
    try:
        result = read()
    except LoanBookFileError as err:
        return type(err).__name__, str(err)
    return result


def assert_same(fast, exact) -> None:
    if isinstance(fast, tuple) or isinstance(exact, tuple):
        assert fast == exact
        return
    pd.testing.assert_frame_equal(fast.frame, exact.frame, check_exact=True)
    pd.testing.assert_frame_equal(fast.issues, exact.issues, check_exact=True)
    pd.testing.assert_frame_equal(fast.malformed, exact.malformed, check_exact=True)
    assert fast.blank_lines == exact.blank_lines
    assert fast.normalised == exact.normalised


ROW_A, ROW_B = good_rows(2)
OPEN_QUOTE = ROW_A.rsplit(",", 1)[0] + ',"No'  # a quote still open: takes in the rest of the file
LINE_KINDS = [
    ROW_A,
    ROW_B,
    "",  # empty: skipped by the reader, found in the bytes
    "",
    "   ",  # whitespace: the reader's invalid-row handler, counted
    "\t",
    "," * 20,  # every field empty: a row of the table, counted as blank
    " , ,",  # too few fields: malformed
    ROW_A + ",extra",  # too many: malformed
    ROW_A.replace("Calls", '"Ca\n\nlls"'),  # a quoted field across lines, an empty one inside
    ROW_A.replace("Calls", '"Ca\r\nlls"'),
    OPEN_QUOTE,
    '"',
]


@st.composite
def messy_books(draw) -> bytes:
    plain = st.sampled_from(LINE_KINDS[:9])  # no quote: the empty lines found in the bytes
    kinds = plain if draw(st.booleans()) else st.one_of(plain, st.sampled_from(LINE_KINDS[9:]))
    lines = [HEADER, *draw(st.lists(kinds, max_size=30))]
    ending = draw(st.sampled_from(["", "", '"', OPEN_QUOTE]))  # then empty lines, maybe
    if ending:
        lines.append(ending)
    breaks = draw(st.sampled_from(["\n", "\r\n", "\r", "mixed"]))
    text = "".join(
        line + (draw(st.sampled_from(["\n", "\r\n", "\r"])) if breaks == "mixed" else breaks)
        for line in lines
    )
    if draw(st.booleans()):
        text = text.rstrip("\r\n")  # no break after the last line
    if draw(st.booleans()):
        text += "\n" * draw(st.integers(1, 3))
    return ("\ufeff" if draw(st.booleans()) else "").encode() + text.encode()


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=messy_books(), first_line=st.sampled_from([2, 57]))
def test_empty_lines_found_in_the_bytes_read_as_rows_of_nulls(
    tmp_path: Path, monkeypatch, data: bytes, first_line: int
) -> None:
    path = tmp_path / "book.csv"
    path.write_bytes(data)
    header = [h.strip() for h in HEADER.split(",")]

    def whole():
        return read_loan_book(path)

    def buffer():  # as a block of a file is read
        return read_records(path, header, pa.py_buffer(data), first_line)

    for read in (whole, buffer):
        assert_same(outcome(read), exact_read(monkeypatch, read))


def test_an_open_quote_at_the_end_takes_in_the_empty_lines_after_it(
    tmp_path: Path, monkeypatch
) -> None:
    """The line accounting alone cannot see it (each line inside the quote is empty): the
    line break in the last record does."""
    path = tmp_path / "book.csv"
    path.write_text(f'{HEADER}\n{ROW_A}\n\n{ROW_B.rsplit(",", 1)[0]},"No\n\n\n', encoding="utf-8")
    fast = read_loan_book(path)
    assert_same(fast, exact_read(monkeypatch, lambda: read_loan_book(path)))
    assert fast.blank_lines == 1  # line 3; lines 5 and 6 are inside the quote
    assert fast.frame["source_line"].tolist() == [2, 4]


def test_blank_lines_across_blocks_count_as_in_the_whole_file(tmp_path: Path) -> None:
    rows = good_rows(60)
    text = HEADER + "\n"
    for k, row in enumerate(rows):
        text += row + "\n" + ["", "\n", "\n" * 50, "   \n\n", "\r\n" * 7][k % 5]
    path = tmp_path / "book.csv"
    path.write_text(text, encoding="utf-8", newline="")
    read = read_loan_book(path)
    whole = split_rows(read, **INGEST)
    for block_bytes in (300, 4_000, 10**9):
        raw, valid, _, counts = read_in_blocks(path, block_bytes, **INGEST)
        assert counts.blank_lines == read.blank_lines > 0
        pd.testing.assert_frame_equal(raw, read.frame, check_exact=True)
        pd.testing.assert_frame_equal(valid, whole.valid, check_exact=True)


def reference_lines(data: bytes) -> tuple[int, list[int]]:
    """The lines of ``data`` as the CSV reader breaks them, and which are empty (from 1)."""
    if not data:
        return 0, []
    lines = re.split(rb"\r\n|\r|\n", data)
    if data.endswith((b"\n", b"\r")):
        lines = lines[:-1]
    return len(lines), [n for n, line in enumerate(lines, start=1) if not line]


@pytest.mark.parametrize("piece", [1, 2, 3, 7, 1 << 22])
def test_line_breaks_are_counted_as_the_reader_breaks_lines(monkeypatch, piece: int) -> None:
    """Across the pieces the bytes are scanned in: a CRLF cut in two is one break."""
    monkeypatch.setattr(ingest_lines, "_SCAN_BYTES", piece)
    rng = random.Random(piece)
    for _ in range(300):
        data = bytes(rng.choice(b"a,\r\n") for _ in range(rng.randint(0, 40)))
        total, empty = reference_lines(data)
        assert ingest_lines._line_count(pa.py_buffer(data)) == total
        lines, starts, lengths = ingest_lines._empty_lines(pa.py_buffer(data))
        assert lines == total
        found = [int(s) + k for s, n in zip(starts, lengths, strict=True) for k in range(n)]
        assert found == empty


def test_renumber_moves_lines_past_runs() -> None:
    """Lines 1..9 less 3, 4 and 7: the others are 1, 2, 5, 6, 8, 9."""
    starts, lengths = np.array([3, 7]), np.array([2, 1])
    others = ingest_lines._renumber(np.arange(1, 7), starts, lengths)
    assert others.tolist() == [1, 2, 5, 6, 8, 9]


# --- every row bad: the column, the rule, how many, which lines -------------------------------


def every_row(tmp_path: Path, column: str, value: str, blank_after: int = 0) -> Path:
    """The sample with ``value`` in ``column`` on every row, and ``blank_after`` empty lines
    after each row."""
    at = LOAN_BOOK_COLUMNS.index(column)
    rows = []
    for row in ROWS:
        cells = row.split(",")
        cells[at] = value
        rows.append(",".join(cells) + "\n" * (1 + blank_after))
    path = tmp_path / f"every_{column}.csv"
    path.write_text(HEADER + "\n" + "".join(rows), encoding="utf-8")
    return path


EVERY_ROW_BAD = [
    ("Loan_Amount", "abc", "integer", "line {}: 'abc'"),
    ("Age", "5", "greater_than_or_equal_to(18)", "line {}: '5'"),
    ("Borrower_ID", "", "not_nullable", "line {}: blank"),
]


@pytest.mark.parametrize("blank_after", [0, 3])
@pytest.mark.parametrize(("column", "value", "rule", "example"), EVERY_ROW_BAD)
def test_every_row_bad_names_the_column_rule_count_and_lines(
    tmp_path: Path, column: str, value: str, rule: str, example: str, blank_after: int
) -> None:
    path = every_row(tmp_path, column, value, blank_after)
    with pytest.raises(LoanBookFileError) as caught:
        split_rows(read_loan_book(path), **INGEST)
    message = str(caught.value)
    step = 1 + blank_after  # the rows' lines: 2, 2 + step, ...
    assert message.startswith(f"{path}: every row failed validation (500 row(s))\n")
    assert f"  column {column}, rule {rule}: 500 row(s); e.g. " in message
    assert example.format(2) in message and example.format(2 + step) in message
    summary = caught.value.summary
    assert (summary.iloc[0]["column"], summary.iloc[0]["rule"], summary.iloc[0]["rows"]) == (
        column,
        rule,
        500,
    )
    # read in blocks (as on a Dask cluster): the same message
    with pytest.raises(LoanBookFileError) as in_blocks:
        read_in_blocks(path, 20_000, n_buckets=2, **INGEST)
    assert str(in_blocks.value) == message


def test_every_row_bad_lists_the_rule_that_failed_most_first(tmp_path: Path) -> None:
    at_age, at_amount = LOAN_BOOK_COLUMNS.index("Age"), LOAN_BOOK_COLUMNS.index("Loan_Amount")
    rows = []
    for k, row in enumerate(ROWS):
        cells = row.split(",")
        cells[at_age] = "5"
        if k % 5 == 0:
            cells[at_amount] = "abc"
        rows.append(",".join(cells))
    path = tmp_path / "book.csv"
    path.write_text("\n".join([HEADER, *rows]) + "\n", encoding="utf-8")
    with pytest.raises(LoanBookFileError) as caught:
        split_rows(read_loan_book(path), **INGEST)
    lines = str(caught.value).splitlines()
    assert lines[1].startswith("  column Age, rule greater_than_or_equal_to(18): 500 row(s)")
    assert lines[2].startswith("  column Loan_Amount, rule integer: 100 row(s); e.g. line 2:")
    assert "line 7: 'abc'" in lines[2]


# (column, cell, reason): why a cell that breaks its number rule did, in the words a user fixes
# the file by; the same whole and in blocks
NOT_A_NUMBER = [
    ("Loan_Amount", "abc", "Loan_Amount is not a number"),
    ("Loan_Amount", "12.5", "Loan_Amount is a number but not a whole number"),
    ("Loan_Amount", "1,000.5", "Loan_Amount is a number but not a whole number"),
    ("Age", "NaN", "Age is not a finite number"),
    ("Age", "1e999", "Age is not a finite number"),
    ("Age", "4e1", "Age is in exponent notation; write whole numbers in digits"),
    ("Age", "1,000", "Age has a thousands separator; only amounts may"),
    ("Monthly_EMI", "abc", "Monthly_EMI is not a number"),
    ("Monthly_EMI", "inf", "Monthly_EMI is not a finite number"),
]


def test_a_cell_that_is_no_number_says_why(tmp_path: Path) -> None:
    rows = [row.split(",") for row in ROWS]
    for k, (column, cell, _) in enumerate(NOT_A_NUMBER):
        rows[k][LOAN_BOOK_COLUMNS.index(column)] = f'"{cell}"' if "," in cell else cell
    path = tmp_path / "book.csv"
    path.write_text("\n".join([HEADER, *map(",".join, rows)]) + "\n", encoding="utf-8")
    config = INGEST | {"max_quarantine_share": 0.5}
    issues = split_rows(read_loan_book(path), **config).issues
    found = issues.sort_values("source_line")[["source_line", "column", "value", "reason"]]
    expected = [
        (k + 2, column, cell, reason) for k, (column, cell, reason) in enumerate(NOT_A_NUMBER)
    ]
    assert list(found.itertuples(index=False, name=None)) == expected
    quarantine = read_in_blocks(path, 20_000, n_buckets=2, **config)[2]
    assert sorted(zip(quarantine["source_line"], quarantine["reason"], strict=True)) == [
        (line, reason) for line, _, _, reason in expected
    ]


def test_every_row_bad_through_the_command_line(tmp_path: Path, capfd, monkeypatch) -> None:
    """The command's own code (``main``), in this process: the message it prints is the point.
    That ``python -m loan_pipeline run`` as a process exits 1 with a step's message and no
    traceback: test_cli.py::test_too_many_bad_rows_name_file_column_rule_and_rows."""
    from loan_pipeline.__main__ import main

    path = every_row(tmp_path, "Loan_Amount", "abc")
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.delenv("LOAN_BOOK_CSV", raising=False)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("LOAN_PIPELINE_STORAGE", str(tmp_path / "storage"))
    assert main(["run", "--csv", str(path)]) == 1
    err = capfd.readouterr().err  # the descriptor: the run's step processes write there too
    assert "Traceback" not in err
    expected = textwrap.indent(
        f"{path}: every row failed validation (500 row(s))\n"
        "  column Loan_Amount, rule integer: 500 row(s); e.g. line 2: 'abc'; line 3: 'abc'",
        "  ",
    )
    assert expected in err, err
