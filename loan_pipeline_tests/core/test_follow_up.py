"""Tests of the follow-up snapshot (loan_pipeline.core.follow_up): the next cycle's book."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from loan_pipeline import sample
from loan_pipeline.core import generator
from loan_pipeline.core.follow_up import (
    BUCKET_DAYS,
    BUCKETS,
    RESOLVED,
    TRANSITIONS,
    arrears_bucket,
    follow_up,
    outcome_probabilities,
    read_book,
    shifted_probabilities,
    strategy_name,
)
from loan_pipeline.core.generator import generate_loan_book
from loan_pipeline.core.ingest_records import read_loan_book
from loan_pipeline.core.ingest_verdict import split_rows
from loan_pipeline.domain import STRATEGIES, STRATEGY_SETTLEMENT

PROJECT_ROOT = Path(__file__).resolve().parents[2]
Z = 4.0  # standard errors allowed: a correct draw fails one check with probability ~6e-5
ARREARS = ["Days_Past_Due", "Num_Missed_Payments", "Outstanding_Loan_Amount", "Monthly_EMI"]
OUTCOME_SIDE = ["Recovery_Status", "Collection_Attempts", "Collection_Method", "Legal_Action_Taken"]


@pytest.fixture(scope="module")
def book() -> pd.DataFrame:
    """25,000 loans, about 20,000 of them open."""
    return generate_loan_book(25_000, seed=11, open_fraction=0.8)


@pytest.fixture(scope="module")
def nxt(book) -> pd.DataFrame:
    return follow_up(book, seed=12)


@pytest.fixture(scope="module")
def strategies(book) -> pd.DataFrame:
    """A strategy drawn at random for every borrower: a randomised trial, so strategies are
    independent of risk and a difference in outcomes between them is the planted effect."""
    rng = np.random.default_rng(5)
    return pd.DataFrame(
        {
            "Borrower_ID": book["Borrower_ID"],
            "recovery_strategy": np.asarray(STRATEGIES)[rng.integers(0, 3, len(book))],
        }
    )


def p_fully_recovered(book: pd.DataFrame) -> np.ndarray:
    """P(Fully Recovered) of the planted relation at signal 1, as documented."""
    return outcome_probabilities(book, 1.0)[:, 0]


def half_up(x: float) -> int:
    return math.floor(x + 0.5)


def bucket_of(days: pd.Series, status: pd.Series) -> pd.Series:
    """The documented buckets, written out independently of ``arrears_bucket``."""
    named = pd.cut(days, [-1, 0, 30, 60, 90, np.inf], labels=BUCKETS[:-1]).astype(object)
    return named.where(status.isna(), "resolved")


def test_transition_matrix_is_a_collections_matrix():
    matrix = TRANSITIONS.to_numpy()
    assert list(TRANSITIONS.index) == BUCKETS == list(TRANSITIONS.columns)
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0)
    assert (matrix >= 0).all()
    roll_forward = [matrix[i, i + 1] for i in range(4)]
    assert roll_forward == sorted(roll_forward) and matrix[4, 4] > roll_forward[-1]
    cures = matrix[1:5, 0]
    assert list(cures) == sorted(cures, reverse=True)
    assert list(matrix[:5, RESOLVED]) == sorted(matrix[:5, RESOLVED])
    assert matrix[RESOLVED, RESOLVED] == 1.0
    # a missed instalment moves a loan at most one bucket on
    assert all(matrix[i, j] == 0 for i in range(5) for j in range(i + 2, 5))


def test_arrears_bucket_matches_the_documented_edges(book):
    expected = bucket_of(book["Days_Past_Due"], book["Recovery_Status"])
    pd.testing.assert_series_equal(arrears_bucket(book), expected, check_names=False)
    assert [lo for lo, _ in BUCKET_DAYS] == [0, 1, 31, 61, 91]


def test_observed_transitions_match_the_matrix(book, nxt):
    before = bucket_of(book["Days_Past_Due"], book["Recovery_Status"])
    after = bucket_of(nxt["Days_Past_Due"], nxt["Recovery_Status"])
    counts = pd.crosstab(before, after).reindex(index=BUCKETS, columns=BUCKETS, fill_value=0)
    assert counts.loc[BUCKETS[:-1]].to_numpy().sum() > 19_000
    for origin in BUCKETS:
        n = counts.loc[origin].sum()
        assert n > 2_000, origin
        for target in BUCKETS:
            p, observed = TRANSITIONS.loc[origin, target], counts.loc[origin, target]
            if p in (0.0, 1.0):
                assert observed == p * n, (origin, target)
            else:
                assert abs(observed - n * p) <= Z * math.sqrt(n * p * (1 - p)), (origin, target)


def test_open_loans_move_by_the_documented_rules(book, nxt):
    old = arrears_bucket(book).map(BUCKETS.index).to_numpy()
    new = arrears_bucket(nxt).map(BUCKETS.index).to_numpy()
    still_open = (old < RESOLVED) & (new < RESOLVED)
    t, n = book[still_open], nxt[still_open]
    for bucket, (low, high) in enumerate(BUCKET_DAYS):
        days = n.loc[new[still_open] == bucket, "Days_Past_Due"]
        assert days.between(low, high).all() and days.nunique() == high - low + 1
    paid = (new[still_open] == 0) | (new[still_open] < old[still_open])
    arrears = new[still_open] > 0
    missed = t["Num_Missed_Payments"].to_numpy() + ~paid
    np.testing.assert_array_equal(
        n["Num_Missed_Payments"], np.where(arrears, np.maximum(missed, 1), missed)
    )
    balance = t["Outstanding_Loan_Amount"].to_numpy()
    repaid = np.round(balance - t["Monthly_EMI"].to_numpy(), 2)
    accrued = np.minimum(
        np.round(balance * (1 + t["Interest_Rate"].to_numpy() / 1200), 2), t["Loan_Amount"]
    )
    np.testing.assert_array_equal(n["Outstanding_Loan_Amount"], np.where(paid, repaid, accrued))
    np.testing.assert_array_equal(
        n["Monthly_EMI"], np.round(n["Outstanding_Loan_Amount"] / n["Loan_Tenure"], 2)
    )
    np.testing.assert_array_equal(
        n["Collection_Attempts"], t["Collection_Attempts"].to_numpy() + arrears
    )
    assert (n["Outstanding_Loan_Amount"] <= n["Loan_Amount"]).all()
    unchanged = [c for c in generator.COLUMNS if c not in ARREARS + ["Collection_Attempts"]]
    pd.testing.assert_frame_equal(t[unchanged], n[unchanged])


def test_resolved_loans_stay_and_resolving_loans_keep_their_features(book, nxt):
    resolved = book["Recovery_Status"].notna()
    pd.testing.assert_frame_equal(book[resolved], nxt[resolved])
    resolving = ~resolved & nxt["Recovery_Status"].notna()
    features = [c for c in generator.COLUMNS if c not in OUTCOME_SIDE]
    pd.testing.assert_frame_equal(book.loc[resolving, features], nxt.loc[resolving, features])
    outcome = nxt[resolving]
    assert set(outcome["Recovery_Status"]) == set(generator.RECOVERY_STATUSES)
    assert (
        outcome.loc[outcome["Legal_Action_Taken"] == "Yes", "Recovery_Status"] == "Written Off"
    ).all()
    fully = outcome["Recovery_Status"] == "Fully Recovered"
    assert outcome.loc[fully, "Collection_Attempts"].between(0, 3).all()


def test_resolving_outcomes_follow_the_planted_relation(book, nxt):
    resolving = (book["Recovery_Status"].isna() & nxt["Recovery_Status"].notna()).to_numpy()
    # the generator's own resolved loans check the probabilities against the generator
    for outcome, rows, least in [
        (book, book["Recovery_Status"].notna(), 4_000),
        (nxt, resolving, 2_000),
    ]:
        p = p_fully_recovered(book)[np.asarray(rows)]
        observed = (outcome.loc[rows, "Recovery_Status"] == "Fully Recovered").sum()
        assert len(p) > least
        assert abs(observed - p.sum()) <= Z * math.sqrt((p * (1 - p)).sum())


def test_same_inputs_same_book_and_dtypes(book, nxt):
    pd.testing.assert_frame_equal(follow_up(book, seed=12), nxt, check_exact=True)
    assert not follow_up(book, seed=13).equals(nxt)
    assert list(nxt.columns) == generator.COLUMNS
    pd.testing.assert_series_equal(nxt.dtypes, generate_loan_book(10, seed=1).dtypes)
    assert nxt["Borrower_ID"].tolist() == book["Borrower_ID"].tolist()
    assert nxt["Loan_ID"].tolist() == book["Loan_ID"].tolist()


def test_vanished_and_new_borrowers_are_counted_exactly(book, nxt):
    changed = follow_up(book, seed=12, vanish=0.05, new=300)
    open_ids = set(book.loc[book["Recovery_Status"].isna(), "Borrower_ID"])
    gone = set(book["Borrower_ID"]) - set(changed["Borrower_ID"])
    arrived = changed[~changed["Borrower_ID"].isin(book["Borrower_ID"])]
    assert len(gone) == half_up(0.05 * len(open_ids)) and gone <= open_ids
    assert arrived["Borrower_ID"].tolist() == [f"BRW_{i}" for i in range(25_001, 25_301)]
    assert arrived["Loan_ID"].tolist() == [f"LN_{i}" for i in range(25_001, 25_301)]
    assert arrived["Recovery_Status"].isna().all()
    assert changed["Borrower_ID"].is_unique and len(changed) == len(book) - len(gone) + 300
    # the borrowers who stay move exactly as without vanish and new (their own random draws)
    stayed = nxt[nxt["Borrower_ID"].isin(changed["Borrower_ID"])].reset_index(drop=True)
    pd.testing.assert_frame_equal(changed.iloc[: len(stayed)], stayed)
    as_share = follow_up(book, seed=12, new=0.01)
    assert len(as_share) == len(book) + 250


def test_new_ids_never_reuse_a_borrower_who_left():
    books = [generate_loan_book(200, seed=3, open_fraction=1.0)]
    for seed in range(4):
        books.append(follow_up(books[-1], seed=seed, vanish=0.5, new=10))
    for i in range(1, len(books)):
        earlier = set().union(*(set(b["Borrower_ID"]) for b in books[:i]))
        arrived = set(books[i]["Borrower_ID"]) - set(books[i - 1]["Borrower_ID"])
        assert len(arrived) == 10 and not arrived & earlier
        assert f"BRW_{200 + 10 * (i - 1)}" in set(books[i]["Borrower_ID"])


def test_planted_effect_moves_exactly_the_loans_between_old_and_new_probability(book, strategies):
    effect = {"Settlement offers": 0.10}
    plain = follow_up(book, seed=12, strategies=strategies)
    shifted = follow_up(book, seed=12, strategies=strategies, strategy_effect=effect)
    resolving = (book["Recovery_Status"].isna() & plain["Recovery_Status"].notna()).to_numpy()
    # the effect changes outcomes, never which loans resolve
    pd.testing.assert_series_equal(
        shifted["Recovery_Status"].notna(), plain["Recovery_Status"].notna()
    )
    settlement = (strategies["recovery_strategy"] == STRATEGY_SETTLEMENT).to_numpy()
    under = resolving & settlement
    assert (resolving & ~settlement).sum() > 1_000
    pd.testing.assert_frame_equal(plain[~under], shifted[~under])
    p = p_fully_recovered(book)[under]
    delta = np.clip(p + 0.10, 0, 1) - p  # the documented meaning: clipped additive change
    was, now = ((df.loc[under, "Recovery_Status"] == "Fully Recovered") for df in (plain, shifted))
    gained, lost = now & ~was, was & ~now
    assert not lost.any()
    assert abs(gained.sum() - delta.sum()) <= Z * math.sqrt((delta * (1 - delta)).sum())


def fully_recovered_gap(outcome: pd.DataFrame, book, strategies):
    """Fully Recovered share among resolving loans under settlement minus among the rest, and
    its standard error (two independent binomial shares)."""
    resolving = book["Recovery_Status"].isna() & outcome["Recovery_Status"].notna()
    settlement = strategies["recovery_strategy"] == STRATEGY_SETTLEMENT
    fully = outcome["Recovery_Status"] == "Fully Recovered"
    a, b = fully[resolving & settlement], fully[resolving & ~settlement]
    se = math.sqrt(a.mean() * (1 - a.mean()) / len(a) + b.mean() * (1 - b.mean()) / len(b))
    return a.mean() - b.mean(), se, resolving & settlement


def test_back_test_recovers_the_planted_effect_and_nothing_without_it(book, strategies):
    shifted = follow_up(
        book, seed=12, strategies=strategies, strategy_effect={STRATEGY_SETTLEMENT: 0.10}
    )
    gap, se, under = fully_recovered_gap(shifted, book, strategies)
    p = p_fully_recovered(book)[under.to_numpy()]
    expected = (np.clip(p + 0.10, 0, 1) - p).mean()
    assert 0.09 < expected <= 0.10  # clipping takes a little off the 0.10
    assert abs(gap - expected) <= Z * se and gap > 2 * se
    gap, se, _ = fully_recovered_gap(
        follow_up(book, seed=12, strategies=strategies), book, strategies
    )
    assert abs(gap) <= Z * se


def test_strategies_from_the_export_with_the_spreadsheet_guard(book, strategies):
    guarded = strategies.assign(Borrower_ID="'" + strategies["Borrower_ID"])
    effect = {"settlement": 0.2}
    pd.testing.assert_frame_equal(
        follow_up(book, seed=4, strategies=guarded, strategy_effect=effect),
        follow_up(book, seed=4, strategies=strategies, strategy_effect=effect),
    )


def test_shifted_probabilities_clip_and_keep_the_ratio():
    probs = np.array([[0.5, 0.3, 0.2], [0.95, 0.04, 0.01], [0.05, 0.0, 0.95], [1.0, 0.0, 0.0]])
    out = shifted_probabilities(probs, np.array([0.1, 0.1, -0.2, -0.5]))
    np.testing.assert_allclose(out.sum(axis=1), 1.0)
    np.testing.assert_allclose(out[:, 0], [0.6, 1.0, 0.0, 0.5])
    np.testing.assert_allclose(out[0, 1:], [0.4 * 0.6, 0.4 * 0.4])
    np.testing.assert_allclose(out[3, 1:], [0.5, 0.0])


def test_invalid_arguments(book, strategies):
    small = book.head(50)
    with pytest.raises(ValueError, match="needs the borrowers' strategies"):
        follow_up(small, 1, strategy_effect={"settlement": 0.1})
    with pytest.raises(ValueError, match="not in the book"):
        follow_up(small, 1, strategies=strategies, strategy_effect={"settlement": 0.1})
    with pytest.raises(ValueError, match="unknown strategy"):
        strategy_name("Payment holidays")
    for options in ({"vanish": 1.5}, {"new": -1}, {"new": 1.5}, {"signal": -1.0}):
        with pytest.raises(ValueError):
            follow_up(small, 1, **options)
    assert strategy_name("Settlement offers") == STRATEGY_SETTLEMENT


def test_follow_up_book_passes_the_ingest_contract(tmp_path):
    first = tmp_path / "t0.csv"
    generator.write_loan_book(first, 3_000, seed=8, open_fraction=0.8)
    previous = read_book(first)
    assert previous.equals(generate_loan_book(3_000, seed=8, open_fraction=0.8))
    path = tmp_path / "t1.csv"
    book = follow_up(previous, seed=9, vanish=0.02, new=100)
    book = follow_up(book, seed=10, vanish=0.02, new=100)  # two cycles: more missed payments
    generator.write_tables(
        path, [pa.Table.from_pandas(book, generator.SCHEMA, preserve_index=False)]
    )
    read = read_loan_book(path)
    split = split_rows(read, max_quarantine_share=0.0, min_rows=1)
    assert split.quarantined == 0 and split.records == len(book)
    assert read.issues.empty and read.malformed.empty


def test_cli_writes_the_follow_up(tmp_path, capsys):
    first, second = tmp_path / "t0.csv", tmp_path / "t1.csv"
    generator.main(["--rows", "300", "--seed", "8", "--out", str(first), "--open-fraction", "0.8"])
    previous = pd.read_csv(first, float_precision="round_trip")
    ids = previous["Borrower_ID"]
    exported = tmp_path / "recovery_strategies.csv"
    pd.DataFrame(
        {"Borrower_ID": "'" + ids, "recovery_strategy": np.resize(STRATEGIES, len(ids))}
    ).to_csv(exported, index=False)
    base = [sys.executable, "-m", "loan_pipeline.sample", "--follow-up", str(first)]
    base += ["--seed", "9", "--out", str(second)]
    command = [*base, "--strategies", str(exported), "--strategy-effect", "Settlement offers=0.10"]
    command += ["--vanish", "0.02", "--new", "5"]
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    expected = follow_up(
        previous,
        9,
        strategies=pd.read_csv(exported),
        strategy_effect={STRATEGY_SETTLEMENT: 0.10},
        vanish=0.02,
        new=5,
    )
    pd.testing.assert_frame_equal(
        pd.read_csv(second, float_precision="round_trip"), expected, check_exact=True
    )
    open_before = previous["Recovery_Status"].isna().sum()
    assert f"{len(expected)} rows" in done.stdout
    assert f"{half_up(0.02 * open_before)} vanished, 5 new" in done.stdout

    with pytest.raises(SystemExit) as refused:
        sample.main([*base[3:], "--rows", "10"])
    assert refused.value.code == 2
    assert "do not apply to --follow-up" in capsys.readouterr().err
