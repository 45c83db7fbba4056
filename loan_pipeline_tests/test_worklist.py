"""The capacity policy through Dagster: a run configured with capacities materializes a ranked
worklist with exactly those counts, its export and its gain curve; when the model does not beat
the base rate, the rules-based fallback wins over the capacities asked for."""

from __future__ import annotations

import pandas as pd
import pytest

from loan_pipeline.core.generator import write_loan_book
from loan_pipeline.domain import (
    POLICY_CAPACITY,
    POLICY_FALLBACK,
    STRATEGY_LEGAL,
    STRATEGY_REMINDERS,
    STRATEGY_SETTLEMENT,
)
from loan_pipeline_tests.conftest import PipelineRun
from loan_pipeline_tests.test_contracts import run_selected, strategy_assets

ROWS, LEGAL, SETTLEMENT = 2_000, 50, 150
CAPACITY = {
    "ops": {
        # segments are beside the point here: k fixed, the fewest resamples and references
        "cluster_model": {"config": {"k": 3, "resamples": 1, "references": 2}},
        "recovery_strategies": {
            "config": {
                "assignment": "capacity",
                "legal_capacity": LEGAL,
                "settlement_capacity": SETTLEMENT,
            }
        },
    }
}


def _book(tmp_path_factory, name: str, signal: float):
    books = tmp_path_factory.mktemp("books")
    return write_loan_book(books / f"{name}.csv", ROWS, seed=11, signal=signal, open_fraction=0.05)


@pytest.fixture(scope="module")
def capacity_run(tmp_path_factory) -> PipelineRun:
    # the strategies, the gain curve and its chart, and what they read: the other charts,
    # reports and checks have no part here
    csv = _book(tmp_path_factory, "capacity", signal=1.0)
    assets = [*strategy_assets(), "capacity_gains", "chart_capacity_gains"]
    run = run_selected(csv, tmp_path_factory.mktemp("capacity"), assets, CAPACITY["ops"])
    assert run.result.success
    return run


def test_a_capacity_run_works_the_largest_expected_losses_first(capacity_run):
    run = capacity_run
    table = run.table("recovery_strategies")
    assert set(table["policy"]) == {POLICY_CAPACITY}
    counts = table["recovery_strategy"].value_counts()
    assert (counts[STRATEGY_LEGAL], counts[STRATEGY_SETTLEMENT]) == (LEGAL, SETTLEMENT)
    assert counts[STRATEGY_REMINDERS] == ROWS - LEGAL - SETTLEMENT
    # expected loss from the run's own scores and balances
    loans = run.table("validated_loans").set_index("Borrower_ID").loc[table["Borrower_ID"]]
    scores = run.table("risk_scores").set_index("Borrower_ID").loc[table["Borrower_ID"]]
    balance = loans["Outstanding_Loan_Amount"].to_numpy()
    assert (table["Outstanding_Loan_Amount"].to_numpy() == balance).all()
    assert (
        table["expected_shortfall"].to_numpy() == scores["risk_score"].to_numpy() * balance
    ).all()
    assert (
        table["expected_write_off"].to_numpy() == scores["p_written_off"].to_numpy() * balance
    ).all()
    # the worklist: ranks 1..n, largest expected shortfall first, legal action at the top;
    # open loans (no outcome yet) are ranked with the rest
    ranked = table.dropna(subset=["worklist_rank"]).sort_values("worklist_rank")
    assert ranked["worklist_rank"].tolist() == list(range(1, LEGAL + SETTLEMENT + 1))
    assert ranked["expected_shortfall"].is_monotonic_decreasing
    assert (ranked["recovery_strategy"].iloc[:LEGAL] == STRATEGY_LEGAL).all()
    metadata = run.materialized()["recovery_strategies"]
    assert metadata["policy"].value == POLICY_CAPACITY
    assert (metadata["legal_capacity"].value, metadata["settlement_capacity"].value) == (
        LEGAL,
        SETTLEMENT,
    )
    assert metadata["ranking_key"].value == "expected_shortfall"
    lineage = metadata["dagster/column_lineage"].value.deps_by_column
    assert {d.column_name for d in lineage["worklist_rank"]} == {
        "risk_score",
        "Outstanding_Loan_Amount",
        "Borrower_ID",
    }
    assert "exp. shortfall" in metadata["loss_by_strategy"].value
    # the collections team's file carries the same expected losses and ranks
    exported = pd.read_csv(run.storage / "exports" / "recovery_strategies.csv")
    assert list(exported.columns) == list(table.columns)
    for column in ("expected_shortfall", "expected_write_off", "worklist_rank"):
        pd.testing.assert_series_equal(
            exported[column], table[column].astype("float64"), check_exact=False, rtol=1e-15
        )


def test_the_gain_curve_marks_the_configured_capacities_on_held_out_loans(capacity_run):
    run = capacity_run
    gains = run.table("capacity_gains")
    marks = gains.dropna(subset=["mark"]).set_index("mark")
    assert marks["borrowers"].to_dict() == {
        "legal action now": LEGAL,
        "legal action + settlement now": LEGAL + SETTLEMENT,
    }
    curves = gains[gains["mark"].isna()]
    assert len(curves) == 101 and curves["shortfall_ranked"].iloc[-1] == pytest.approx(1.0)
    # measured on the resolved loans only (their scores are out-of-fold)
    resolved = run.table("validated_loans")["Recovery_Status"].notna().sum()
    metadata = run.materialized()["capacity_gains"]
    assert metadata["held_out_loans"].value == resolved < ROWS
    captured = metadata["captured_at_current_capacities"].value["legal action now"]
    # the page shows the share rounded to 3 decimals (core.rounding)
    assert captured["shortfall_ranked"] == round(
        marks.at["legal action now", "shortfall_ranked"], 3
    )
    png = run.storage / "charts" / "chart_capacity_gains.png"
    assert png.read_bytes().startswith(b"\x89PNG")


def test_the_fallback_wins_over_the_capacities_asked_for(tmp_path_factory):
    # the strategies and what they read: the charts, reports and checks downstream have no part
    csv = _book(tmp_path_factory, "no_signal", signal=0.0)
    run = run_selected(
        csv, tmp_path_factory.mktemp("no_signal"), strategy_assets(), CAPACITY["ops"]
    )
    assert run.result.success
    table = run.table("recovery_strategies")
    assert set(table["policy"]) == {POLICY_FALLBACK}
    assert table["worklist_rank"].isna().all()
    assert table["expected_shortfall"].notna().all()  # the expected loss is still shown
    metadata = run.materialized()["recovery_strategies"]
    assert metadata["policy"].value == POLICY_FALLBACK and "legal_capacity" not in metadata
