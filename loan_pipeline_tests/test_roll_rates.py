"""Two consecutive snapshots through the pipeline: the first run has nothing to compare and says
so; the second publishes the roll rates, the forecast, the cure rates and the strategy back-test
of the two books, equal to the core functions applied to the two CSVs (with the first run's
segments, scores and strategies); the follow-up plants a strategy effect (from the first run's
export) that the back-test sees within its interval."""

from __future__ import annotations

import pandas as pd
import pytest
from dagster import DagsterInstance

from loan_pipeline import sample, settings
from loan_pipeline.assets.history import NO_PREVIOUS
from loan_pipeline.core import backtest as bt
from loan_pipeline.core import roll_rates as rr
from loan_pipeline.core.arrears import arrears_bucket
from loan_pipeline.core.follow_up import outcome_probabilities, read_book
from loan_pipeline.domain import STRATEGY_LEGAL
from loan_pipeline_tests.conftest import run_pipeline

SNAPSHOT_COLUMNS = ["previous_snapshot", "snapshot"]
# the follow-up's planted strategy effect: +0.10 on P(Fully Recovered) of legal action's loans
EFFECT_STRATEGY, EFFECT = STRATEGY_LEGAL, 0.10


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A 2,000-loan book with half its loans open, then its follow-up (60 newcomers, 5 % of the
    open borrowers gone), run one after the other into one storage."""
    folder = tmp_path_factory.mktemp("roll_rates")
    t0, t1 = folder / "t0.csv", folder / "t1.csv"
    sample.main(["--rows", "2000", "--seed", "7", "--open-fraction", "0.5", "--out", str(t0)])
    storage, instance = folder / "storage", DagsterInstance.ephemeral()
    first = run_pipeline(t0, storage, instance=instance)
    assert first.result.success
    # the follow-up after the first run: its exported strategies, with a planted effect for the
    # back-test (the buckets, hence the roll rates, do not depend on it)
    sample.main(["--follow-up", str(t0), "--seed", "8", "--vanish", "0.05", "--new", "60",
                 "--strategies", str(storage / "exports" / "recovery_strategies.csv"),
                 "--strategy-effect", f"{EFFECT_STRATEGY}={EFFECT}", "--out", str(t1)])  # fmt: skip
    tables_after_first = {
        name: first.table(name)
        for name in ("roll_rates", "arrears_forecast", "cure_rates", "strategy_backtest")
    }
    strategies_t0 = first.table("recovery_strategies")
    second = run_pipeline(t1, storage, instance=instance)
    assert second.result.success
    return {
        "books": (read_book(t0), read_book(t1)),
        "first": first,
        "first_tables": tables_after_first,
        "strategies_t0": strategies_t0,
        "second": second,
    }


def snapshot_of(book: pd.DataFrame, strategies: pd.DataFrame | None) -> pd.DataFrame:
    """What the core functions read of a snapshot, from its CSV (and, for the groups at t, the
    first run's published strategies)."""
    out = book[["Borrower_ID", "Outstanding_Loan_Amount", "Days_Past_Due", "Recovery_Status"]]
    out = out.assign(arrears_bucket=arrears_bucket(book))
    if strategies is not None:
        groups = strategies[["Borrower_ID", "segment_name", "recovery_strategy", "risk_score"]]
        out = out.merge(groups, on="Borrower_ID", how="left")
    return out


def test_the_first_snapshot_has_nothing_to_compare_and_says_so(runs):
    for name, table in runs["first_tables"].items():
        assert table.empty, name
        metadata = runs["first"].materialized()[name]
        assert metadata["compared"].value == NO_PREVIOUS, name
    checks = runs["first"].result.get_asset_check_evaluations()
    assert [(c.check_name, c.passed) for c in checks if c.check_name == "rows_sum_to_one"] == [
        ("rows_sum_to_one", True)
    ]


def test_published_tables_equal_the_core_computation_on_the_two_books(runs):
    book_t0, book_t1 = runs["books"]
    before = snapshot_of(book_t0, runs["strategies_t0"])
    after = snapshot_of(book_t1, None)
    second = runs["second"]

    matrix = second.table("roll_rates")
    assert matrix["previous_snapshot"].str.startswith("t0.csv@").all()
    assert matrix["snapshot"].str.startswith("t1.csv@").all()
    expected = rr.roll_rate_matrix(before, after)
    pd.testing.assert_frame_equal(
        matrix.drop(columns=SNAPSHOT_COLUMNS), expected, check_dtype=False, rtol=1e-9
    )

    cures = second.table("cure_rates").drop(columns=SNAPSHOT_COLUMNS)
    pd.testing.assert_frame_equal(cures, rr.cure_rates(before, after), check_dtype=False, rtol=1e-9)

    forecast = second.table("arrears_forecast").drop(columns=SNAPSHOT_COLUMNS)
    pd.testing.assert_frame_equal(
        forecast, rr.flow_forecast(expected, rr.bucket_mix(after)), check_dtype=False, rtol=1e-9
    )

    metadata = second.materialized()["roll_rates"]
    gone = set(book_t0["Borrower_ID"]) - set(book_t1["Borrower_ID"])
    new = set(book_t1["Borrower_ID"]) - set(book_t0["Borrower_ID"])
    assert metadata["left_the_book"].value == len(gone) > 0
    assert metadata["new_to_the_book"].value == len(new) == 60
    assert metadata["borrowers_in_both"].value == len(book_t0) - len(gone)
    assert "| new to the book | 60 |" in metadata["matrix"].value
    checks = second.result.get_asset_check_evaluations()
    assert [c.passed for c in checks if c.check_name == "rows_sum_to_one"] == [True]


def test_the_history_carries_each_snapshots_arrears(runs):
    book_t0, book_t1 = runs["books"]
    history = runs["second"].table("recovery_strategies_history")
    assert history["snapshot_id"].nunique() == 2
    for book, prefix in ((book_t0, "t0.csv@"), (book_t1, "t1.csv@")):
        rows = history[history["snapshot_id"].str.startswith(prefix)].set_index("Borrower_ID")
        expected = book.set_index("Borrower_ID").loc[rows.index]
        assert (rows["Days_Past_Due"] == expected["Days_Past_Due"]).all()
        assert (
            rows["Recovery_Status"].isna().tolist() == expected["Recovery_Status"].isna().tolist()
        )
        assert rows["arrears_bucket"].tolist() == arrears_bucket(expected).tolist()


def test_the_chart_is_drawn_from_the_published_matrix(runs):
    png = runs["second"].storage / "charts" / "chart_roll_rates.png"
    assert png.stat().st_size > 20_000  # a heatmap, not the first run's one line of text
    metadata = runs["first"].materialized()["chart_roll_rates"]
    assert metadata["size_bytes"].value < png.stat().st_size


def test_the_backtest_equals_the_core_computation_and_sees_the_planted_effect(runs):
    book_t0, book_t1 = runs["books"]
    before = snapshot_of(book_t0, runs["strategies_t0"])
    after = snapshot_of(book_t1, None)
    config = settings.BacktestConfig()
    expected = bt.strategy_backtest(
        before,
        after,
        reference=config.reference_strategy,
        partial_share=config.partial_recovery_share,
        band_width=config.score_band_width,
    )
    published = runs["second"].table("strategy_backtest")
    assert published["previous_snapshot"].str.startswith("t0.csv@").all()
    pd.testing.assert_frame_equal(
        published.drop(columns=SNAPSHOT_COLUMNS), expected, check_dtype=False, rtol=1e-9
    )
    metadata = runs["second"].materialized()["strategy_backtest"]
    counts = bt.cycle_counts(before, after)
    assert metadata["resolved_in_cycle"].value == counts["resolved_in_cycle"] > 50
    assert metadata["already_resolved_at_t"].value == int(book_t0["Recovery_Status"].notna().sum())
    # the pipeline's strategies are score bands: no band holds reminders and another strategy,
    # and the headline says so rather than compare borrowers of different risk
    assert (runs["strategies_t0"]["policy"] == "score bands").all()
    assert "no score band holds both" in metadata["headline"].value
    assert (published["group_by"] != "band_adjusted").all()

    # the planted effect: legal action's Fully Recovered share is, in expectation, the mean of
    # p' = min(p + 0.10, 1) over its loans resolving this cycle (p: the generator's own
    # probability at t); the published Wilson interval holds it, overall and in each band
    p = pd.Series(outcome_probabilities(book_t0)[:, 0], index=book_t0["Borrower_ID"])
    cohort = bt.resolved_cohort(before, after, band_width=config.score_band_width)
    legal = cohort[cohort["recovery_strategy"] == EFFECT_STRATEGY]
    shifted = (p.loc[legal["Borrower_ID"]] + EFFECT).clip(upper=1).to_numpy()
    rows = published[published["recovery_strategy"] == EFFECT_STRATEGY]
    overall = rows[rows["group_by"] == "all"].iloc[0]
    assert overall["resolved"] == len(legal) > 20
    assert overall["ci_low"] <= shifted.mean() <= overall["ci_high"]
    for band, row in rows[rows["group_by"] == "score_band"].set_index("group").iterrows():
        in_band = (legal["score_band"] == band).to_numpy()
        assert row["resolved"] == in_band.sum()
        assert row["ci_low"] <= shifted[in_band].mean() <= row["ci_high"], band


def test_the_backtest_chart_is_drawn_from_the_published_table(runs):
    png = runs["second"].storage / "charts" / "chart_strategy_backtest.png"
    first = runs["first"].materialized()["chart_strategy_backtest"]["size_bytes"].value
    assert png.stat().st_size > 2 * first  # points and intervals, not the first run's note
