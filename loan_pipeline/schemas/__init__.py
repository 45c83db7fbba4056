"""Every table's contract, one pandera ``DataFrameModel`` per stage, and the helpers that apply them.

Ranges and category sets come from the reference data set (``shared/data/README.md``) with
margins wide enough for a real lender's book: the rules reject what is impossible (a negative
income, an unknown loan type), not what is merely unusual (an income of 300,000).

One schema module to import (``from loan_pipeline.schemas import LoanBook, validate``), kept in
rooms by what the tables are: ``loan_book`` (the input and its row rules), ``outputs`` (what a run
makes from the book), ``history`` (what compares two snapshots), ``validation`` (applying a
contract) and ``catalog`` (every contract as plain data: ``python -m loan_pipeline.schemas``
regenerates ``schema_catalog.json``).
"""

from loan_pipeline.columns import FLOAT_COLUMNS, INT_COLUMNS, LOAN_BOOK_COLUMNS, TEXT_COLUMNS
from loan_pipeline.schemas.catalog import (
    CATALOG_PATH,
    MODELS,
    catalog,
    describe_model,
    write_catalog,
)
from loan_pipeline.schemas.history import (
    ArrearsForecast,
    ChallengerUplift,
    CureRates,
    RollRates,
    StrategyBacktest,
)
from loan_pipeline.schemas.loan_book import (
    CATEGORIES,
    COLLECTION_METHODS,
    EMPLOYMENT_TYPES,
    GENDERS,
    LOAN_TYPES,
    MONEY_COLUMNS,
    OUTCOME_SIDE_COLUMNS,
    PAYMENT_HISTORIES,
    PERCENT_COLUMNS,
    RECOVERY_STATUSES,
    TEXT_DTYPE,
    YES_NO,
    LoanBook,
    QuarantinedLoans,
    RawLoans,
    row_rules_schema,
    text,
)
from loan_pipeline.schemas.outputs import (
    FEATURE_COLUMNS_REGEX,
    P_WRITTEN_OFF,
    PSI_STATUS_RULE,
    RISK_SCORE,
    UPPER_BOUND,
    BorrowerSegments,
    CapacityGains,
    FairnessReport,
    PopulationStability,
    RecoveryStrategies,
    RiskScores,
    ScaledFeatures,
    SegmentProfiles,
    probability,
)
from loan_pipeline.schemas.validation import (
    TABLE_RULE_COLUMNS,
    SchemaViolation,
    describe_failures,
    validate,
)

__all__ = [
    "ArrearsForecast",
    "BorrowerSegments",
    "CATALOG_PATH",
    "CATEGORIES",
    "COLLECTION_METHODS",
    "CapacityGains",
    "ChallengerUplift",
    "CureRates",
    "EMPLOYMENT_TYPES",
    "FEATURE_COLUMNS_REGEX",
    "FLOAT_COLUMNS",
    "FairnessReport",
    "GENDERS",
    "INT_COLUMNS",
    "LOAN_BOOK_COLUMNS",
    "LOAN_TYPES",
    "LoanBook",
    "MODELS",
    "MONEY_COLUMNS",
    "OUTCOME_SIDE_COLUMNS",
    "PAYMENT_HISTORIES",
    "PERCENT_COLUMNS",
    "PSI_STATUS_RULE",
    "P_WRITTEN_OFF",
    "PopulationStability",
    "QuarantinedLoans",
    "RECOVERY_STATUSES",
    "RISK_SCORE",
    "RawLoans",
    "RecoveryStrategies",
    "RiskScores",
    "RollRates",
    "ScaledFeatures",
    "SchemaViolation",
    "SegmentProfiles",
    "StrategyBacktest",
    "TABLE_RULE_COLUMNS",
    "TEXT_COLUMNS",
    "TEXT_DTYPE",
    "UPPER_BOUND",
    "YES_NO",
    "catalog",
    "describe_failures",
    "describe_model",
    "probability",
    "row_rules_schema",
    "text",
    "validate",
    "write_catalog",
]
