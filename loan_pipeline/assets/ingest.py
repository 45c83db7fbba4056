"""Ingest: the loan-book CSV as read, and the frame that passed the loan-book contract."""

import pandas as pd
from dagster import AssetExecutionContext, MetadataValue, asset

from loan_pipeline import settings
from loan_pipeline.assets.common import latest_metadata_value, table_metadata
from loan_pipeline.core.ingest import read_loan_book, to_loan_book
from loan_pipeline.schemas import LOAN_BOOK_COLUMNS, LoanBook, RawLoans, table_schema, validate

GROUP = "ingest"
OWNERS = ["team:data-engineering"]


@asset(
    group_name=GROUP,
    owners=OWNERS,
    kinds={"csv", "pandas", "duckdb"},
    metadata={"dagster/column_schema": table_schema(RawLoans)},
    description="The loan-book CSV as read, with an explicit dtype for every column "
    "(source: launchpad config, else $LOAN_BOOK_CSV, else data/loan_book_sample.csv).",
)
def raw_loans(context: AssetExecutionContext, config: settings.SourceConfig) -> pd.DataFrame:
    path = settings.source_csv(config.csv_path)
    context.log.info(f"reading loan book {path}")
    df = validate(read_loan_book(path), RawLoans, source=str(path))
    extra = [c for c in df.columns if c not in LOAN_BOOK_COLUMNS]
    if extra:
        context.log.warning(f"{path}: extra column(s) kept but not used as features: {extra}")
    context.add_output_metadata(
        {**table_metadata(df), "source_path": MetadataValue.path(str(path)), "extra_columns": extra}
    )
    return df


@asset(
    group_name=GROUP,
    owners=OWNERS,
    kinds={"pandas", "pandera", "duckdb"},
    metadata={"dagster/column_schema": table_schema(LoanBook)},
    description="The typed loan book that passed the LoanBook pandera schema "
    "(ranges, categories, unique ids, outstanding <= loan amount).",
)
def validated_loans(context: AssetExecutionContext, raw_loans: pd.DataFrame) -> pd.DataFrame:
    source = latest_metadata_value(context, "raw_loans", "source_path", default="raw_loans")
    df = validate(to_loan_book(raw_loans), LoanBook, source=str(source))
    context.add_output_metadata(
        {
            **table_metadata(df),
            "open_loans": int(df["Recovery_Status"].isna().sum()),
            "recovery_status_counts": MetadataValue.json(
                df["Recovery_Status"].fillna("(open)").value_counts().to_dict()
            ),
        }
    )
    return df
