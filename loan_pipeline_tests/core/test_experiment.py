"""Champion/challenger core: the arms (reproducible, independent of the book, at the share), the
strategies each arm gets, and the uplift's interval and sample size against published values."""

from __future__ import annotations

import hashlib
import math
import typing

import numpy as np
import pandas as pd
import pytest

from loan_pipeline import settings
from loan_pipeline.core import experiment as ex
from loan_pipeline.domain import (
    EXPERIMENT_COLUMNS,
    STRATEGIES,
    STRATEGY_LEGAL,
    STRATEGY_REMINDERS,
    STRATEGY_SETTLEMENT,
    STRATEGY_SHORT,
)

IDS = pd.Series([f"BRW_{i}" for i in range(1, 20_001)])


def test_a_draw_is_the_documented_hash():
    digest = hashlib.blake2b(b"challenger-1\0BRW_17", digest_size=8).digest()
    expected = (int.from_bytes(digest, "big") >> 11) / 2**53
    assert ex.arm_draws(["BRW_17"], "challenger-1")[0] == expected


def test_arms_do_not_depend_on_the_other_borrowers_nor_their_order():
    whole = ex.assign_arms(IDS, "challenger-1", 0.3)
    rng = np.random.default_rng(1)
    some = IDS.sample(frac=0.2, random_state=3)  # another book: a fifth of it, shuffled
    alone = ex.assign_arms(some.iloc[rng.permutation(len(some))], "challenger-1", 0.3)
    assert (alone == whole.loc[alone.index]).all()
    # and again, another run of the same book: the same arms
    assert ex.assign_arms(IDS, "challenger-1", 0.3).equals(whole)


def test_the_challenger_share_is_the_share_within_binomial_error():
    for share in (0.05, 0.3, 0.5):
        n = len(IDS)
        found = int((ex.assign_arms(IDS, "exp-a", share) == "challenger").sum())
        assert abs(found - n * share) < 4 * math.sqrt(n * share * (1 - share)), share


def test_another_experiment_draws_other_arms_and_a_larger_share_only_adds():
    a = ex.assign_arms(IDS, "exp-a", 0.5)
    b = ex.assign_arms(IDS, "exp-b", 0.5)
    assert 0.4 < (a == b).mean() < 0.6  # independent draws agree about half the time
    small = ex.assign_arms(IDS, "exp-a", 0.1) == "challenger"
    large = ex.assign_arms(IDS, "exp-a", 0.2) == "challenger"
    assert (large | ~small).all() and large.sum() > small.sum()


def strategy_table(strategies: list[str]) -> pd.DataFrame:
    n = len(strategies)
    return pd.DataFrame(
        {
            "Borrower_ID": pd.array(IDS[:n], dtype="string[pyarrow]"),
            "recovery_strategy": pd.array(strategies, dtype="string[pyarrow]"),
            "policy": "score bands",
        }
    )


BOOK = strategy_table(
    list(np.random.default_rng(0).choice(STRATEGIES, size=3_000, p=[0.3, 0.3, 0.4]))
)


def test_challenger_borrowers_get_the_challenger_and_the_others_the_champion():
    out = ex.apply_experiment(
        BOOK, experiment="exp-a", share=0.4, challenger="settlement", eligible=["legal action"]
    )
    champion = BOOK["recovery_strategy"]
    assert (out["champion_strategy"] == champion).all()
    legal = (champion == STRATEGY_LEGAL).to_numpy()
    arms = ex.assign_arms(BOOK["Borrower_ID"], "exp-a", 0.4).to_numpy()
    challenger = legal & (arms == "challenger")
    assert (out["experiment_arm"].to_numpy(dtype=object)[challenger] == "challenger").all()
    assert (out["experiment_arm"][legal & ~challenger] == "champion").all()
    assert out["experiment_arm"][~legal].isna().all() and out["experiment"][~legal].isna().all()
    assert (out["experiment"][legal] == "exp-a").all()
    assert (out["recovery_strategy"][challenger] == STRATEGY_SETTLEMENT).all()
    assert (out["recovery_strategy"][~challenger] == champion[~challenger]).all()
    audit = ex.experiment_audit(out, STRATEGY_SETTLEMENT)
    assert audit["arm:challenger"] == challenger.sum() > 0
    assert audit["arm:champion"] == (legal & ~challenger).sum()
    assert audit["challenger_not_given_challenger"] == audit["others_not_given_champion"] == 0
    # a row given a strategy its arm does not give is counted
    broken = out.assign(recovery_strategy=out["champion_strategy"])
    assert ex.experiment_audit(broken, STRATEGY_SETTLEMENT)["challenger_not_given_challenger"] > 0


def test_share_zero_changes_nothing_and_draws_no_arm():
    out = ex.apply_experiment(
        BOOK, experiment="exp-a", share=0.0, challenger="settlement", eligible=["legal action"]
    )
    assert list(out.columns) == [*BOOK.columns, *EXPERIMENT_COLUMNS]
    pd.testing.assert_frame_equal(out[BOOK.columns], BOOK)
    assert (out["champion_strategy"] == BOOK["recovery_strategy"]).all()
    assert out["experiment"].isna().all() and out["experiment_arm"].isna().all()


def test_an_experiment_of_a_strategy_against_itself_or_of_no_strategy_is_refused():
    with pytest.raises(ValueError, match="same strategy in both arms"):
        ex.check_experiment("settlement", ["legal action", "settlement"])
    with pytest.raises(ValueError, match="unknown strategy"):
        ex.check_experiment("lawsuit", ["legal action"])
    assert ex.check_experiment(STRATEGY_REMINDERS, ["legal action"]) == (
        STRATEGY_REMINDERS,
        [STRATEGY_LEGAL],
    )


def test_the_launchpad_strategy_names_are_the_short_names():
    assert list(typing.get_args(settings.StrategyShort)) == list(STRATEGY_SHORT.values())
    assert settings.StrategyConfig().experiment.share == 0  # off by default


def test_newcombe_interval_matches_the_published_example():
    # Newcombe (1998), Table II, example (a): 56/70 vs 48/80, method 10: 0.0524 to 0.3339
    d, low, high = ex.newcombe_interval(56, 70, 48, 80)
    assert d == pytest.approx(0.2)
    assert (round(low, 4), round(high, 4)) == (0.0524, 0.3339)


def test_sample_size_is_the_two_proportion_formula():
    # 50 % vs 60 %, 5 % two-sided, 80 % power: 388 per arm (Fleiss, Levin & Paik, no
    # continuity correction), the same whichever arm is better
    assert ex.sample_size_per_arm(0.6, 0.5, significance=0.05, power=0.8) == 388
    assert ex.sample_size_per_arm(0.5, 0.6, significance=0.05, power=0.8) == 388
    assert ex.sample_size_per_arm(0.5, 0.5, significance=0.05, power=0.8) is None
    # a smaller difference needs more
    assert ex.sample_size_per_arm(0.55, 0.5, significance=0.05, power=0.8) > 1_500


def test_uplift_counts_the_open_borrowers_resolved_at_t_plus_1_per_arm():
    previous = pd.DataFrame(
        {
            "Borrower_ID": ["a", "b", "c", "d", "e", "f", "g", "h"],
            "Outstanding_Loan_Amount": [100.0, 200, 300, 400, 500, 600, 700, 800],
            "Recovery_Status": [None, None, None, None, None, None, "Written Off", None],
            "recovery_strategy": [STRATEGY_SETTLEMENT] * 3 + [STRATEGY_LEGAL] * 5,
            "experiment": ["x"] * 7 + [None],
            "experiment_arm": ["challenger"] * 3 + ["champion"] * 4 + [None],
        }
    )
    current = pd.DataFrame(
        {
            # c left; g was resolved at t (not counted); h is in no experiment
            "Borrower_ID": ["a", "b", "d", "e", "f", "g", "h"],
            "Recovery_Status": [
                "Fully Recovered",
                "Written Off",
                "Fully Recovered",
                None,
                "Partially Recovered",
                "Written Off",
                "Fully Recovered",
            ],
        }
    )
    row = ex.uplift(previous, current, significance=0.05, power=0.8, min_uplift=None).iloc[0]
    assert row["experiment"] == "x" and row["challenger_strategy"] == STRATEGY_SETTLEMENT
    assert (row["challenger_borrowers"], row["challenger_left_the_book"]) == (3, 1)
    assert (row["challenger_resolved"], row["challenger_fully_recovered"]) == (2, 1)
    assert (row["champion_borrowers"], row["champion_left_the_book"]) == (3, 0)
    assert (row["champion_resolved"], row["champion_fully_recovered"]) == (2, 1)
    assert row["challenger_recovered_balance"] == 100 and row["challenger_resolved_balance"] == 300
    assert row["champion_recovered_balance"] == 400 and row["champion_resolved_balance"] == 1000
    assert row["uplift"] == 0 and row["balance_uplift"] == pytest.approx(100 / 300 - 400 / 1000)
    assert pd.isna(row["needed_per_arm"])  # no uplift observed: no size detects it
    assert not row["significant"]
    sized = ex.uplift(previous, current, significance=0.05, power=0.8, min_uplift=0.1).iloc[0]
    needed = ex.sample_size_per_arm(0.6, 0.5, significance=0.05, power=0.8)
    assert sized["needed_per_arm"] == needed
    assert sized["still_needed_champion"] == sized["still_needed_challenger"] == needed - 2


def test_no_experiment_at_t_is_said():
    previous = pd.DataFrame({"experiment_arm": [None, None]})
    assert ex.experiment_at(previous) == "no experiment ran at the previous snapshot"
    assert "before experiments" in ex.experiment_at(pd.DataFrame({"Borrower_ID": ["a"]}))
