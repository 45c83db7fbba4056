"""Every contract as plain data (``schema_catalog.json``), which the asset definitions read so
that loading the code location needs neither pandas nor pandera."""

from __future__ import annotations

import json
from pathlib import Path

import pandera.pandas as pa

from loan_pipeline.schemas.history import (
    ArrearsForecast,
    ChallengerUplift,
    CureRates,
    RollRates,
    StrategyBacktest,
)
from loan_pipeline.schemas.loan_book import LoanBook, QuarantinedLoans, RawLoans
from loan_pipeline.schemas.outputs import (
    BorrowerSegments,
    CapacityGains,
    FairnessReport,
    PopulationStability,
    RecoveryStrategies,
    RiskScores,
    ScaledFeatures,
    SegmentProfiles,
)

# every contract, in pipeline order
MODELS: list[type[pa.DataFrameModel]] = [
    RawLoans,
    LoanBook,
    QuarantinedLoans,
    ScaledFeatures,
    BorrowerSegments,
    SegmentProfiles,
    RiskScores,
    RecoveryStrategies,
    CapacityGains,
    FairnessReport,
    PopulationStability,
    RollRates,
    ArrearsForecast,
    CureRates,
    StrategyBacktest,
    ChallengerUplift,
]


CATALOG_PATH = Path(__file__).resolve().parents[1] / "schema_catalog.json"


def describe_model(model: type[pa.DataFrameModel]) -> dict:
    """A model's columns and table-wide rules as plain data (what the UI's Columns tab shows)."""
    schema = model.to_schema()
    columns = []
    for name, col in schema.columns.items():
        columns.append(
            {
                "name": str(name),
                "type": str(col.dtype),
                "description": col.description,
                "nullable": bool(col.nullable),
                "unique": bool(col.unique),
                "checks": [str(c.error or c.name) for c in (col.checks or [])],
            }
        )
    return {
        "columns": columns,
        "checks": [str(c.description or c.name) for c in schema.checks],
    }


def catalog() -> dict[str, dict]:
    """Every model described: the content of ``schema_catalog.json``."""
    return {model.__name__: describe_model(model) for model in MODELS}


def write_catalog(path: Path = CATALOG_PATH) -> Path:
    """Regenerate ``schema_catalog.json``: the asset definitions read it, so that loading the
    code location needs neither pandas nor pandera (a test keeps it equal to the models)."""
    path.write_text(json.dumps(catalog(), indent=1, sort_keys=True) + "\n")
    return path
