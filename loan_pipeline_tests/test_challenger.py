"""Champion/challenger through the pipeline: a book run with an experiment on, its follow-up drawn
with a planted effect of the challenger strategy (from the first run's export), run again. The
arms are the hash's and stay put, each arm gets its strategy, the export carries them, and the
uplift's interval covers the planted effect."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from dagster import DagsterInstance

from loan_pipeline import sample
from loan_pipeline.core import experiment as ex
from loan_pipeline.core.follow_up import outcome_probabilities, read_book, shifted_probabilities
from loan_pipeline.core.strategy import assign_strategy, rules_based
from loan_pipeline.domain import POLICY_FALLBACK, STRATEGY_LEGAL, STRATEGY_REMINDERS
from loan_pipeline.domain import STRATEGY_SETTLEMENT as CHALLENGER
from loan_pipeline.settings import StrategyConfig
from loan_pipeline_tests.conftest import run_pipeline

EFFECT = 0.10
SHARE = 0.5
# legal action and reminders both eligible: more borrowers resolve in the experiment than with
# legal action alone (the default), so the interval is narrower on a small book
ELIGIBLE = ["legal action", "reminders"]
EXPERIMENT = {
    "ops": {
        "recovery_strategies": {
            "config": {
                "experiment": {"name": "test-exp", "share": SHARE, "eligible": ELIGIBLE},
            }
        }
    }
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """3,000 loans, 70 % open, with the experiment; the follow-up (5 % of the open gone, 50 new)
    with settlement raising P(Fully Recovered) by EFFECT, drawn from the first run's export."""
    folder = tmp_path_factory.mktemp("challenger")
    t0, t1 = folder / "t0.csv", folder / "t1.csv"
    sample.main(["--rows", "3000", "--seed", "11", "--open-fraction", "0.7", "--out", str(t0)])
    storage, instance = folder / "storage", DagsterInstance.ephemeral()
    first = run_pipeline(t0, storage, run_config=EXPERIMENT, instance=instance)
    assert first.result.success
    strategies_t0 = first.table("recovery_strategies")
    export = storage / "exports" / "recovery_strategies.csv"
    export_t0 = pd.read_csv(export, dtype=str, keep_default_na=False)
    uplift_t0 = first.table("challenger_uplift")
    sample.main(["--follow-up", str(t0), "--seed", "12", "--vanish", "0.05", "--new", "50",
                 "--strategies", str(export), "--strategy-effect", f"Settlement offers={EFFECT}",
                 "--out", str(t1)])  # fmt: skip
    second = run_pipeline(t1, storage, run_config=EXPERIMENT, instance=instance)
    assert second.result.success
    return {
        "books": (read_book(t0), read_book(t1)),
        "first": first,
        "strategies_t0": strategies_t0,
        "export_t0": export_t0,
        "uplift_t0": uplift_t0,
        "second": second,
    }


def test_each_arm_gets_its_strategy_and_the_champion_is_the_policys(runs):
    table = runs["strategies_t0"]
    config = StrategyConfig()
    if (table["policy"] == POLICY_FALLBACK).all():
        loans = runs["books"][0].set_index("Borrower_ID").loc[table["Borrower_ID"]]
        champion, _ = rules_based(
            loans.reset_index(),
            legal_days=config.fallback_legal_days,
            legal_missed=config.fallback_legal_missed,
            settlement_days=config.fallback_settlement_days,
            settlement_missed=config.fallback_settlement_missed,
        )
    else:
        champion = assign_strategy(
            table["risk_score"],
            legal_above=config.legal_above,
            settlement_from=config.settlement_from,
        )
    assert table["champion_strategy"].tolist() == champion.tolist()
    eligible = table["champion_strategy"].isin([STRATEGY_LEGAL, STRATEGY_REMINDERS]).to_numpy()
    arms = ex.assign_arms(table["Borrower_ID"], "test-exp", SHARE).to_numpy()
    challenger = eligible & (arms == "challenger")
    assert table["experiment_arm"][challenger].eq("challenger").all()
    assert table["experiment_arm"][eligible & ~challenger].eq("champion").all()
    assert table["experiment_arm"][~eligible].isna().all()
    assert table["recovery_strategy"][challenger].eq(CHALLENGER).all()
    assert table["recovery_strategy"][~challenger].tolist() == champion[~challenger].tolist()
    # the share of the eligible in the challenger arm, within binomial error
    n = int(eligible.sum())
    assert abs(challenger.sum() - SHARE * n) < 4 * np.sqrt(n * SHARE * (1 - SHARE))

    metadata = runs["first"].materialized()["recovery_strategies"]
    assert metadata["experiment"].value == "test-exp"
    assert metadata["experiment_share"].value == SHARE
    assert metadata["experiment_arms"].value == {
        "champion": int((eligible & ~challenger).sum()),
        "challenger": int(challenger.sum()),
    }
    checks = {c.check_name: c for c in runs["first"].result.get_asset_check_evaluations()}
    assert checks["policy_is_as_expected"].passed
    assert checks["every_borrower_has_a_strategy"].passed


def test_the_export_carries_the_arms(runs):
    table, export = runs["strategies_t0"], runs["export_t0"]
    assert list(export.columns[-3:]) == ["champion_strategy", "experiment", "experiment_arm"]
    assert export["Borrower_ID"].tolist() == table["Borrower_ID"].tolist()
    assert export["experiment_arm"].tolist() == table["experiment_arm"].fillna("").tolist()
    assert export["recovery_strategy"].tolist() == table["recovery_strategy"].tolist()


def test_a_borrowers_arm_never_changes_between_runs(runs):
    before = runs["strategies_t0"].set_index("Borrower_ID")
    after = runs["second"].table("recovery_strategies").set_index("Borrower_ID")
    both = before.index.intersection(after.index)
    assert len(both) < len(before) and len(after.index.difference(before.index)) == 50
    # the books differ (some left, some came, arrears moved): where a borrower is in the
    # experiment in both, it is in the same arm
    a, b = before.loc[both, "experiment_arm"], after.loc[both, "experiment_arm"]
    in_both = a.notna() & b.notna()
    assert in_both.sum() > 500
    assert (a[in_both] == b[in_both]).all()


def test_the_first_snapshot_has_no_uplift_and_says_so(runs):
    assert runs["uplift_t0"].empty
    metadata = runs["first"].materialized()["challenger_uplift"]
    assert metadata["compared"].value == "first snapshot: nothing to compare yet"


def test_the_uplift_interval_covers_the_planted_effect(runs):
    book_t0, book_t1 = runs["books"]
    table = runs["strategies_t0"]
    row = runs["second"].table("challenger_uplift").iloc[0]
    assert row["experiment"] == "test-exp" and row["challenger_strategy"] == CHALLENGER

    # the arms' counts, from the two CSVs and the first run's arms
    at_t0 = book_t0.set_index("Borrower_ID").loc[table["Borrower_ID"]].reset_index()
    at_t0["arm"] = table["experiment_arm"].to_numpy()
    after = book_t1.set_index("Borrower_ID")["Recovery_Status"]
    open_in = at_t0[at_t0["Recovery_Status"].isna() & at_t0["arm"].notna()]
    resolved = open_in[open_in["Borrower_ID"].isin(after[after.notna()].index)]
    status = after.loc[resolved["Borrower_ID"]].to_numpy()
    expected_rate = {}
    for arm in ("champion", "challenger"):
        mine = (resolved["arm"] == arm).to_numpy()
        assert row[f"{arm}_borrowers"] == (open_in["arm"] == arm).sum()
        assert row[f"{arm}_resolved"] == mine.sum() > 40
        assert row[f"{arm}_fully_recovered"] == (status[mine] == "Fully Recovered").sum()
        # what the follow-up drew each resolving loan's outcome from
        probs = outcome_probabilities(resolved[mine])
        effect = np.full(len(probs), EFFECT if arm == "challenger" else 0.0)
        expected_rate[arm] = shifted_probabilities(probs, effect)[:, 0].mean()
    # the uplift expected of these resolved borrowers (which loans resolve is drawn apart from
    # the strategies, so the arms' mixes of risk differ by chance: on this book by ~0.1)
    expected = expected_rate["challenger"] - expected_rate["champion"]
    assert row["uplift_ci_low"] <= expected <= row["uplift_ci_high"]
    # and the planted effect itself, of the whole experiment (the arms are random): the effect
    # on P(Fully Recovered) of every borrower in it, less where it clips at 1
    probs = outcome_probabilities(open_in)
    planted = (shifted_probabilities(probs, np.full(len(probs), EFFECT)) - probs)[:, 0].mean()
    assert 0.09 < planted <= EFFECT
    assert row["uplift_ci_low"] <= planted <= row["uplift_ci_high"]
    assert row["uplift"] == pytest.approx(row["challenger_rate"] - row["champion_rate"])

    # the sample size: the formula for the uplift observed, less what each arm has
    needed = ex.sample_size_per_arm(
        row["champion_rate"] + row["uplift"],
        row["champion_rate"],
        significance=0.05,
        power=0.80,
    )
    assert row["needed_per_arm"] == needed
    assert row["still_needed_champion"] == max(0, needed - row["champion_resolved"])
    assert row["still_needed_challenger"] == max(0, needed - row["challenger_resolved"])
    metadata = runs["second"].materialized()["challenger_uplift"]
    assert metadata["experiments"].value == 1
    assert metadata["previous_snapshot"].value.startswith("t0.csv@")
