"""Risk: the risk model, a score per borrower, and the recovery strategy per borrower."""

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetIn,
    MetadataValue,
    Output,
    asset,
)

from loan_pipeline import domain, settings
from loan_pipeline.assets.common import (
    column_lineage,
    column_schema,
    columns_of,
    markdown_table,
    partitioned_input,
    table_metadata,
)
from loan_pipeline.core.rounding import transposed_markdown
from loan_pipeline.domain import POLICY_CAPACITY, POLICY_FALLBACK, POLICY_MODEL
from loan_pipeline.io import runs
from loan_pipeline.io.tables import stored_table

# The loan-book columns the risk model and its scores read: its inputs and the outcome.
# On a cluster they stay in partitions: the model is fitted on samples drawn from them and
# evaluated by sums over them.
RISK_LOANS = columns_of(
    "Borrower_ID",
    domain.RISK_NUMERIC,
    domain.RISK_CATEGORICAL,
    "Recovery_Status",
    partitioned=True,
)

GROUP = "risk"
# The decisions made from the scores, a group of their own: in the lineage graph the model and
# its scores read apart from what the collections team acts on.
STRATEGY_GROUP = "strategy"
OWNERS = ["team:credit-risk"]
GATE_CHECK = "model_beats_base_rate"
SIGN_CHECK = "coefficient_signs_agree_with_data"
COVERAGE_CHECK = "every_borrower_has_a_strategy"
POLICY_CHECK = "policy_is_as_expected"
REASON_CHECK = "every_strategy_has_a_reason"
EXPORT = "exports/recovery_strategies.csv"


def fallback_thresholds(config: settings.StrategyConfig | None = None) -> dict[str, int]:
    """The rules-based fallback's four limits (``StrategyConfig``'s, its defaults if none)."""
    config = config or settings.StrategyConfig()
    return {
        "legal_days": config.fallback_legal_days,
        "legal_missed": config.fallback_legal_missed,
        "settlement_days": config.fallback_settlement_days,
        "settlement_missed": config.fallback_settlement_missed,
    }


@asset(
    pool=settings.HEAVY_POOL,
    group_name=GROUP,
    owners=OWNERS,
    kinds={"scikit-learn"},
    io_manager_key="model_io_manager",
    ins={"validated_loans": RISK_LOANS},
    # read only by the notebook method, which loads them itself: the recommended model does not
    # pay for reading a features table and a segments table it does not use
    deps=["scaled_features", "borrower_segments"],
    check_specs=[
        AssetCheckSpec(
            GATE_CHECK,
            asset="risk_model",
            description="The model's out-of-fold Brier score beats the base rate's by min_skill. "
            "When it does not, recovery_strategies does not use the scores: it falls back to the "
            "rules-based policy on arrears.",
        ),
        AssetCheckSpec(
            SIGN_CHECK,
            asset="risk_model",
            description="Every coefficient of the model agrees in sign with its input's own "
            "(univariate) relation to the outcome, so no reason code tells a borrower the "
            "opposite of what the data show. When one does not, recovery_strategies falls back "
            "to the rules-based policy on arrears.",
        ),
    ],
    description="The risk model. Recommended method: logistic regressions for 'not "
    "Fully Recovered' and 'Written Off', learned from resolved loans, evaluated out-of-fold "
    "against a base-rate and a Days_Past_Due baseline; outcome-side columns are never inputs. "
    "Notebook method: RandomForest(100) predicting the two highest-burden segments.",
)
def risk_model(
    context: AssetExecutionContext,
    config: settings.RiskConfig,
    analysis: settings.AnalysisMethod,
    validated_loans,
):
    from loan_pipeline.core.risk_methods import fit_risk_model
    from loan_pipeline.core.validation import arrears_evidence

    notebook = analysis.is_notebook
    model = fit_risk_model(
        validated_loans,
        stored_table(context, "scaled_features") if notebook else None,
        stored_table(context, "borrower_segments") if notebook else None,
        method=analysis.method,
        folds=config.folds,
        max_train_rows=config.max_train_rows,
        min_skill=config.min_skill,
        random_state=config.random_state,
        sign_constraints=config.sign_constraints,
        n_estimators=config.n_estimators,
        test_size=config.test_size,
        high_risk_segments=config.high_risk_segments,
    )
    if model.primary is not None:
        model.fallback_evidence = arrears_evidence(validated_loans, **fallback_thresholds())
    yield Output(model, metadata=_model_metadata(model))
    yield _gate_check(model)
    yield _sign_check(model, sign_constraints=config.sign_constraints)


# The figures a reader of the risk model's page looks for first (those the method has), each
# its own entry; every figure, of both targets, is in the one table "metrics".
HEADLINE = (
    "resolved_loans",
    "positive_rate",
    "model_roc_auc",
    "roc_auc_ci_low",
    "roc_auc_ci_high",
    "days_past_due_only_roc_auc",
    "model_brier",
    "base_rate_brier",
    "brier_skill_vs_base_rate",
    "gini",
    "ks",
    "calibration_slope",
    "test_roc_auc",
    "test_accuracy",
    "n_train",
    "n_test",
)


def _model_metadata(model) -> dict:
    """The risk model's materialization metadata: its headline figures (rounded) and every
    figure in one table, and for the recommended method its model card and evidence tables."""
    from loan_pipeline.core.model_card import metrics_table, model_card_markdown
    from loan_pipeline.core.rounding import rounded_all, text_table

    figures = metrics_table(model.metrics)
    metadata = {
        "method": model.method,
        "target": model.target,
        "features": model.features,
        **rounded_all({k: model.metrics[k] for k in HEADLINE if k in model.metrics}),
        "metrics": MetadataValue.md(text_table(figures)),
    }
    if model.primary is not None:
        metadata |= {
            "model_card": MetadataValue.md(model_card_markdown(model)),
            "excluded_columns": MetadataValue.json(model.excluded),
            "calibration": markdown_table(model.primary.calibration),
            "gains_by_decile": markdown_table(model.primary.gains),
            "coefficient_signs": markdown_table(model.primary.signs),
            "fallback_evidence": markdown_table(model.fallback_evidence),
        }
    return metadata


def _gate_check(model) -> AssetCheckResult:
    from loan_pipeline.core.rounding import rounded_all

    skill = model.metrics.get("brier_skill_vs_base_rate")
    return AssetCheckResult(
        check_name=GATE_CHECK,
        passed=model.beats_baseline,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            # the skill and its bar to 4 decimals: at 3 a skill just under a 0.01 bar reads 0.010
            "brier_skill_vs_base_rate": round(float(skill), 4) if skill is not None else None,
            "min_skill": round(float(model.min_skill), 4),
            **rounded_all(
                {
                    "model_brier": float(model.metrics.get("model_brier", float("nan"))),
                    "base_rate_brier": float(model.metrics.get("base_rate_brier", float("nan"))),
                }
            ),
        },
        description=None
        if model.beats_baseline
        else "The model does not beat the base rate; recovery_strategies uses the rules-based "
        "fallback policy instead of the scores.",
    )


def _sign_check(model, *, sign_constraints: bool) -> AssetCheckResult:
    has_signs = model.primary is not None and model.primary.signs is not None
    contradicting = model.contradicting_signs()
    return AssetCheckResult(
        check_name=SIGN_CHECK,
        passed=model.signs_agree,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "contradicting": MetadataValue.json(contradicting),
            "sign_constraints": sign_constraints,
        },
        description="the notebook's forest has no coefficients"
        if not has_signs
        else None
        if model.signs_agree
        else "Coefficients contradict their inputs' own relation to the outcome: "
        + ", ".join(contradicting)
        + "; recovery_strategies uses the rules-based fallback policy.",
    )


@asset(
    pool=settings.HEAVY_POOL,
    group_name=GROUP,
    owners=OWNERS,
    kinds={"pandas", "duckdb"},
    metadata={"dagster/column_schema": column_schema("RiskScores")},
    ins={
        "risk_model": AssetIn(input_manager_key="model_io_manager"),
        "validated_loans": RISK_LOANS,
    },
    deps=["scaled_features"],  # the notebook method's inputs; it loads them itself
    description="A risk score for every borrower: out-of-fold for resolved loans (from a model "
    "that never saw the borrower), from the model fitted on all resolved loans for open ones; "
    "with the observed outcome and the top three reasons pushing the score up.",
)
def risk_scores(
    context: AssetExecutionContext,
    validated_loans,
    risk_model,
):
    from loan_pipeline.core.chart_summaries import sample_positions
    from loan_pipeline.core.partitions import collect, is_dask, per_partition
    from loan_pipeline.core.reason_codes import reasons_on_sample
    from loan_pipeline.core.rounding import rounded_all
    from loan_pipeline.core.scoring import score_borrowers, score_summary, scores_of
    from loan_pipeline.schemas import RiskScores, validate

    notebook = risk_model.method == "notebook"
    if notebook:  # the notebook's method scores its features table, in this process
        features = stored_table(context, "scaled_features")
        scores = score_borrowers(risk_model, collect(validated_loans), features)
    else:  # every borrower's score from its own row: per partition on a cluster
        scores = per_partition(scores_of, validated_loans, risk_model)
    scores = validate(scores, RiskScores, source="risk_scores")
    if is_dask(scores):  # computed once and kept on the workers, for the summaries and the write
        scores = scores.persist()
    mean_score, sources, borrowers = score_summary(scores)
    reasons_checked, top_reasons = {}, {}
    if not notebook:
        # the reasons read against the book's own relations, on the charts' fixed sample
        reasons_checked, top_reasons = reasons_on_sample(
            validated_loans, scores, sample_positions(borrowers)
        )
    context.add_output_metadata(
        {
            **table_metadata(scores),
            **column_lineage(_scores_lineage(risk_model)),
            **rounded_all({"mean_score": mean_score, **reasons_checked}),
            "score_sources": MetadataValue.json(sources),
            "top_reasons": MetadataValue.json(top_reasons),
        }
    )
    return scores


def _scores_lineage(model) -> dict[str, list[tuple[str, str]]]:
    """Which source columns each column of risk_scores is computed from."""
    inputs = (
        [("scaled_features", c) for c in model.features]
        if model.method == "notebook"
        else [("validated_loans", c) for c in domain.RISK_NUMERIC + domain.RISK_CATEGORICAL]
    )
    lineage = {
        c: inputs for c in ("risk_score", "p_written_off", "reason_1", "reason_2", "reason_3")
    }
    return lineage | {
        "Borrower_ID": [("validated_loans", "Borrower_ID")],
        "not_fully_recovered": [("validated_loans", "Recovery_Status")],
    }


@asset(
    pool=settings.HEAVY_POOL,
    group_name=STRATEGY_GROUP,
    owners=OWNERS,
    kinds={"pandas", "duckdb", "csv"},
    metadata={"dagster/column_schema": column_schema("RecoveryStrategies")},
    check_specs=[
        AssetCheckSpec(
            COVERAGE_CHECK,
            asset="recovery_strategies",
            description="Every borrower of validated_loans has one row, with one of the three "
            "strategies: nobody is left off the collections team's list.",
        ),
        AssetCheckSpec(
            POLICY_CHECK,
            asset="recovery_strategies",
            description="Every row's policy is the one the rule gives: the rules-based "
            "fallback when the risk model fails a gate (model_beats_base_rate, "
            "coefficient_signs_agree_with_data), else the configured assignment (score bands, "
            "or the capacity ranking).",
        ),
        AssetCheckSpec(
            REASON_CHECK,
            asset="recovery_strategies",
            description="Every strategy comes with at least one reason (reason_1): the input "
            "that moved the borrower's score most, or the arrears rule that fired. The "
            "notebook method's forest gives none. WARN only.",
        ),
    ],
    ins={
        "risk_model": AssetIn(input_manager_key="model_io_manager"),
        "validated_loans": columns_of(
            "Borrower_ID",
            "Loan_ID",
            "Outstanding_Loan_Amount",
            "Days_Past_Due",
            "Num_Missed_Payments",
            partitioned=True,
        ),
        "borrower_segments": partitioned_input(),
        "risk_scores": columns_of(
            "Borrower_ID",
            "risk_score",
            "p_written_off",
            "reason_1",
            "reason_2",
            "reason_3",
            partitioned=True,
        ),
    },
    description="The recovery strategy per borrower, with its expected loss (P(not fully "
    "recovered) x outstanding balance, and P(written off) x balance). By default the score "
    "bands (> 0.75 legal action, 0.50-0.75 settlement offers, else automated reminders); with "
    "assignment 'capacity', a worklist ranked by expected loss cut at the team's capacities; the "
    "rules-based policy on arrears whenever the model fails its gate (the base rate, the "
    "coefficient signs). Exported to "
    "storage/exports/recovery_strategies.csv for the collections team.",
)
def recovery_strategies(
    context: AssetExecutionContext,
    config: settings.StrategyConfig,
    validated_loans,
    borrower_segments,
    risk_scores,
    risk_model,
):
    from loan_pipeline.core.experiment import apply_experiment
    from loan_pipeline.core.export import write_export
    from loan_pipeline.core.partitions import is_dask, per_partition
    from loan_pipeline.core.strategy import (
        choose_policy,
        fallback_warning,
        recovery_table,
        strategy_summary,
    )
    from loan_pipeline.schemas import RecoveryStrategies, validate

    capacity = config.assignment == "capacity"
    policy = choose_policy(risk_model, capacity=capacity)
    if policy == POLICY_FALLBACK:
        context.log.warning(fallback_warning(risk_model, capacity=capacity))
    table, capacities = recovery_table(
        validated_loans,
        borrower_segments,
        risk_scores,
        policy=policy,
        legal_above=config.legal_above,
        settlement_from=config.settlement_from,
        **fallback_thresholds(config),
        ranking_key=config.ranking_key,
        legal_capacity=config.legal_capacity,
        settlement_capacity=config.settlement_capacity,
    )
    experiment = config.experiment
    # after the policy (and the capacity ranking): the challenger arm re-assigns strategies the
    # champion chose; per row, so per partition alike
    table = per_partition(
        apply_experiment,
        table,
        experiment=experiment.name,
        share=experiment.share,
        challenger=experiment.challenger_strategy,
        eligible=list(experiment.eligible),
    )
    table = validate(table, RecoveryStrategies, source="recovery_strategies")
    if is_dask(table):  # computed once, kept on the workers for the export and the write
        table = table.persist()
    export = runs.write_stream(context, EXPORT, lambda sink: write_export(table, sink))
    by_strategy, by_segment, losses = strategy_summary(table)
    yield Output(
        table,
        metadata={
            **table_metadata(table),
            **column_lineage(strategy_lineage(policy, config.ranking_key)),
            "policy": policy,
            **capacities,
            "policy_note": MetadataValue.md(_policy_note(policy, risk_model, capacity=capacity)),
            "export_path": MetadataValue.path(str(export)),
            **_fitting_tables(by_strategy, by_segment, losses),
            **_experiment_metadata(table, experiment),
        },
    )
    yield from _strategy_checks(
        table, validated_loans, risk_model, assignment=config.assignment, experiment=experiment
    )


def _challenger(experiment: settings.ExperimentConfig) -> str | None:
    """The full name of the experiment's challenger strategy, None when no experiment runs."""
    from loan_pipeline.core.experiment import full_strategy

    return full_strategy(experiment.challenger_strategy) if experiment.share > 0 else None


def _experiment_metadata(table, experiment: settings.ExperimentConfig) -> dict:
    """The experiment on the asset page: its name, share, strategies and the arms' sizes."""
    from loan_pipeline.core.experiment import experiment_audit
    from loan_pipeline.core.partitions import sum_counts, summarise

    if experiment.share == 0:
        return {"experiment": "none (share 0)"}
    counts = summarise(experiment_audit, sum_counts, table, _challenger(experiment))
    return {
        "experiment": experiment.name,
        "experiment_share": float(experiment.share),
        "challenger_strategy": experiment.challenger_strategy,
        "eligible_strategies": MetadataValue.json(list(experiment.eligible)),
        "experiment_arms": MetadataValue.json(
            {arm: int(counts[f"arm:{arm}"]) for arm in domain.ARMS}
        ),
    }


def _fitting_tables(by_strategy: dict, by_segment, losses) -> dict:
    """The strategy counts and tables in short words, in the strategies' order (legal action
    first), so they fit the metadata column of an asset page (a short entry shows in place
    there, in a column a third of the page wide): borrowers per strategy, per segment and
    strategy, and the money per strategy, a column per strategy."""
    strategies = [s for s in domain.STRATEGIES if s in by_segment.columns]
    # sums over a book run to millions: whole currency units (cents there are noise); a sum
    # there is none of (no write-off score in notebook mode) stays blank
    money = losses.set_index("recovery_strategy").reindex(strategies).round(0)
    money = (
        money.astype(object).where(money.notna(), None).map(lambda v: None if v is None else int(v))
    )
    money.index = money.index.map(domain.STRATEGY_SHORT)
    money = money.rename(
        columns={
            "Outstanding_Loan_Amount": "balance",
            "expected_shortfall": "exp. shortfall",
            "expected_write_off": "exp. write-off",
        }
    )
    return {
        "strategy_counts": MetadataValue.json(
            {domain.STRATEGY_SHORT[s]: by_strategy[s] for s in strategies if s in by_strategy}
        ),
        "strategy_by_segment": markdown_table(
            by_segment[["segment_name", *strategies]],
            headers={"segment_name": "segment", **domain.STRATEGY_SHORT},
        ),
        "loss_by_strategy": MetadataValue.md(
            transposed_markdown(money.reset_index(), "recovery_strategy", "sum")
        ),
    }


def _strategy_checks(table, validated_loans, risk_model, *, assignment: str, experiment):
    """The three checks on the strategy table (pandas or Dask; counted a partition at a
    time)."""
    from loan_pipeline.core.experiment import experiment_audit
    from loan_pipeline.core.partitions import partition_lengths, sum_counts, summarise
    from loan_pipeline.core.strategy import audit_counts, expected_policy

    counts = summarise(audit_counts, sum_counts, table)
    arms = summarise(experiment_audit, sum_counts, table, _challenger(experiment))
    borrowers = sum(partition_lengths(validated_loans))
    rows, with_strategy = int(counts["rows"]), int(counts["with_strategy"])
    covered = rows == with_strategy == borrowers
    yield AssetCheckResult(
        check_name=COVERAGE_CHECK,
        passed=covered,
        severity=AssetCheckSeverity.ERROR,
        metadata={"borrowers": borrowers, "rows": rows, "rows_with_a_strategy": with_strategy},
        description=None
        if covered
        else f"{borrowers:,} borrowers, {rows:,} rows, {with_strategy:,} with a strategy",
    )
    expected, why = expected_policy(risk_model, assignment=assignment)
    found = {
        name.removeprefix("policy:"): int(n)
        for name, n in counts.items()
        if name.startswith("policy:")
    }
    # the policy column is the champion's rule on every row; the strategy is the champion's
    # except in an experiment's challenger arm, where it is the challenger strategy
    overridden = {
        "challenger_not_given_challenger": int(arms["challenger_not_given_challenger"]),
        "others_not_given_champion": int(arms["others_not_given_champion"]),
    }
    arms_ok = not any(overridden.values())
    as_expected = found == {expected: rows} and arms_ok
    yield AssetCheckResult(
        check_name=POLICY_CHECK,
        passed=as_expected,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "expected_policy": expected,
            "why": why,
            "assignment": assignment,
            "rows_per_policy": MetadataValue.json(found),
            "experiment_arms": MetadataValue.json(
                {arm: int(arms[f"arm:{arm}"]) for arm in domain.ARMS}
            ),
            **overridden,
        },
        description=f"{expected}: {why}"
        if as_expected
        else f"expected {expected} ({why}); found {found}"
        + ("" if arms_ok else f"; strategies not as the arms give: {overridden}"),
    )
    without = int(counts["without_reason"])
    yield AssetCheckResult(
        check_name=REASON_CHECK,
        passed=without == 0,
        severity=AssetCheckSeverity.WARN,
        metadata={"rows_without_a_reason": without, "rows": rows},
        description=None
        if without == 0
        else f"{without:,} of {rows:,} strategies have no reason"
        + (": the notebook method's forest gives none" if risk_model.method == "notebook" else ""),
    )


POLICY_NOTES = {
    POLICY_MODEL: "**Strategies come from the risk-score bands.**",
    POLICY_CAPACITY: "**Strategies come from a worklist ranked by expected loss**, cut at the "
    "configured capacities (`worklist_rank` 1 is the first to work; ties go to the smaller "
    "Borrower_ID).",
}


def _policy_note(policy: str, risk_model, *, capacity: bool) -> str:
    """The asset page's note on the policy; for the fallback, the gate that failed (the same
    words as the run's warning)."""
    from loan_pipeline.core.strategy import fallback_warning

    if policy == POLICY_FALLBACK:
        reason = fallback_warning(risk_model, capacity=capacity)
        return f"**{reason[0].upper()}{reason[1:]}** (Days_Past_Due and Num_Missed_Payments)."
    return POLICY_NOTES[policy]


def strategy_lineage(policy: str, ranking_key: str) -> dict[str, list[tuple[str, str]]]:
    """Which source columns each column of recovery_strategies is computed from, under
    ``policy``."""
    balance = [("validated_loans", "Outstanding_Loan_Amount")]
    arrears = [("validated_loans", "Days_Past_Due"), ("validated_loans", "Num_Missed_Payments")]
    loss = {
        "expected_shortfall": [("risk_scores", "risk_score"), *balance],
        "expected_write_off": [("risk_scores", "p_written_off"), *balance],
        "risk_score": [("risk_scores", "risk_score")],
    }
    ranked = loss[ranking_key] + [("validated_loans", "Borrower_ID")]  # ties: by the id
    chosen = {POLICY_MODEL: loss["risk_score"], POLICY_CAPACITY: ranked, POLICY_FALLBACK: arrears}
    reasons = arrears if policy == POLICY_FALLBACK else None
    return (
        {
            "Borrower_ID": [("validated_loans", "Borrower_ID")],
            "Loan_ID": [("validated_loans", "Loan_ID")],
            "segment_id": [("borrower_segments", "segment_id")],
            "segment_name": [("borrower_segments", "segment_name")],
            "risk_score": loss["risk_score"],
            "p_written_off": [("risk_scores", "p_written_off")],
            "Outstanding_Loan_Amount": balance,
            "expected_shortfall": loss["expected_shortfall"],
            "expected_write_off": loss["expected_write_off"],
            "recovery_strategy": chosen[policy],
            "champion_strategy": chosen[policy],
            "experiment_arm": [("validated_loans", "Borrower_ID")],
        }
        | ({"worklist_rank": ranked} if policy == POLICY_CAPACITY else {})
        | {f"reason_{i}": reasons or [("risk_scores", f"reason_{i}")] for i in (1, 2, 3)}
    )


@asset(
    pool=settings.HEAVY_POOL,
    group_name=STRATEGY_GROUP,
    owners=OWNERS,
    kinds={"pandas", "duckdb"},
    metadata={"dagster/column_schema": column_schema("CapacityGains")},
    ins={
        "recovery_strategies": columns_of(domain.GAIN_STRATEGY_COLUMNS, partitioned=True),
        "risk_scores": columns_of("Borrower_ID", "score_source", partitioned=True),
        "validated_loans": columns_of("Borrower_ID", "Recovery_Status", partitioned=True),
    },
    description="How large a worklist should be, and in what order: for every size from "
    "nobody to the whole book, the share of the bad (not fully recovered) outstanding balance "
    "it would have caught ranked by expected shortfall against ranked by the score alone (the "
    "bands' order), and of the written-off balance ranked by expected write-off against "
    "P(written off); the current policy's legal-action and settlement counts marked. Measured "
    "on resolved loans with out-of-fold scores: a held-out comparison. Drawn as "
    "chart_capacity_gains.",
)
def capacity_gains(
    context: AssetExecutionContext, recovery_strategies, risk_scores, validated_loans
):
    from loan_pipeline.core.gains import CURVES, measure_gains
    from loan_pipeline.schemas import CapacityGains, validate

    table, counts = measure_gains(recovery_strategies, risk_scores, validated_loans)
    table = validate(table, CapacityGains, source="capacity_gains")
    outcome = [
        ("validated_loans", "Recovery_Status"),
        ("recovery_strategies", "Outstanding_Loan_Amount"),
    ]
    lineage = {
        curve: [("recovery_strategies", key), ("risk_scores", "score_source"), *outcome]
        for curve, (key, _) in CURVES.items()
    }
    lineage["mark"] = [("recovery_strategies", "recovery_strategy")]
    marked = table[table["mark"].notna()].set_index("mark")
    context.add_output_metadata(
        {
            **table_metadata(table),
            **column_lineage(lineage),
            "held_out_loans": counts["held_out"],
            "borrowers": counts["borrowers"],
            # what a manager compares: at today's worklist sizes, ranked by expected loss or not
            "captured_at_current_capacities": MetadataValue.json(
                {
                    mark: {curve: _share(marked.at[mark, curve]) for curve in CURVES}
                    for mark in marked.index
                }
            ),
            "at_current_capacities": markdown_table(marked.reset_index()),
        }
    )
    return table


def _share(value: float) -> float | None:
    """A share for JSON metadata: rounded, None where there is none (no write-off score in the
    notebook method)."""
    from loan_pipeline.core.rounding import rounded

    return rounded("share", float(value)) if value == value else None
