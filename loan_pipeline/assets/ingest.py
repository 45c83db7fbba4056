"""Ingest: read the loan book, and split it into validated rows and quarantined rows.

One step makes all three tables, so nothing is written unless the whole file passed: a file-level
error or too many bad rows leaves every previous output as it was.
"""

import errno
import json
import time

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetOut,
    Failure,
    MetadataValue,
    Output,
    RetryRequested,
    multi_asset,
)

from loan_pipeline import settings
from loan_pipeline.assets.common import (
    column_lineage,
    column_schema,
    markdown_table,
    table_metadata,
)
from loan_pipeline.io import runs
from loan_pipeline.store.files import explain
from loan_pipeline.store.snapshots import SOURCE
from loan_pipeline.versioning import code_version, file_sha256

GROUP = "ingest"
OWNERS = ["team:data-engineering"]
FILE_CHECK = "loan_book_file_is_usable"
# errors of a read that may pass on a second try
TRANSIENT_ERRORS = {errno.EIO, errno.EAGAIN, errno.ETIMEDOUT, errno.ESTALE, errno.EBUSY}
SHARE_CHECK = "quarantine_share_below_threshold"
_DEFAULT_SHARE = settings.IngestConfig.model_fields["max_quarantine_share"].default


def _refuse(context, path, err, check: str, asset: str, threshold=None):
    """Record the failed check (with the failure cases), log the message, and stop the step
    without writing anything; data errors are not retried."""
    metadata = {"file": MetadataValue.path(str(path)), "error": MetadataValue.text(str(err))}
    if threshold is not None:
        metadata["threshold"] = threshold
    if err.summary is not None:
        metadata["failure_cases"] = markdown_table(err.summary)
    yield AssetCheckResult(
        check_name=check,
        asset_key=asset,
        passed=False,
        severity=AssetCheckSeverity.ERROR,
        metadata=metadata,
    )
    context.log.error(str(err))
    raise Failure(
        description=str(err),
        metadata={"file": MetadataValue.path(str(path))},
        allow_retries=False,  # bad data: retrying gives the same answer
    )


@multi_asset(
    name="ingest_loan_book",
    pool=settings.HEAVY_POOL,
    outs={
        "raw_loans": AssetOut(
            group_name=GROUP,
            owners=OWNERS,
            kinds={"csv", "pandas", "duckdb"},
            metadata={"dagster/column_schema": column_schema("RawLoans")},
            description="The loan-book CSV as read, an explicit dtype for every column, with each "
            "row's line in the file (source: launchpad config, else $LOAN_BOOK_CSV, else "
            "data/loan_book_sample.csv).",
        ),
        "validated_loans": AssetOut(
            group_name=GROUP,
            owners=OWNERS,
            kinds={"pandas", "pandera", "duckdb"},
            metadata={"dagster/column_schema": column_schema("LoanBook")},
            description="The rows that passed every rule of the LoanBook contract (types, ranges, "
            "categories, unique ids, outstanding <= loan amount); open loans included.",
        ),
        "quarantined_loans": AssetOut(
            group_name=GROUP,
            owners=OWNERS,
            kinds={"pandas", "duckdb"},
            metadata={"dagster/column_schema": column_schema("QuarantinedLoans")},
            description="Rows set aside: one row per rule broken, with the line, column, rule, "
            "reason, offending value and the whole record as read.",
        ),
    },
    # the two tables are made from the rows of the third: say so, and the lineage graph draws
    # raw_loans -> validated_loans and raw_loans -> quarantined_loans (Dagster otherwise assumes
    # the outputs of a multi-asset depend only on its inputs, and it has none)
    internal_asset_deps={
        "raw_loans": set(),
        "validated_loans": {AssetKey("raw_loans")},
        "quarantined_loans": {AssetKey("raw_loans")},
    },
    check_specs=[
        AssetCheckSpec(
            FILE_CHECK,
            asset="raw_loans",
            blocking=True,
            description="The file exists, is a UTF-8 comma-separated CSV within the size limit, "
            "with each required column exactly once, and enough valid rows.",
        ),
        AssetCheckSpec(
            SHARE_CHECK,
            asset="validated_loans",
            blocking=True,
            description="The share of quarantined rows is at most max_quarantine_share "
            f"(default {_DEFAULT_SHARE:.0%}); the failure cases are listed.",
        ),
    ],
)
def ingest_loan_book(
    context: AssetExecutionContext,
    config: settings.IngestConfig,
    dask: settings.DaskClusterResource,
):
    from loan_pipeline.core.ingest_verdict import read_warnings
    from loan_pipeline.schemas import LoanBook, QuarantinedLoans, RawLoans, validate

    path = settings.source_csv(config.csv_path)
    context.log.info(f"reading loan book {path}")
    raw_rows, valid_rows, quarantined, counts = yield from _read_or_refuse(
        context, config, dask, path
    )
    for warning in read_warnings(path, counts):
        context.log.warning(warning)
    source = _record_source(context, config, path, counts)
    raw = validate(raw_rows, RawLoans, source=str(path))
    validated = validate(valid_rows, LoanBook, source=str(path))
    quarantine = validate(quarantined, QuarantinedLoans, source=str(path))
    yield from _outputs(raw, validated, quarantine, counts, source, config.max_quarantine_share)


def _read_or_refuse(context, config: settings.IngestConfig, dask, path):
    """(raw, validated, quarantined, counts) of the book, read whole here or in blocks on the
    Dask cluster (the same rules, the same result); a file that cannot be used fails its check
    and the step, a read that may pass on a second try is retried."""
    from loan_pipeline.core.ingest_header import LoanBookFileError
    from loan_pipeline.core.ingest_verdict import QuarantineThresholdError, read_whole

    try:
        if dask.enabled:
            from loan_pipeline.cluster import read_loan_book_on_cluster

            return read_loan_book_on_cluster(
                settings.source_location(config.csv_path),
                block_bytes=max(1, int(dask.block_mb * 2**20)),
                max_bytes=config.max_file_bytes(on_cluster=True),
                max_quarantine_share=config.max_quarantine_share,
                min_rows=config.min_rows,
            )
        return read_whole(
            path,
            max_bytes=config.max_file_bytes(),
            max_quarantine_share=config.max_quarantine_share,
            min_rows=config.min_rows,
        )
    except QuarantineThresholdError as err:  # the file is readable; too many of its rows are not
        yield AssetCheckResult(check_name=FILE_CHECK, asset_key="raw_loans", passed=True)
        yield from _refuse(
            context, path, err, SHARE_CHECK, "validated_loans", config.max_quarantine_share
        )
    except LoanBookFileError as err:
        yield from _refuse(context, path, err, FILE_CHECK, "raw_loans")
    except OSError as err:
        # a read that can fail for passing reasons (a network share, a busy device) is retried;
        # any other error (no permission, ...) is the user's to fix, and says so at once
        if err.errno is None:  # not the file system's (a cluster that cannot be reached)
            raise
        if err.errno in TRANSIENT_ERRORS:
            context.log.warning(f"reading {path} failed ({err}); trying again")
            raise RetryRequested(max_retries=2, seconds_to_wait=2) from err
        raise explain(err, "read the loan book", path) from err


def _record_source(context, config: settings.IngestConfig, path, counts) -> dict:
    """Write what this run's snapshot was made from; returns it as the outputs' metadata.

    The history and the schedule read it from the run's own version (and, once published, from
    the published snapshot), never another run's."""
    source = {
        "source_path": MetadataValue.path(str(path)),
        "source_sha256": file_sha256(settings.source_location(config.csv_path)),
        "code_version": code_version(),
    }
    runs.write_file(
        context,
        SOURCE,
        json.dumps(
            {
                "path": str(path),
                "sha256": source["source_sha256"],
                "code_version": source["code_version"],
                "loaded_at": time.time(),
                "rows_read": counts.records,
                "quarantined_rows": counts.quarantined,
            }
        ).encode(),
    )
    return source


def _outputs(raw, validated, quarantine, counts, source: dict, threshold: float):
    """The three tables with their metadata, and both checks passed."""
    from loan_pipeline.core.ingest_verdict import recovery_status_counts, summarise_groups
    from loan_pipeline.schemas import LOAN_BOOK_COLUMNS

    failure_cases = markdown_table(summarise_groups(counts.issue_groups))
    statuses = recovery_status_counts(validated)
    yield Output(
        raw,
        output_name="raw_loans",
        metadata={
            **table_metadata(raw),
            **source,
            "extra_columns": counts.extra_columns,
            "blank_lines": counts.blank_lines,
            "malformed_rows": counts.malformed,
            "cells_normalised": MetadataValue.json(counts.normalised),
        },
    )
    yield Output(
        validated,
        output_name="validated_loans",
        metadata={
            **table_metadata(validated),
            **source,
            **column_lineage({c: [("raw_loans", c)] for c in LOAN_BOOK_COLUMNS}),
            "open_loans": int(statuses.get("(open)", 0)),
            "recovery_status_counts": MetadataValue.json(statuses),
        },
    )
    yield Output(
        quarantine,
        output_name="quarantined_loans",
        metadata={
            **table_metadata(quarantine),
            **source,
            **column_lineage(
                {
                    "Borrower_ID": [("raw_loans", "Borrower_ID")],
                    "original_row": [("raw_loans", c) for c in LOAN_BOOK_COLUMNS],
                    "value": [("raw_loans", c) for c in LOAN_BOOK_COLUMNS],
                }
            ),
            "quarantined_rows": counts.quarantined,
            "rows_read": counts.records,
            "failure_cases": failure_cases,
        },
    )
    yield AssetCheckResult(
        check_name=FILE_CHECK,
        asset_key="raw_loans",
        passed=True,
        metadata={**source, "extra_columns": counts.extra_columns},
    )
    yield AssetCheckResult(
        check_name=SHARE_CHECK,
        asset_key="validated_loans",
        passed=True,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "quarantined_rows": counts.quarantined,
            "rows": counts.records,
            "share": counts.share,
            "threshold": threshold,
            "failure_cases": failure_cases,
        },
    )
