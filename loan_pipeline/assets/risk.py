"""Risk: the risk model, a score per borrower, and the recovery strategy per borrower."""

import pandas as pd
from dagster import AssetExecutionContext, AssetIn, MetadataValue, asset

from loan_pipeline import settings
from loan_pipeline.assets.common import markdown_table, table_metadata
from loan_pipeline.core.export import to_csv_bytes
from loan_pipeline.core.risk import RiskModel, fit_risk_model, score_borrowers
from loan_pipeline.core.strategy import assign_strategy
from loan_pipeline.io import atomic_write_bytes
from loan_pipeline.schemas import RecoveryStrategies, RiskScores, table_schema, validate

GROUP = "risk"
OWNERS = ["team:credit-risk"]


@asset(
    group_name=GROUP,
    owners=OWNERS,
    kinds={"scikit-learn"},
    io_manager_key="model_io_manager",
    description="The risk model (method from config; default 'notebook': RandomForest(100) "
    "predicting the two highest-burden segments on a stratified 80/20 split), with held-out "
    "accuracy and ROC AUC.",
)
def risk_model(
    context: AssetExecutionContext,
    config: settings.RiskConfig,
    scaled_features: pd.DataFrame,
    borrower_segments: pd.DataFrame,
) -> RiskModel:
    model = fit_risk_model(
        scaled_features,
        borrower_segments,
        method=config.method,
        n_estimators=config.n_estimators,
        random_state=config.random_state,
        test_size=config.test_size,
        high_risk_segments=config.high_risk_segments,
    )
    context.add_output_metadata(
        {
            "method": model.method,
            "target": model.target,
            "features": model.features,
            **{k: v for k, v in model.metrics.items()},
        }
    )
    return model


@asset(
    group_name=GROUP,
    owners=OWNERS,
    kinds={"pandas", "duckdb"},
    metadata={"dagster/column_schema": table_schema(RiskScores)},
    ins={"risk_model": AssetIn(input_manager_key="model_io_manager")},
    description="The risk model's probability for every borrower, with the label it was trained "
    "on and whether the borrower was held out.",
)
def risk_scores(
    context: AssetExecutionContext, scaled_features: pd.DataFrame, risk_model: RiskModel
) -> pd.DataFrame:
    scores = validate(
        score_borrowers(risk_model, scaled_features), RiskScores, source="risk_scores"
    )
    context.add_output_metadata(
        {
            **table_metadata(scores),
            "mean_score": float(scores["risk_score"].mean()),
            "held_out": int(scores["split"].eq("test").sum()),
        }
    )
    return scores


@asset(
    group_name=GROUP,
    owners=OWNERS,
    kinds={"pandas", "duckdb", "csv"},
    metadata={"dagster/column_schema": table_schema(RecoveryStrategies)},
    description="The recovery strategy per borrower from the risk-score bands (> 0.75 legal "
    "action, 0.50-0.75 settlement offers, else automated reminders); also exported to "
    "storage/exports/recovery_strategies.csv for the collections team.",
)
def recovery_strategies(
    context: AssetExecutionContext,
    config: settings.StrategyConfig,
    validated_loans: pd.DataFrame,
    borrower_segments: pd.DataFrame,
    risk_scores: pd.DataFrame,
) -> pd.DataFrame:
    table = (
        validated_loans[["Borrower_ID", "Loan_ID"]]
        .merge(borrower_segments, on="Borrower_ID", how="inner", validate="one_to_one")
        .merge(
            risk_scores[["Borrower_ID", "risk_score"]],
            on="Borrower_ID",
            how="inner",
            validate="one_to_one",
        )
    )
    table["recovery_strategy"] = assign_strategy(
        table["risk_score"], legal_above=config.legal_above, settlement_from=config.settlement_from
    )
    table = validate(table, RecoveryStrategies, source="recovery_strategies")
    export = settings.exports_dir() / "recovery_strategies.csv"
    atomic_write_bytes(export, to_csv_bytes(table))
    counts = (
        table.groupby(["segment_name", "recovery_strategy"])
        .size()
        .unstack(fill_value=0)
        .reset_index()
    )
    context.add_output_metadata(
        {
            **table_metadata(table),
            "export_path": MetadataValue.path(str(export)),
            "strategy_counts": MetadataValue.json(
                table["recovery_strategy"].value_counts().to_dict()
            ),
            "strategy_by_segment": markdown_table(counts),
        }
    )
    return table
