"""The whole file's verdict: what a read of it reports, and whether it may be used.

Rows that break a rule are set aside (``ingest_quarantine``); the file as a whole still fails
(nothing is written) when every row is bad, when too large a share was set aside
(:class:`QuarantineThresholdError`, setting ``max_quarantine_share``), or when too few good rows
are left (setting ``min_rows``). The message lists the failures per (column, rule) with
examples, and the error carries them as a table.

Judged from a read's counts (``BookCounts``), so a file read whole (``split_rows``,
``read_whole``) and one read in blocks (``ingest_blocks``: the blocks' counts combined, then
``check_book``) get the same verdict and the same message. A file that passes is reported from
the same counts (``read_warnings``, the failure table) and its kept loans' statuses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from loan_pipeline.core.ingest_header import (
    LoanBookFileError,
    header_only_error,
    source_path,
)
from loan_pipeline.core.ingest_quarantine import (
    SplitResult,
    find_row_issues,
    issue_lines,
    quarantine_table,
    set_aside,
)
from loan_pipeline.core.ingest_records import ReadResult, read_loan_book
from loan_pipeline.core.partitions import sum_counts, summarise, value_counts
from loan_pipeline.schemas import LOAN_BOOK_COLUMNS

EXAMPLES = 5  # failures shown per (column, rule)


class QuarantineThresholdError(LoanBookFileError):
    """Too large a share of rows was quarantined; the message lists the failures."""


# --- what a read reports ----------------------------------------------------------------------


@dataclass
class BookCounts:
    """What a read of the whole file reports (summed over its blocks, when read in blocks)."""

    records: int = 0  # rows in the file (blank lines excluded), well-formed or not
    quarantined: int = 0  # rows set aside
    valid: int = 0  # rows kept
    blank_lines: int = 0
    malformed: int = 0  # rows with the wrong number of fields
    normalised: dict[str, int] = field(default_factory=dict)  # cells cleaned, per column
    extra_columns: list[str] = field(default_factory=list)
    issue_groups: tuple = ()  # issue_groups of the issues (summarise_groups: the table)

    @property
    def share(self) -> float:
        """The share of rows set aside."""
        return self.quarantined / self.records if self.records else 0.0


def block_counts(read: ReadResult, split: SplitResult) -> BookCounts:
    """The counts of one block (or of a whole file read at once)."""
    return BookCounts(
        records=split.records,
        quarantined=split.quarantined,
        valid=len(split.valid),
        blank_lines=read.blank_lines,
        malformed=len(read.malformed),
        normalised=dict(read.normalised),
        extra_columns=list(read.extra_columns),
        issue_groups=issue_groups(split.issues),
    )


def combine_counts(parts: list[BookCounts], header: list[str]) -> BookCounts:
    """The counts of consecutive blocks (in file order) as one: the whole file's."""
    normalised = {}
    for column in header:  # in the header's order, as a whole read lists them
        cleaned = sum(p.normalised.get(column, 0) for p in parts)
        if cleaned:
            normalised[column] = cleaned
    return BookCounts(
        records=sum(p.records for p in parts),
        quarantined=sum(p.quarantined for p in parts),
        valid=sum(p.valid for p in parts),
        blank_lines=sum(p.blank_lines for p in parts),
        malformed=sum(p.malformed for p in parts),
        normalised=normalised,
        extra_columns=[h for h in header if h not in LOAN_BOOK_COLUMNS],
        issue_groups=merge_issue_groups(p.issue_groups for p in parts),
    )


def read_warnings(path: str | Path, counts: BookCounts) -> list[str]:
    """What a user should know of a file that passed: columns it has beyond the loan book's,
    and rows set aside."""
    said = []
    if counts.extra_columns:
        said.append(
            f"{path}: extra column(s) kept in raw_loans, not used as features: "
            f"{counts.extra_columns}"
        )
    if counts.quarantined:
        said.append(
            f"{path}: {counts.quarantined} of {counts.records} rows ({counts.share:.1%}) "
            "quarantined; see the quarantined_loans table"
        )
    return said


def recovery_status_counts(validated) -> dict[str, int]:
    """The validated loans per Recovery_Status, most first, an open loan (no status yet) as
    ``"(open)"``; ``validated`` whole or in partitions."""
    statuses = summarise(
        value_counts,
        sum_counts,
        validated[["Recovery_Status"]].fillna("(open)"),
        ["Recovery_Status"],
    )
    return statuses.sort_values(ascending=False, kind="stable").to_dict()


# --- the failures per (column, rule) ----------------------------------------------------------


def issue_groups(issues: pd.DataFrame, examples: int = EXAMPLES) -> tuple:
    """The issues per (column, rule), in order of first appearance, as
    ``(column, rule, rows, ((line, value), ...))``: how many distinct lines broke it and the
    first ``examples`` issues. Groups of consecutive parts of the issues (blocks of a file)
    combine with ``merge_issue_groups`` into the groups of the whole."""
    groups = []
    for (column, rule), group in issues.groupby(["column", "rule"], sort=False):
        shown = group.head(examples)
        groups.append(
            (
                column,
                rule,
                int(group["source_line"].nunique()),
                tuple(zip(shown["source_line"].tolist(), shown["value"].tolist(), strict=True)),
            )
        )
    return tuple(groups)


def merge_issue_groups(parts, examples: int = EXAMPLES) -> tuple:
    """``issue_groups`` of the issues of consecutive parts of a file (no line in two parts),
    given in file order: the groups of all their issues together."""
    merged: dict[tuple[str, str], tuple[int, tuple]] = {}
    for part in parts:
        for column, rule, rows, shown in part:
            before, seen = merged.get((column, rule), (0, ()))
            merged[column, rule] = (before + rows, (seen + tuple(shown))[:examples])
    return tuple((column, rule, rows, shown) for (column, rule), (rows, shown) in merged.items())


def summarise_groups(groups: tuple) -> pd.DataFrame:
    """``issue_groups`` as a table: one row per (column, rule), most rows first."""
    rows = [
        {
            "column": column,
            "rule": rule,
            "rows": count,
            "examples": "; ".join(
                f"line {line}: {value!r}" if value is not None else f"line {line}: blank"
                for line, value in shown
            ),
        }
        for column, rule, count, shown in groups
    ]
    return pd.DataFrame(rows, columns=["column", "rule", "rows", "examples"]).sort_values(
        "rows", ascending=False, kind="stable"
    )


def summarise_issues(issues: pd.DataFrame, examples: int = EXAMPLES) -> pd.DataFrame:
    """One row per (column, rule): how many rows broke it and up to ``examples`` of them."""
    return summarise_groups(issue_groups(issues, examples))


def _describe(path: Path, summary: pd.DataFrame, headline: str) -> str:
    lines = [f"{path}: {headline}"]
    for row in summary.itertuples(index=False):
        lines.append(
            f"  column {row.column}, rule {row.rule}: {row.rows} row(s); e.g. {row.examples}"
        )
    return "\n".join(lines)


# --- the verdict ------------------------------------------------------------------------------


def _share(x: float) -> str:
    """A percentage that never rounds a partial share to 0.0% or 100.0%."""
    text = f"{x:.1%}"
    if 0 < x < 1 and text in ("0.0%", "100.0%"):
        text = f"{x:.4%}"
    return text


def check_quarantine(
    path: Path,
    records: int,
    quarantined: int,
    valid: int,
    groups,
    *,
    max_quarantine_share: float,
    min_rows: int,
) -> None:
    """Stop if too many of the ``records`` rows were set aside, or too few ``valid`` ones are
    left: the errors of ``split_rows``. ``groups``: a function giving the ``issue_groups`` of
    all the issues (called only to describe a failure)."""
    if valid == 0:
        summary = summarise_groups(groups())
        raise LoanBookFileError(
            _describe(path, summary, f"every row failed validation ({records} row(s))"), summary
        )
    share = quarantined / records
    if share > max_quarantine_share:
        summary = summarise_groups(groups())
        raise QuarantineThresholdError(
            _describe(
                path,
                summary,
                f"{quarantined} of {records} rows ({_share(share)}) failed validation, over the "
                f"{max_quarantine_share:.1%} threshold (setting max_quarantine_share)",
            ),
            summary,
        )
    if valid < min_rows:
        raise LoanBookFileError(
            f"{path}: only {valid} valid row(s); at least {min_rows} are needed to segment "
            "and score a book (setting min_rows)"
        )


def split_rows(read: ReadResult, *, max_quarantine_share: float, min_rows: int) -> SplitResult:
    """Set aside every record that breaks a rule; stop if too many did, or none are left."""
    issues = find_row_issues(read)
    found = issue_lines(read, issues)
    bad_lines, good = found
    check_quarantine(
        read.path,
        read.records,
        len(bad_lines),
        int(good.sum()),
        lambda: issue_groups(issues),
        max_quarantine_share=max_quarantine_share,
        min_rows=min_rows,
    )
    return set_aside(read, issues, found)


def check_book(
    path: str | Path, counts: BookCounts, *, max_quarantine_share: float, min_rows: int
) -> None:
    """The whole file's row-level checks, on its counts: no rows at all (``read_loan_book``'s
    error), every row bad, too large a share set aside, too few left (``split_rows``' errors,
    ``QuarantineThresholdError`` included), each with the message a whole read gives."""
    path = source_path(path)
    if not counts.records:
        raise header_only_error(path)
    check_quarantine(
        path,
        counts.records,
        counts.quarantined,
        counts.valid,
        lambda: counts.issue_groups,
        max_quarantine_share=max_quarantine_share,
        min_rows=min_rows,
    )


# --- the file read whole ----------------------------------------------------------------------


def read_whole(
    path: Path, *, max_bytes: int | None, max_quarantine_share: float, min_rows: int
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, BookCounts]:
    """(raw, validated, quarantined, counts) of the file read at once, in this process: what
    ``ingest_blocks.read_in_blocks`` gives for it, and the same errors."""
    read = read_loan_book(path, max_bytes=max_bytes)
    split = split_rows(read, max_quarantine_share=max_quarantine_share, min_rows=min_rows)
    return read.frame, split.valid, quarantine_table(read, split), block_counts(read, split)
