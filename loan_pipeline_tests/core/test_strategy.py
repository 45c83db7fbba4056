from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from loan_pipeline.assets.risk import fallback_thresholds
from loan_pipeline.core.features import scale_features
from loan_pipeline.core.gains import (
    CURVES,
    gain_rows,
    gain_summary,
    gain_table,
    measure_gains,
    merge_gain_summaries,
)
from loan_pipeline.core.generator import generate_loan_book
from loan_pipeline.core.risk_methods import fit_recommended_model
from loan_pipeline.core.scoring import score_borrowers
from loan_pipeline.core.strategy import (
    assign_strategy,
    capacity_strategies,
    choose_policy,
    expected_loss,
    fallback_warning,
    merge_candidates,
    strategy_table,
    worklist_candidates,
)
from loan_pipeline.domain import (
    POLICY_CAPACITY,
    POLICY_FALLBACK,
    POLICY_MODEL,
    STRATEGIES,
    STRATEGY_LEGAL,
    STRATEGY_REMINDERS,
    STRATEGY_SETTLEMENT,
)
from loan_pipeline.settings import RiskConfig, StrategyConfig
from loan_pipeline_tests.defaults import config_kwargs

# strategy_table's settings: StrategyConfig's defaults (the fallback's under their core names)
STRATEGY = config_kwargs(strategy_table, StrategyConfig) | fallback_thresholds()


def test_notebook_bands_at_their_edges():
    scores = pd.Series([0.0, 0.4999, 0.5, 0.6, 0.75, 0.7501, 1.0])
    assert assign_strategy(scores, **config_kwargs(assign_strategy, StrategyConfig)).tolist() == [
        STRATEGY_REMINDERS,
        STRATEGY_REMINDERS,
        STRATEGY_SETTLEMENT,
        STRATEGY_SETTLEMENT,
        STRATEGY_SETTLEMENT,
        STRATEGY_LEGAL,
        STRATEGY_LEGAL,
    ]


def test_a_model_that_fails_its_gate_hands_the_strategies_to_the_fallback():
    from loan_pipeline.core.risk import RiskModel

    def model(beats_baseline: bool) -> RiskModel:
        return RiskModel("recommended", None, [], "", beats_baseline=beats_baseline)

    assert choose_policy(model(True), capacity=False) == POLICY_MODEL
    assert choose_policy(model(True), capacity=True) == POLICY_CAPACITY
    assert choose_policy(model(False), capacity=True) == POLICY_FALLBACK
    assert fallback_warning(model(False), capacity=True) == (
        "the risk model does not beat the base rate: strategies come from the rules-based "
        "fallback policy on arrears (not from the capacity ranking asked for)"
    )


def test_thresholds_are_configurable_and_checked():
    assert assign_strategy(pd.Series([0.3]), legal_above=0.25, settlement_from=0.1).tolist() == [
        STRATEGY_LEGAL
    ]
    with pytest.raises(ValueError, match="must not exceed"):
        assign_strategy(pd.Series([0.3]), legal_above=0.4, settlement_from=0.6)


def test_scaling_matches_population_std_and_survives_constant_columns():
    df = pd.DataFrame({"Borrower_ID": ["a", "b", "c"], "x": [1.0, 2.0, 3.0], "c": [5.0, 5.0, 5.0]})
    scaled, scaling = scale_features(df, ["x", "c"])
    assert scaled["x"].round(6).tolist() == [-1.224745, 0.0, 1.224745]
    assert scaled["c"].tolist() == [0.0, 0.0, 0.0]
    assert scaling.scales == [pytest.approx(0.816496580927726), 1.0]
    with pytest.raises(ValueError, match="not numeric columns of the loan book: nope"):
        scale_features(df, ["nope"])


# --- expected loss, the capacity policy and the gain curve ------------------------------------


@pytest.fixture(scope="module")
def scored_book():
    """A generated 50,000-loan book (the planted signal), every borrower with its out-of-fold
    scores, and its score-band strategies. The models are fitted on 10,000-row samples (a
    fifth of the pipeline's default, RiskConfig.max_train_rows): a fifth of the time, and the
    same conclusions."""
    book = generate_loan_book(50_000, seed=1)
    scores = score_borrowers(
        fit_recommended_model(
            book, **config_kwargs(fit_recommended_model, RiskConfig, max_train_rows=10_000)
        ),
        book,
    )
    segments = pd.DataFrame(
        {"Borrower_ID": book["Borrower_ID"], "segment_id": 0, "segment_name": "one segment"}
    )
    return book, scores, strategy_table(book, segments, scores, POLICY_MODEL, **STRATEGY)


def by_capacity(table, legal, settlement, key="expected_shortfall"):
    return capacity_strategies(
        table, ranking_key=key, legal_capacity=legal, settlement_capacity=settlement
    )


def caught(table: pd.DataFrame, book: pd.DataFrame, strategy: str, outcome: str) -> float:
    """Share of the balance of loans with ``outcome`` held by the borrowers given ``strategy``
    (every loan of the generated book is resolved, and scored out-of-fold)."""
    status = book.set_index("Borrower_ID").loc[table["Borrower_ID"], "Recovery_Status"].to_numpy()
    bad = status != "Fully Recovered" if outcome == "not_recovered" else status == "Written Off"
    balance = table["Outstanding_Loan_Amount"].to_numpy()
    chosen = (table["recovery_strategy"] == strategy).to_numpy()
    return balance[bad & chosen].sum() / balance[bad].sum()


def test_expected_loss_is_the_probability_times_the_balance(scored_book):
    got = expected_loss([0.5, 0.25, np.nan, 0.3], [1000.0, 80.0, 50.0, -0.0])
    np.testing.assert_array_equal(got, [500.0, 20.0, np.nan, 0.0])
    assert not np.signbit(got[3])  # a -0.0 balance ranks as 0, not below it
    _, _, table = scored_book
    balance = table["Outstanding_Loan_Amount"]
    assert (table["expected_shortfall"] == table["risk_score"] * balance).all()
    assert (table["expected_write_off"] == table["p_written_off"] * balance).all()
    assert (table["expected_shortfall"] <= balance).all()  # an upper bound: at most the balance
    # the bands do not rank: no worklist, and the policy says where the strategies come from
    assert table["worklist_rank"].isna().all() and set(table["policy"]) == {POLICY_MODEL}


def test_capacity_gives_exact_counts_in_expected_loss_order(scored_book):
    _, _, bands = scored_book
    table, used = by_capacity(bands, 700, 1800)
    assert used == (700, 1800)
    counts = table["recovery_strategy"].value_counts()
    assert (counts[STRATEGY_LEGAL], counts[STRATEGY_SETTLEMENT]) == (700, 1800)
    assert counts[STRATEGY_REMINDERS] == len(table) - 2500
    assert set(table["policy"]) == {POLICY_CAPACITY}
    ranked = table.dropna(subset=["worklist_rank"]).sort_values("worklist_rank")
    assert ranked["worklist_rank"].tolist() == list(range(1, 2501))
    assert ranked["expected_shortfall"].is_monotonic_decreasing
    assert (ranked["recovery_strategy"].iloc[:700] == STRATEGY_LEGAL).all()
    # no one left off the worklist has a larger expected loss than anyone on it
    left = table.loc[table["worklist_rank"].isna(), "expected_shortfall"]
    assert left.max() <= ranked["expected_shortfall"].min()
    # the same table ranked by another key
    by_write_off, _ = by_capacity(bands, 10, 0, key="expected_write_off")
    top = by_write_off.loc[by_write_off["worklist_rank"].notna(), "expected_write_off"]
    assert top.min() == bands["expected_write_off"].nlargest(10).min()


def test_empty_capacities_keep_the_bands_workload_and_capacities_can_exceed_the_book(scored_book):
    _, _, bands = scored_book
    legal, settlement = ((bands["recovery_strategy"] == s).sum() for s in STRATEGIES[:2])
    table, used = by_capacity(bands, None, None)
    assert used == (legal, settlement)
    assert (
        table["recovery_strategy"].value_counts().to_dict()
        == bands["recovery_strategy"].value_counts().to_dict()
    )
    small = bands.head(30)
    everyone, _ = by_capacity(small, 100, 100)
    assert (everyone["recovery_strategy"] == STRATEGY_LEGAL).all()
    assert sorted(everyone["worklist_rank"]) == list(range(1, 31))
    nobody, _ = by_capacity(small, 0, 0)
    assert (nobody["recovery_strategy"] == STRATEGY_REMINDERS).all()
    assert nobody["worklist_rank"].isna().all()


def test_ties_go_to_the_smaller_borrower_id_and_a_missing_key_comes_last():
    table = pd.DataFrame(
        {
            "Borrower_ID": ["BRW_b", "BRW_a", "BRW_d", "BRW_c", "BRW_0", "BRW_e"],
            "expected_shortfall": [5.0, 5.0, 5.0, 9.0, np.nan, 1.0],
            "recovery_strategy": STRATEGY_REMINDERS,
            "policy": POLICY_MODEL,
        }
    )
    ranked, _ = by_capacity(table, 2, 3)
    order = ranked.dropna(subset=["worklist_rank"]).sort_values("worklist_rank")["Borrower_ID"]
    assert order.tolist() == ["BRW_c", "BRW_a", "BRW_b", "BRW_d", "BRW_e"]  # not BRW_0
    assert ranked.set_index("Borrower_ID")["recovery_strategy"].to_dict() == {
        "BRW_c": STRATEGY_LEGAL,
        "BRW_a": STRATEGY_LEGAL,
        "BRW_b": STRATEGY_SETTLEMENT,
        "BRW_d": STRATEGY_SETTLEMENT,
        "BRW_e": STRATEGY_SETTLEMENT,
        "BRW_0": STRATEGY_REMINDERS,
    }
    assert ranked.set_index("Borrower_ID")["worklist_rank"].isna().to_dict()["BRW_0"]


def test_a_book_whole_or_in_partitions_gives_the_same_worklist(scored_book):
    _, _, bands = scored_book
    # ties across partitions: rounded keys, so the id decides between partitions
    bands = bands.assign(expected_shortfall=bands["expected_shortfall"].round(-4))
    n = 3000
    # the merge of any partitions' offers, merged in any order, is the whole book's first n
    pieces = np.array_split(np.random.default_rng(3).permutation(len(bands)), 7)
    offers = [worklist_candidates(bands.iloc[p], "expected_shortfall", n) for p in pieces]
    merged = merge_candidates([merge_candidates(offers[:3], n), merge_candidates(offers[3:], n)], n)
    first = worklist_candidates(bands, "expected_shortfall", n)
    pd.testing.assert_frame_equal(merged, first)
    # and on Dask partitions (computed here, no cluster: a tenth of the book), the same table
    dd = pytest.importorskip("dask.dataframe")
    import dask

    tenth = bands.head(5_000)
    with dask.config.set(scheduler="sync"):
        split, used = by_capacity(dd.from_pandas(tenth, npartitions=7), 90, 210)
        split = split.compute()
    assert used == (90, 210)
    whole, _ = by_capacity(tenth, 90, 210)
    pd.testing.assert_frame_equal(split.reset_index(drop=True), whole, check_dtype=False)


def test_the_gain_curve_rises_to_one_and_matches_the_worklists_it_stands_for(scored_book):
    book, scores, bands = scored_book
    gains, counts = measure_gains(bands, scores, book)
    assert counts["held_out"] == counts["borrowers"] == len(book)
    curves = gains[gains["mark"].isna()]
    assert curves["capacity_share"].tolist() == pytest.approx(np.linspace(0, 1, 101).tolist())
    for curve in CURVES:
        values = curves[curve].to_numpy()
        assert values[0] == 0.0 and values[-1] == pytest.approx(1.0, abs=1e-12), curve
        assert (np.diff(values) >= 0).all(), curve
    # at the bands' legal-action count, the score-ranked curve is what the bands caught, and
    # the expected-shortfall curve what the capacity policy catches with that many slots
    legal = gains.set_index("mark").loc["legal action now"]
    assert legal["borrowers"] == (bands["recovery_strategy"] == STRATEGY_LEGAL).sum()
    ranked, _ = by_capacity(bands, int(legal["borrowers"]), 0)
    for table, curve in ((bands, "score_ranked"), (ranked, "shortfall_ranked")):
        exact = caught(table, book, STRATEGY_LEGAL, "not_recovered")
        assert legal[curve] == pytest.approx(exact, abs=2e-3), curve
    # the summaries of pieces, merged, give the whole book's curve
    pieces = [
        gain_summary(gain_rows(bands.iloc[s], scores.iloc[s], book.iloc[s]))
        for s in (slice(0, 20_000), slice(20_000, 35_000), slice(35_000, None))
    ]
    split = gain_table(merge_gain_summaries(pieces))
    pd.testing.assert_frame_equal(split, gains, check_exact=False, rtol=1e-12)


def test_ranking_by_expected_loss_catches_more_bad_balance_with_the_bands_slots(scored_book):
    """The point of the capacity policy, on a held-out comparison: with as many legal-action
    slots as the bands fill, the expected-shortfall ranking's slots hold more of the balance
    that was not fully recovered, and the expected-write-off ranking's more of the written-off
    balance."""
    book, _, bands = scored_book
    legal = int((bands["recovery_strategy"] == STRATEGY_LEGAL).sum())
    by_shortfall, _ = by_capacity(bands, legal, 0)
    by_write_off, _ = by_capacity(bands, legal, 0, key="expected_write_off")
    by_p_write_off, _ = by_capacity(
        bands.assign(risk_score=bands["p_written_off"]), legal, 0, key="risk_score"
    )
    bands_caught = caught(bands, book, STRATEGY_LEGAL, "not_recovered")
    assert caught(by_shortfall, book, STRATEGY_LEGAL, "not_recovered") > bands_caught + 0.05
    assert (
        caught(by_write_off, book, STRATEGY_LEGAL, "written_off")
        > caught(by_p_write_off, book, STRATEGY_LEGAL, "written_off") + 0.02
    )
