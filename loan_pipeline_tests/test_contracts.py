"""The bad-input corpus: every way a loan-book file goes wrong, and exactly what ingest does.

Each case writes one file (generated here from the shipped sample; no data file is committed),
runs only the ingest step against a copy of a good run's storage, and checks one of three
outcomes:

- stopped: the step fails with a message naming the file and the problem, the blocking check
  records the failure, nothing is materialized and the storage copy is left exactly as it was;
- quarantined: the run goes on; the bad rows are in ``quarantined_loans`` (line, column, rule,
  value) and every other row is in ``validated_loans``;
- accepted: cosmetic differences are cleaned up; ``validated_loans`` equals the good run's.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from dagster import AssetKey, DagsterInstance, ExecuteInProcessResult

from loan_pipeline_tests.conftest import (
    SAMPLE_CSV,
    PipelineRun,
    environment,
    published_files,
    run_pipeline,
)

FILE_CHECK = "loan_book_file_is_usable"
SHARE_CHECK = "quarantine_share_below_threshold"
INGEST_STEP = "ingest_loan_book"
INGEST_ASSETS = [AssetKey("raw_loans"), AssetKey("validated_loans"), AssetKey("quarantined_loans")]
WAREHOUSE = "warehouse.duckdb"
PUBLISHED = "published_snapshot"

TEXT = SAMPLE_CSV.read_text()
LINES = TEXT.splitlines()  # LINES[0] is the header (line 1); line n is LINES[n - 1]
HEADER = LINES[0].split(",")
N_ROWS = len(LINES) - 1
LOAN_TYPE_ISIN = "isin(['Personal', 'Home', 'Auto', 'Business'])"
assert '"' not in TEXT, "the helpers below split the sample's lines on commas"


# --- building bad files from the sample ------------------------------------------------------


def cell(line: int, column: str) -> str:
    """The sample's value at a physical line (2 = first data row) and column."""
    return LINES[line - 1].split(",")[HEADER.index(column)]


def first_line(column: str, value: str) -> int:
    return next(n for n in range(2, N_ROWS + 2) if cell(n, column) == value)


def edited(changes: dict[tuple[int, str], str], lines: list[str] = LINES) -> list[str]:
    """The sample's lines with some cells replaced: {(line, column): new text}."""
    out = list(lines)
    for (line, column), value in changes.items():
        fields = out[line - 1].split(",")
        fields[HEADER.index(column)] = value
        out[line - 1] = ",".join(fields)
    return out


def joined(lines: list[str], eol: str = "\n") -> str:
    return eol.join(lines) + eol


def padded_lines(rows: int) -> list[str]:
    """The sample made ``rows`` rows long: extra rows copy sample rows with fresh ids."""
    out = list(LINES)
    for k in range(N_ROWS + 1, rows + 1):
        fields = LINES[(k - N_ROWS - 1) % N_ROWS + 1].split(",")
        fields[HEADER.index("Borrower_ID")] = f"BRW_{k}"
        fields[HEADER.index("Loan_ID")] = f"LN_{k}"
        out.append(",".join(fields))
    return out


Writer = Callable[[Path], None]


def content(make: Callable[[], str | bytes]) -> Writer:
    """A writer for a file whose content is built lazily (at test time, not import time)."""

    def write(path: Path) -> None:
        data = make()
        path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)

    return write


def cells(changes: dict[tuple[int, str], str]) -> Writer:
    return content(lambda: joined(edited(changes)))


def no_file(path: Path) -> None:
    """The configured path does not exist."""


def latin1_id(line: int, lines: list[str]) -> bytes:
    """The file, UTF-8 except for an 'é' encoded as latin-1 in one row's Borrower_ID."""
    before = joined(lines[: line - 1]).encode("utf-8")
    bad = lines[line - 1].replace(lines[line - 1].split(",")[0], "BRW_é", 1) + "\n"
    return before + bad.encode("latin-1") + joined(lines[line:]).encode("utf-8")


LATIN1_EARLY = latin1_id(6, LINES)
PADDED = padded_lines(1000)
LATIN1_LATE = latin1_id(950, PADDED)
EARLY_OFFSET = LATIN1_EARLY.index("é".encode("latin-1"))
LATE_OFFSET = LATIN1_LATE.index("é".encode("latin-1"))
assert EARLY_OFFSET < 1 << 16 < LATE_OFFSET


def many_identical_rows(path: Path) -> None:
    """100,000 copies of one row (a 14 MB file): a share of bad rows that rounds to 100.0%
    shown with more digits, repeats of a repeat counted once each, and the examples in the
    message and the failure table kept to a few however many rows fail."""
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(LINES[0] + "\n")
        row = LINES[1] + "\n"
        for _ in range(10):
            fh.write(row * 10_000)


def drop_column(column: str) -> list[str]:
    at = HEADER.index(column)
    return [",".join(f for i, f in enumerate(line.split(",")) if i != at) for line in LINES]


def with_notes(path: Path) -> None:
    """An extra, quoted 'Notes' column with a comma inside, and a quoted category value."""
    lines = [LINES[0] + ",Notes"] + [line + "," for line in LINES[1:]]
    lines[NOTES_LINE - 1] = LINES[NOTES_LINE - 1] + ',"late, then paid"'
    lines = edited({(QUOTED_LINE, "Employment_Type"): '"Salaried"'}, lines)
    path.write_text(joined(lines))


NOTES_LINE = 6
QUOTED_LINE = first_line("Employment_Type", "Salaried")
TIMESHARE_30 = {(n, "Loan_Type"): "Timeshare" for n in range(2, 32)}  # 30 of 500 rows: 6%


# --- running the ingest step against a copy of a good run -----------------------------------


@dataclass
class Baseline:
    storage: Path
    files: dict[str, bytes]  # every file but the warehouse, by relative path
    tables: dict[str, pd.DataFrame]

    @property
    def validated(self) -> pd.DataFrame:
        return self.tables["validated_loans"]


def snapshot_files(storage: Path) -> dict[str, bytes]:
    return published_files(storage)


def read_tables(storage: Path) -> dict[str, pd.DataFrame]:
    with duckdb.connect(str(storage / WAREHOUSE), read_only=True) as con:
        names = [r[0] for r in con.execute("SHOW TABLES").fetchall()]
        return {n: con.execute(f'SELECT * FROM "{n}"').df() for n in sorted(names)}


@pytest.fixture(scope="module")
def baseline(sample_run) -> Baseline:
    """The full graph once on the shipped sample (the session's run, which other test files
    share; each case copies its storage): the 'previous good run' every case starts from."""
    storage = sample_run.storage
    return Baseline(storage, snapshot_files(storage), read_tables(storage))


@dataclass
class Outcome:
    csv: Path
    storage: Path
    result: ExecuteInProcessResult

    def table(self, name: str) -> pd.DataFrame:
        with duckdb.connect(str(self.storage / WAREHOUSE), read_only=True) as con:
            return con.execute(f'SELECT * FROM "{name}"').df()

    def materialized(self) -> dict:
        return {
            e.asset_key.to_user_string(): e.step_materialization_data.materialization.metadata
            for e in self.result.get_asset_materialization_events()
        }

    def checks(self) -> dict:
        return {
            e.event_specific_data.check_name: e.event_specific_data
            for e in self.result.all_events
            if e.event_type_value == "ASSET_CHECK_EVALUATION"
        }

    def failure_message(self) -> str:
        failures = self.result.get_step_failure_events()
        assert [e.step_key for e in failures] == [INGEST_STEP]
        return failures[0].step_failure_data.user_failure_data.description


def strategy_assets() -> list[str]:
    """recovery_strategies and what it reads, as the code location defines them, with the
    ingest's other outputs: for tests about the strategies alone."""
    from dagster import AssetSelection

    from loan_pipeline.definitions import defs

    upstream = AssetSelection.assets("recovery_strategies").upstream()
    keys = {*upstream.resolve(defs.resolve_asset_graph()), *INGEST_ASSETS}
    return sorted(k.to_user_string() for k in keys)


def run_selected(
    csv: Path, storage: Path, assets: list[str], ops: dict | None = None
) -> PipelineRun:
    """Materialize ``assets`` on ``csv`` into ``storage``, published as a hand-picked selection
    is (with published_snapshot: the tables in the catalog, the export at its stable path);
    ``ops``: run config by op, the ingest's merged with the file's path."""
    from loan_pipeline.definitions import defs

    ops = dict(ops or {})
    ingest = ops.get(INGEST_STEP, {}).get("config", {})
    ops[INGEST_STEP] = {"config": {"csv_path": str(csv), **ingest}}
    instance = DagsterInstance.ephemeral()
    with environment(LOAN_PIPELINE_STORAGE=str(storage)):
        result = defs.resolve_job_def("full_refresh").execute_in_process(
            run_config={"ops": ops},
            instance=instance,
            raise_on_error=False,
            asset_selection=[AssetKey(a) for a in [*assets, PUBLISHED]],
        )
    return PipelineRun(result=result, storage=storage, instance=instance)


def run_ingest(csv: Path, storage: Path, config: dict) -> ExecuteInProcessResult:
    assets = [k.to_user_string() for k in INGEST_ASSETS]
    return run_selected(csv, storage, assets, {INGEST_STEP: {"config": config}}).result


# --- the three outcomes -----------------------------------------------------------------------


@dataclass(frozen=True)
class Stopped:
    """File-level or threshold failure: nothing written, previous outputs untouched."""

    phrases: tuple[str, ...]  # exact substrings of the failure message ("{csv}" = the path)
    check: str = FILE_CHECK
    failure_cases: tuple[str, ...] = ()  # substrings of the check's failure_cases table
    extra: Callable[[str, Path], None] | None = None  # more assertions on (message, csv)

    def verify(self, out: Outcome, base: Baseline) -> None:
        assert not out.result.success
        message = out.failure_message()
        assert message.startswith(f"{out.csv}: "), message
        for phrase in self.phrases:
            assert phrase.format(csv=out.csv) in message, message
        if self.extra is not None:
            self.extra(message, out.csv)

        checks = out.checks()
        assert checks[self.check].passed is False
        if self.check == SHARE_CHECK:
            assert checks[FILE_CHECK].passed is True  # the file itself was readable
            assert "failure_cases" in checks[SHARE_CHECK].metadata
        else:
            assert SHARE_CHECK not in checks
            assert checks[FILE_CHECK].metadata["error"].value == message
        for text in self.failure_cases:
            assert text in checks[self.check].metadata["failure_cases"].value

        assert out.materialized() == {}
        assert snapshot_files(out.storage) == base.files
        after = read_tables(out.storage)
        assert sorted(after) == sorted(base.tables)
        for name, frame in base.tables.items():
            pd.testing.assert_frame_equal(after[name], frame, obj=name)


_ID_OF_LINE = object()


@dataclass(frozen=True)
class Issue:
    line: int
    column: str
    rule: str
    value: str | None
    reason: str | None = None  # exact reason, when given
    borrower_id: object = _ID_OF_LINE  # default: the sample's id on that line (None for <row>)

    def expected_id(self) -> str | None:
        if self.borrower_id is not _ID_OF_LINE:
            return self.borrower_id  # type: ignore[return-value]
        return None if self.column == "<row>" else cell(self.line, "Borrower_ID")


@dataclass(frozen=True)
class Quarantined:
    """Row-level issues: those rows set aside, every other row validated unchanged."""

    issues: tuple[Issue, ...]
    extra: Callable[[Outcome], None] | None = None

    def verify(self, out: Outcome, base: Baseline) -> None:
        assert out.result.success
        quarantine = out.table("quarantined_loans")
        got = quarantine[["source_line", "Borrower_ID", "column", "rule", "value"]]
        assert got.to_dict("records") == [
            {
                "source_line": i.line,
                "Borrower_ID": i.expected_id(),
                "column": i.column,
                "rule": i.rule,
                "value": i.value,
            }
            for i in self.issues
        ]
        for issue, reason in zip(self.issues, quarantine["reason"], strict=True):
            if issue.reason is not None:
                assert reason == issue.reason
        assert (quarantine["source_file"] == str(out.csv)).all()
        lines = sorted({i.line for i in self.issues})
        validated = out.table("validated_loans")
        assert len(validated) == N_ROWS - len(lines)
        expected = base.validated.drop(index=[n - 2 for n in lines]).reset_index(drop=True)
        pd.testing.assert_frame_equal(validated, expected)
        dropped_ids = {cell(n, "Borrower_ID") for n in lines}
        assert not dropped_ids & set(validated["Borrower_ID"])
        assert validated["Borrower_ID"].is_unique and validated["Loan_ID"].is_unique
        assert out.table("raw_loans")["source_line"].tolist() == [
            n
            for n in range(2, N_ROWS + 2)
            if not any(i.line == n and i.column == "<row>" for i in self.issues)
        ]
        metadata = out.materialized()
        assert set(metadata) == {"raw_loans", "validated_loans", "quarantined_loans", PUBLISHED}
        assert metadata["quarantined_loans"]["quarantined_rows"].value == len(lines)
        assert {k: c.passed for k, c in out.checks().items()} == {
            FILE_CHECK: True,
            SHARE_CHECK: True,
        }
        if self.extra is not None:
            self.extra(out)


def same_as_baseline(validated: pd.DataFrame) -> pd.DataFrame:
    return validated


@dataclass(frozen=True)
class Accepted:
    """Cosmetic differences cleaned up: nothing quarantined, the same validated table."""

    expected: Callable[[pd.DataFrame], pd.DataFrame] = same_as_baseline
    raw_metadata: dict = field(default_factory=dict)  # raw_loans metadata key -> value
    extra: Callable[[Outcome], None] | None = None

    def verify(self, out: Outcome, base: Baseline) -> None:
        assert out.result.success
        quarantine = out.table("quarantined_loans")
        assert quarantine.empty, quarantine[["source_line", "column", "rule", "value"]].to_dict(
            "records"
        )
        pd.testing.assert_frame_equal(
            out.table("validated_loans"), self.expected(base.validated.copy())
        )
        metadata = out.materialized()
        assert set(metadata) == {"raw_loans", "validated_loans", "quarantined_loans", PUBLISHED}
        raw = metadata["raw_loans"]
        expected_metadata = {
            "extra_columns": [],
            "blank_lines": 0,
            "malformed_rows": 0,
            "cells_normalised": {},
            **self.raw_metadata,
        }
        for key, value in expected_metadata.items():
            assert raw[key].value == value, key
        assert metadata["quarantined_loans"]["quarantined_rows"].value == 0
        assert {k: c.passed for k, c in out.checks().items()} == {
            FILE_CHECK: True,
            SHARE_CHECK: True,
        }
        if self.extra is not None:
            self.extra(out)


@dataclass(frozen=True)
class Case:
    id: str
    write: Writer
    expect: Stopped | Quarantined | Accepted
    config: dict = field(default_factory=dict)


# --- extra assertions for a few cases ---------------------------------------------------------


def size_and_limit_are_distinguishable(message: str, csv: Path) -> None:
    """The file is over the limit, so the message must not show both as the same number."""
    found = re.search(r"file is (.+?), over the limit of (.+?) \(", message)
    assert found, message
    size, limit = found.groups()
    assert size != limit, f"size and limit both shown as {size!r}: {message}"


def blank_is_null_in_the_quarantine(out: Outcome) -> None:
    quarantine = out.table("quarantined_loans")
    assert json.loads(quarantine["original_row"][0])["Employment_Type"] is None
    assert "line 4: blank" in out.materialized()["quarantined_loans"]["failure_cases"].value


def extra_column_kept_in_raw_only(out: Outcome) -> None:
    raw = out.table("raw_loans").set_index("source_line")
    assert raw.at[NOTES_LINE, "Notes"] == "late, then paid"
    assert raw["Notes"].drop(index=NOTES_LINE).isna().all()
    assert "Notes" not in out.table("validated_loans").columns
    assert out.checks()[FILE_CHECK].metadata["extra_columns"].value == ["Notes"]


def open_loan(line: int) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def expected(validated: pd.DataFrame) -> pd.DataFrame:
        validated["Recovery_Status"] = validated["Recovery_Status"].astype(object)
        validated.loc[line - 2, "Recovery_Status"] = None
        return validated

    return expected


def one_more_open_loan(out: Outcome) -> None:
    validated = out.table("validated_loans")
    assert validated["Recovery_Status"].isna().sum() == 1
    assert out.materialized()["validated_loans"]["open_loans"].value == 1


# --- the corpus -------------------------------------------------------------------------------

FEMALE = first_line("Gender", "Female")
FULLY = first_line("Recovery_Status", "Fully Recovered")
SALARIED = first_line("Employment_Type", "Salaried")
COLUMN_LIST = ", ".join(HEADER)

CASES = [
    # file level: stopped, nothing written
    Case(
        "missing_file",
        no_file,
        Stopped(("loan book not found (expected a CSV file at this path)",)),
    ),
    Case(
        "empty_file",
        content(lambda: b""),
        Stopped(("empty file (0 bytes); expected a CSV header row and one row per loan",)),
    ),
    Case(
        "header_only",
        content(lambda: LINES[0] + "\n"),
        Stopped(("header only: the file has no loan rows",)),
    ),
    Case(
        "binary_png",
        content(lambda: b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00" + bytes(64)),
        Stopped(("binary data (NUL bytes): not a CSV text file",)),
    ),
    Case(
        "plain_text_single_field",
        content(lambda: "hello world\nthis is not a loan book\nat all\n"),
        Stopped(
            (
                "not a CSV loan book: the first line has a single field 'hello world'; "
                f"expected a comma-separated header with {COLUMN_LIST}",
            )
        ),
    ),
    Case(
        "semicolon_delimiter",
        content(lambda: joined([line.replace(",", ";") for line in LINES])),
        Stopped(("wrong delimiter: the header is separated by semicolons; expected commas",)),
    ),
    Case(
        "tab_delimiter",
        content(lambda: joined([line.replace(",", "\t") for line in LINES])),
        Stopped(("wrong delimiter: the header is separated by tabs; expected commas",)),
    ),
    Case(
        "pipe_delimiter",
        content(lambda: joined([line.replace(",", "|") for line in LINES])),
        Stopped(("wrong delimiter: the header is separated by pipes; expected commas",)),
    ),
    Case(
        "required_column_missing",
        content(lambda: joined(drop_column("Loan_Tenure"))),
        Stopped(
            (f"required column(s) missing: Loan_Tenure; expected the 21 columns {COLUMN_LIST}",)
        ),
    ),
    Case(
        "column_renamed_with_prefix",
        content(lambda: joined([LINES[0].replace(",Age,", ",Borrower_Age,"), *LINES[1:]])),
        Stopped(("required column(s) missing: Age (found 'Borrower_Age': renamed?)",)),
    ),
    Case(
        "column_renamed_with_space",
        content(
            lambda: joined([LINES[0].replace(",Monthly_Income,", ",Monthly Income,"), *LINES[1:]])
        ),
        Stopped(("required column(s) missing: Monthly_Income (found 'Monthly Income': renamed?)",)),
    ),
    Case(
        "duplicated_column",
        content(lambda: joined([LINES[0] + ",Age"] + [line + ",30" for line in LINES[1:]])),
        Stopped(("column(s) appear more than once in the header: 'Age' (columns 2, 22)",)),
    ),
    Case(
        "latin1_in_first_64kb",
        content(lambda: LATIN1_EARLY),
        Stopped(
            (
                f"not UTF-8 text (byte 0xe9 at offset {EARLY_OFFSET}); "
                "save the file as UTF-8 (CSV UTF-8)",
            )
        ),
    ),
    Case(
        "latin1_after_first_64kb",
        content(lambda: LATIN1_LATE),
        # The same message as within the first 64 KB: where the bad byte is, and what to do.
        Stopped(
            (
                f"not UTF-8 text (byte 0xe9 at offset {LATE_OFFSET}); "
                "save the file as UTF-8 (CSV UTF-8)",
            )
        ),
    ),
    Case(
        "every_row_bad",
        cells({(n, "Loan_Type"): "Timeshare" for n in range(2, N_ROWS + 2)}),
        Stopped(
            (
                "every row failed validation (500 row(s))",
                f"column Loan_Type, rule {LOAN_TYPE_ISIN}: 500 row(s); e.g. line 2: 'Timeshare'",
            ),
            failure_cases=("Timeshare", "500"),
        ),
    ),
    Case(
        "larger_than_size_limit",
        content(lambda: TEXT),
        Stopped(
            ("over the limit of", "(setting max_file_gb); it was not read"),
            extra=size_and_limit_are_distinguishable,
        ),
        config={"max_file_gb": 1e-6},
    ),
    Case(
        "one_row_file",
        content(lambda: joined(LINES[:2])),
        Stopped(
            (
                "only 1 valid row(s); at least 20 are needed to segment and score a book "
                "(setting min_rows)",
            )
        ),
    ),
    Case(
        "many_identical_rows",
        many_identical_rows,
        Stopped(
            (
                "99999 of 100000 rows (99.9990%) failed validation, over the 5.0% threshold "
                "(setting max_quarantine_share)",
                "column Borrower_ID, rule unique: 99999 row(s); e.g. line 3: 'BRW_1'",
                "column Loan_ID, rule unique: 99999 row(s); e.g. line 3: 'LN_1'",
            ),
            check=SHARE_CHECK,
            failure_cases=("Borrower_ID", "Loan_ID", "99999"),
        ),
    ),
    Case(
        "too_many_bad_rows",
        cells(TIMESHARE_30),
        Stopped(
            (
                "30 of 500 rows (6.0%) failed validation, over the 5.0% threshold "
                "(setting max_quarantine_share)",
                f"column Loan_Type, rule {LOAN_TYPE_ISIN}: 30 row(s); e.g. line 2: 'Timeshare'",
            ),
            check=SHARE_CHECK,
            failure_cases=("Timeshare",),
        ),
    ),
    # row level: quarantined, the run goes on
    Case(
        "too_many_bad_rows_under_a_raised_threshold",
        cells(TIMESHARE_30),
        Quarantined(
            tuple(Issue(n, "Loan_Type", LOAN_TYPE_ISIN, "Timeshare") for n in range(2, 32))
        ),
        config={"max_quarantine_share": 0.1},
    ),
    Case(
        "wrong_type",
        cells({(4, "Age"): "abc"}),
        Quarantined((Issue(4, "Age", "integer", "abc", "Age is not a number"),)),
    ),
    Case(
        "out_of_range",
        cells({(4, "Age"): "150"}),
        Quarantined(
            (
                Issue(
                    4,
                    "Age",
                    "less_than_or_equal_to(100)",
                    "150",
                    "Age 150 breaks less_than_or_equal_to(100)",
                ),
            )
        ),
    ),
    Case(
        "unknown_category",
        cells({(4, "Loan_Type"): "Timeshare"}),
        Quarantined(
            (
                Issue(
                    4,
                    "Loan_Type",
                    LOAN_TYPE_ISIN,
                    "Timeshare",
                    "Loan_Type 'Timeshare' is not an allowed value",
                ),
            )
        ),
    ),
    Case(
        "blank_required_field",
        cells({(4, "Employment_Type"): ""}),
        Quarantined(
            (
                Issue(
                    4,
                    "Employment_Type",
                    "not_nullable",
                    None,  # a blank cell has no value: null, not the text '<NA>'
                    "Employment_Type is blank (a required field)",
                ),
            ),
            extra=blank_is_null_in_the_quarantine,
        ),
    ),
    Case(
        "duplicate_borrower_id",
        cells({(6, "Borrower_ID"): cell(3, "Borrower_ID")}),
        Quarantined(
            (
                Issue(
                    6,
                    "Borrower_ID",
                    "unique",
                    cell(3, "Borrower_ID"),
                    "duplicate Borrower_ID: first seen on line 3",
                    borrower_id=cell(3, "Borrower_ID"),
                ),
            )
        ),
    ),
    Case(
        "duplicate_loan_id",
        cells({(6, "Loan_ID"): cell(3, "Loan_ID")}),
        Quarantined(
            (
                Issue(
                    6,
                    "Loan_ID",
                    "unique",
                    cell(3, "Loan_ID"),
                    "duplicate Loan_ID: first seen on line 3",
                ),
            )
        ),
    ),
    Case(
        "outstanding_above_loan_amount",
        cells({(4, "Outstanding_Loan_Amount"): str(int(cell(4, "Loan_Amount")) + 1)}),
        Quarantined(
            (
                Issue(
                    4,
                    "Outstanding_Loan_Amount",
                    "outstanding_within_loan",
                    f"{int(cell(4, 'Loan_Amount')) + 1}.0",
                    "Outstanding_Loan_Amount is larger than Loan_Amount",
                ),
            )
        ),
    ),
    Case(
        # a blank amount on one row must not stop the rule from judging the other rows
        "outstanding_above_loan_amount_beside_a_blank_amount",
        cells(
            {
                (4, "Loan_Amount"): "",
                (5, "Outstanding_Loan_Amount"): str(int(cell(5, "Loan_Amount")) + 1),
            }
        ),
        Quarantined(
            (
                Issue(4, "Loan_Amount", "not_nullable", None),
                Issue(
                    5,
                    "Outstanding_Loan_Amount",
                    "outstanding_within_loan",
                    f"{int(cell(5, 'Loan_Amount')) + 1}.0",
                    "Outstanding_Loan_Amount is larger than Loan_Amount",
                ),
            )
        ),
    ),
    Case(
        "negative_collateral",
        cells({(4, "Collateral_Value"): "-5"}),
        Quarantined((Issue(4, "Collateral_Value", "greater_than_or_equal_to(0)", "-5.0"),)),
    ),
    Case(
        "nan_in_integer_column",
        cells({(4, "Num_Dependents"): "NaN"}),
        Quarantined(
            (Issue(4, "Num_Dependents", "integer", "NaN", "Num_Dependents is not a finite number"),)
        ),
    ),
    Case(
        "inf_in_float_column",
        cells({(4, "Monthly_EMI"): "inf"}),
        Quarantined(
            (Issue(4, "Monthly_EMI", "number", "inf", "Monthly_EMI is not a finite number"),)
        ),
    ),
    Case(
        "fractional_integer",
        cells({(4, "Age"): "30.5"}),
        Quarantined((Issue(4, "Age", "integer", "30.5"),)),
    ),
    Case(
        "whole_number_beyond_int64",
        cells({(4, "Age"): "99999999999999999999", (7, "Loan_Amount"): "123456789012345678901"}),
        Quarantined(
            (
                Issue(
                    4,
                    "Age",
                    "integer",
                    "99999999999999999999",
                    "Age is out of range for a whole number (beyond a 64-bit integer)",
                ),
                Issue(
                    7,
                    "Loan_Amount",
                    "integer",
                    "123456789012345678901",
                    "Loan_Amount is out of range for a whole number (beyond a 64-bit integer)",
                ),
            )
        ),
    ),
    Case(
        "too_many_fields",
        content(lambda: joined([*LINES[:3], LINES[3] + ",extra", *LINES[4:]])),
        Quarantined(
            (
                Issue(
                    4,
                    "<row>",
                    "field_count",
                    LINES[3] + ",extra",
                    "wrong number of fields (expected 21)",
                ),
            )
        ),
    ),
    Case(
        "too_few_fields",
        content(lambda: joined([*LINES[:3], LINES[3].rsplit(",", 1)[0], *LINES[4:]])),
        Quarantined(
            (
                Issue(
                    4,
                    "<row>",
                    "field_count",
                    LINES[3].rsplit(",", 1)[0],
                    "wrong number of fields (expected 21)",
                ),
            )
        ),
    ),
    Case(
        "currency_symbol",
        cells({(4, "Monthly_Income"): "$5000"}),
        Quarantined(
            (
                Issue(
                    4,
                    "Monthly_Income",
                    "no_currency_symbol",
                    "$5000",
                    "Monthly_Income has a currency symbol; amounts must be plain numbers in "
                    "the book's units",
                ),
            )
        ),
    ),
    Case(
        "currency_code",
        cells({(4, "Loan_Amount"): f"{cell(4, 'Loan_Amount')} USD"}),
        Quarantined(
            (Issue(4, "Loan_Amount", "no_currency_symbol", f"{cell(4, 'Loan_Amount')} USD"),)
        ),
    ),
    # accepted: cleaned up, the same validated table
    Case(
        "blank_recovery_status_is_an_open_loan",
        cells({(4, "Recovery_Status"): ""}),
        Accepted(expected=open_loan(4), extra=one_more_open_loan),
    ),
    Case("utf8_bom", content(lambda: "\ufeff" + TEXT), Accepted()),
    Case("windows_line_endings", content(lambda: joined(LINES, "\r\n")), Accepted()),
    Case(
        "quoted_fields_with_commas",
        with_notes,
        Accepted(raw_metadata={"extra_columns": ["Notes"]}, extra=extra_column_kept_in_raw_only),
    ),
    Case(
        "mixed_case_categories",
        cells(
            {
                (FEMALE, "Gender"): "female",
                (FULLY, "Recovery_Status"): "FULLY RECOVERED",
                (SALARIED, "Employment_Type"): "sAlArIeD",
            }
        ),
        Accepted(
            raw_metadata={
                "cells_normalised": {"Gender": 1, "Recovery_Status": 1, "Employment_Type": 1}
            }
        ),
    ),
    Case(
        # one cell, both padded and re-cased: still one cell normalised
        "padded_and_recased_category",
        cells({(SALARIED, "Employment_Type"): " salaried "}),
        Accepted(raw_metadata={"cells_normalised": {"Employment_Type": 1}}),
    ),
    Case(
        "trailing_blank_lines",
        content(lambda: TEXT + "\n\n\n"),
        Accepted(raw_metadata={"blank_lines": 3}),
    ),
    Case(
        # a line of spaces is blank once surrounding spaces are removed
        "trailing_whitespace_only_line",
        content(lambda: TEXT + "   \n"),
        Accepted(raw_metadata={"blank_lines": 1}),
    ),
    Case(
        "thousands_separators_in_money",
        cells(
            {
                (4, "Loan_Amount"): f'"{int(cell(4, "Loan_Amount")):,}"',
                (5, "Collateral_Value"): f'"{float(cell(5, "Collateral_Value")):,.2f}"',
            }
        ),
        Accepted(raw_metadata={"cells_normalised": {"Loan_Amount": 1, "Collateral_Value": 1}}),
    ),
    Case(
        "spaces_around_numbers",
        cells(
            {(4, "Age"): f" {cell(4, 'Age')} ", (5, "Monthly_EMI"): f"  {cell(5, 'Monthly_EMI')}"}
        ),
        Accepted(raw_metadata={"cells_normalised": {"Age": 1, "Monthly_EMI": 1}}),
    ),
    Case(
        "percent_sign_in_interest_rate",
        cells({(4, "Interest_Rate"): f"{cell(4, 'Interest_Rate')}%"}),
        Accepted(raw_metadata={"cells_normalised": {"Interest_Rate": 1}}),
    ),
    Case(
        "whole_number_written_as_float",
        cells({(4, "Age"): f"{cell(4, 'Age')}.0"}),
        Accepted(),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, baseline: Baseline, tmp_path: Path) -> None:
    csv = tmp_path / f"{case.id}.csv"
    case.write(csv)
    storage = tmp_path / "storage"
    shutil.copytree(baseline.storage, storage, symlinks=True)
    try:
        result = run_ingest(csv, storage, case.config)
        case.expect.verify(Outcome(csv, storage, result), baseline)
    finally:
        if csv.exists() and csv.stat().st_size > 10_000_000:
            csv.unlink()  # do not keep a 14 MB file in pytest's retained temp folders


def test_corpus_ids_are_unique_and_cover_every_outcome() -> None:
    assert len({c.id for c in CASES}) == len(CASES) >= 30
    assert {type(c.expect) for c in CASES} == {Stopped, Quarantined, Accepted}


# --- the whole graph on a file with a few bad rows and several harmless oddities --------------


def every_asset_of(job: str) -> set[str]:
    """The job's assets as the code location defines them (so a new asset is expected too)."""
    from loan_pipeline.definitions import defs

    keys = defs.resolve_job_def(job).asset_layer.executable_asset_keys
    return {k.to_user_string() for k in keys}


def test_full_graph_on_a_messy_file_with_a_few_bad_rows(tmp_path: Path) -> None:
    """A few bad rows are set aside (the records as read kept in the quarantine) and the whole
    graph runs on without them; harmless oddities are cleaned up on the way."""
    lines = edited(
        {
            (4, "Age"): "150",
            (9, "Loan_Type"): "Timeshare",
            (12, "Loan_ID"): cell(2, "Loan_ID"),
            (FEMALE, "Gender"): "FEMALE",
            (FULLY, "Recovery_Status"): "fully recovered",
            (SALARIED, "Employment_Type"): "salaried",
        }
    )
    csv = tmp_path / "messy.csv"
    csv.write_text("\ufeff" + joined(lines, "\r\n") + "\r\n\r\n")  # BOM, CRLF, 2 blank lines
    run = run_pipeline(csv, tmp_path / "storage")
    assert run.result.success
    assert set(run.materialized()) == every_asset_of("full_refresh")
    assert {"raw_loans", "recovery_strategies", "chart_borrower_segments"} <= set(
        run.materialized()
    )

    quarantine = run.table("quarantined_loans")
    assert quarantine[["source_line", "column", "rule", "value"]].to_dict("records") == [
        {"source_line": 4, "column": "Age", "rule": "less_than_or_equal_to(100)", "value": "150"},
        {"source_line": 9, "column": "Loan_Type", "rule": LOAN_TYPE_ISIN, "value": "Timeshare"},
        {"source_line": 12, "column": "Loan_ID", "rule": "unique", "value": cell(2, "Loan_ID")},
    ]
    bad_ids = {cell(n, "Borrower_ID") for n in (4, 9, 12)}
    assert quarantine["Borrower_ID"].tolist() == [cell(n, "Borrower_ID") for n in (4, 9, 12)]
    assert json.loads(quarantine["original_row"][0])["Age"] == 150  # the record, as read
    for table in ("validated_loans", "scaled_features", "borrower_segments", "risk_scores"):
        frame = run.table(table)
        assert len(frame) == N_ROWS - 3, table
        assert not bad_ids & set(frame["Borrower_ID"]), table
    strategies = run.table("recovery_strategies")
    assert len(strategies) == N_ROWS - 3
    assert not bad_ids & set(strategies["Borrower_ID"])
    exported = pd.read_csv(run.storage / "exports" / "recovery_strategies.csv")
    assert not bad_ids & set(exported["Borrower_ID"])

    validated = run.table("validated_loans").set_index("Borrower_ID")
    assert validated.at[cell(FEMALE, "Borrower_ID"), "Gender"] == "Female"
    assert validated.at[cell(FULLY, "Borrower_ID"), "Recovery_Status"] == "Fully Recovered"
    assert validated.at[cell(SALARIED, "Borrower_ID"), "Employment_Type"] == "Salaried"
    raw = run.materialized()["raw_loans"]
    assert raw["blank_lines"].value == 2
    assert raw["cells_normalised"].value == {
        "Gender": 1,
        "Recovery_Status": 1,
        "Employment_Type": 1,
    }
    assert run.materialized()["quarantined_loans"]["quarantined_rows"].value == 3


def test_the_file_size_limit_is_for_whole_reads_unless_it_is_set():
    """A whole read refuses a file over a sixth of memory by default; a cluster reads in blocks
    (no process holds the file) and has no default limit; a limit that is set holds for both."""
    from loan_pipeline.settings import IngestConfig, default_max_file_bytes

    default = IngestConfig()
    assert default.max_file_bytes() == default_max_file_bytes() > 0
    assert default.max_file_bytes(on_cluster=True) is None
    chosen = IngestConfig(max_file_gb=2.5)
    assert chosen.max_file_bytes() == chosen.max_file_bytes(on_cluster=True) == 2_500_000_000
