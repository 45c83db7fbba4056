"""Tests of the roll rates, their forecast and the cure rates (loan_pipeline.core.roll_rates),
against counts computed here independently (pandas crosstabs and plain loops) on generator books
and their follow-ups."""

from __future__ import annotations

import math

import duckdb
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from loan_pipeline.core import roll_rates as rr
from loan_pipeline.core.arrears import arrears_bucket, bucket_sql
from loan_pipeline.core.chart_summaries import wilson_interval
from loan_pipeline.core.follow_up import TRANSITIONS, follow_up
from loan_pipeline.core.generator import generate_loan_book
from loan_pipeline.core.history_charts import NOTHING_TO_COMPARE, roll_rates_figure
from loan_pipeline.domain import BUCKETS, LEFT_BOOK, NEW_TO_BOOK, STRATEGIES, TO_BUCKETS

Z = 4.0  # standard errors allowed: a correct draw fails one check with probability ~6e-5


def with_groups(book: pd.DataFrame, seed: int) -> pd.DataFrame:
    """The book with its bucket, and a segment and a strategy drawn at random (what the
    pipeline's history file adds beside the loan book's columns)."""
    rng = np.random.default_rng(seed)
    out = book.copy()
    out["arrears_bucket"] = arrears_bucket(book)
    out["segment_name"] = np.asarray(["Segment A", "Segment B"])[rng.integers(0, 2, len(book))]
    out["recovery_strategy"] = np.asarray(STRATEGIES)[rng.integers(0, 3, len(book))]
    return out


@pytest.fixture(scope="module")
def pair() -> tuple[pd.DataFrame, pd.DataFrame]:
    """2,000 loans, half open, and their follow-up with 5 % of the open borrowers gone and 80
    newcomers."""
    before = generate_loan_book(2_000, seed=3, open_fraction=0.5)
    after = follow_up(before, seed=4, vanish=0.05, new=80)
    return with_groups(before, 5), with_groups(after, 6)


@pytest.fixture(scope="module")
def large() -> tuple[pd.DataFrame, pd.DataFrame]:
    """25,000 loans, about 20,000 open, and their follow-up (nobody gone, nobody new)."""
    before = generate_loan_book(25_000, seed=21, open_fraction=0.8)
    return with_groups(before, 1), with_groups(follow_up(before, seed=22), 2)


def independent_moves(before: pd.DataFrame, after: pd.DataFrame) -> pd.DataFrame:
    """Each borrower of either snapshot once: where it was, where it went, the balance moved."""
    ids_before, ids_after = set(before["Borrower_ID"]), set(after["Borrower_ID"])
    rows = []
    b = before.set_index("Borrower_ID")
    a = after.set_index("Borrower_ID")
    for borrower in ids_before | ids_after:
        origin = b.at[borrower, "arrears_bucket"] if borrower in ids_before else NEW_TO_BOOK
        target = a.at[borrower, "arrears_bucket"] if borrower in ids_after else LEFT_BOOK
        balance = (b if borrower in ids_before else a).at[borrower, "Outstanding_Loan_Amount"]
        rows.append((origin, target, float(balance)))
    return pd.DataFrame(rows, columns=["origin", "target", "balance"])


def test_matrix_counts_match_an_independent_crosstab(pair):
    before, after = pair
    matrix = rr.roll_rate_matrix(before, after)
    moves = independent_moves(before, after)
    counts = pd.crosstab(moves["origin"], moves["target"])
    balance = pd.crosstab(moves["origin"], moves["target"], values=moves["balance"], aggfunc="sum")
    got = matrix.set_index(["from_bucket", "to_bucket"])
    # every borrower of either snapshot counted once: none dropped, none twice
    assert got["borrowers"].sum() == len(set(before["Borrower_ID"]) | set(after["Borrower_ID"]))
    for (origin, target), row in got.iterrows():
        expected = counts.at[origin, target] if target in counts.columns else 0
        assert row["borrowers"] == expected, (origin, target)
        expected_balance = balance.fillna(0).at[origin, target] if expected else 0.0
        assert row["balance"] == pytest.approx(expected_balance, rel=1e-12), (origin, target)
    # the row shares are the crosstab normalised by row
    shares = pd.crosstab(moves["origin"], moves["target"], normalize="index")
    for (origin, target), row in got.iterrows():
        expected = shares.at[origin, target] if target in shares.columns else 0.0
        assert row["share"] == pytest.approx(expected, abs=1e-12), (origin, target)


def test_vanished_and_new_borrowers_are_counted(pair):
    before, after = pair
    gone = set(before["Borrower_ID"]) - set(after["Borrower_ID"])
    new = set(after["Borrower_ID"]) - set(before["Borrower_ID"])
    assert len(gone) == round(0.05 * before["Recovery_Status"].isna().sum()) and len(new) == 80
    matrix = rr.roll_rate_matrix(before, after)
    assert matrix.loc[matrix["to_bucket"] == LEFT_BOOK, "borrowers"].sum() == len(gone)
    newcomers = matrix[matrix["from_bucket"] == NEW_TO_BOOK]
    assert newcomers["borrowers"].sum() == 80
    # the newcomers' row is their mix at t+1: open loans spread over the open buckets
    mix = after[after["Borrower_ID"].isin(new)]["arrears_bucket"].value_counts()
    assert newcomers.set_index("to_bucket")["borrowers"].to_dict() == {
        b: int(mix.get(b, 0)) for b in TO_BUCKETS
    }
    # a newcomer never enters the rates of the buckets at t
    from_t = matrix[matrix["from_bucket"].isin(BUCKETS)]
    assert from_t["borrowers"].sum() == len(before)


def test_every_row_sums_to_one_and_the_check_finds_one_that_does_not(pair):
    matrix = rr.roll_rate_matrix(*pair)
    sums = matrix.groupby("from_bucket")[["share", "balance_share"]].sum()
    assert np.allclose(sums["share"], 1.0) and np.allclose(sums["balance_share"], 1.0)
    assert list(matrix["to_bucket"].unique()) == TO_BUCKETS
    assert rr.rows_sum_to_one(matrix) == []
    broken = matrix.copy()
    broken.loc[broken.index[0], "share"] += 0.01
    assert rr.rows_sum_to_one(broken) == [
        f"{broken.iloc[0]['from_bucket']}: shares sum to 1.010000"
    ]


def test_the_follow_ups_transitions_are_recovered_within_binomial_error(large):
    matrix = rr.roll_rate_matrix(*large).set_index(["from_bucket", "to_bucket"])
    n_open = matrix.loc[BUCKETS[:-1], "borrowers"].sum()
    assert n_open > 19_000
    for origin in BUCKETS:
        n = matrix.loc[origin, "borrowers"].sum()
        assert n > 2_000, origin
        for target in BUCKETS:
            p = TRANSITIONS.loc[origin, target]
            observed = matrix.loc[(origin, target), "borrowers"]
            if p in (0.0, 1.0):
                assert observed == p * n, (origin, target)
            else:
                assert abs(observed - n * p) <= Z * math.sqrt(n * p * (1 - p)), (origin, target)
        assert matrix.loc[(origin, LEFT_BOOK), "borrowers"] == 0


def test_the_forecast_is_the_mix_moved_by_the_observed_rates(pair):
    before, after = pair
    matrix = rr.roll_rate_matrix(before, after)
    forecast = rr.flow_forecast(matrix, rr.bucket_mix(after)).set_index("bucket")
    # independently: the mix at t+1 (a vector) times the row-normalised crosstab at t (a matrix)
    moves = independent_moves(before, after)
    moves = moves[moves["origin"] != NEW_TO_BOOK]
    rates = pd.crosstab(moves["origin"], moves["target"], normalize="index")
    rates = rates.reindex(index=BUCKETS, columns=TO_BUCKETS, fill_value=0.0)
    mix = after["arrears_bucket"].value_counts().reindex(BUCKETS, fill_value=0)
    expected = mix.to_numpy(dtype=float) @ rates.to_numpy()
    assert np.allclose(forecast.loc[TO_BUCKETS, "expected_borrowers"], expected)
    assert forecast["expected_borrowers"].sum() == pytest.approx(len(after))
    assert forecast.loc[BUCKETS, "borrowers_now"].tolist() == mix.tolist()
    assert forecast["without_rates"].sum() == 0
    balance_now = after.groupby("arrears_bucket")["Outstanding_Loan_Amount"].sum()
    assert forecast["expected_balance"].sum() == pytest.approx(balance_now.sum(), rel=1e-9)


def test_a_bucket_without_rates_stays_and_is_counted():
    before = pd.DataFrame(
        {
            "Borrower_ID": ["a", "b"],
            "arrears_bucket": ["current", "1-30"],
            "Outstanding_Loan_Amount": [100.0, 50.0],
        }
    )
    after = pd.DataFrame(
        {
            "Borrower_ID": ["a", "b", "c"],
            "arrears_bucket": ["1-30", "current", "90+"],
            "Outstanding_Loan_Amount": [90.0, 40.0, 10.0],
        }
    )
    forecast = rr.flow_forecast(rr.roll_rate_matrix(before, after), rr.bucket_mix(after))
    forecast = forecast.set_index("bucket")
    # the newcomer "c" sits in 90+, a bucket nobody was in at t: it stays there
    assert (
        forecast.at["90+", "without_rates"] == 1 and forecast.at["90+", "expected_borrowers"] == 1
    )
    # "a" (now 1-30) moves as 1-30 did (to current); "b" (now current) as current did (to 1-30)
    assert forecast.at["current", "expected_borrowers"] == 1
    assert forecast.at["1-30", "expected_borrowers"] == 1
    assert forecast.at["current", "expected_balance"] == pytest.approx(90.0)


def independent_cures(before: pd.DataFrame, after: pd.DataFrame, column: str | None) -> dict:
    """{group: (delinquent, left, observed, cured)} by a loop over the borrowers."""
    later = after.set_index("Borrower_ID")
    out: dict = {}
    for row in before.itertuples(index=False):
        if isinstance(row.Recovery_Status, str) or not row.Days_Past_Due > 0:
            continue
        group = "all" if column is None else getattr(row, column)
        d, left, seen, cured = out.get(group, (0, 0, 0, 0))
        if row.Borrower_ID not in later.index:
            out[group] = (d + 1, left + 1, seen, cured)
            continue
        nxt = later.loc[row.Borrower_ID]
        ok = nxt["Recovery_Status"] == "Fully Recovered" or (
            not isinstance(nxt["Recovery_Status"], str) and nxt["Days_Past_Due"] == 0
        )
        out[group] = (d + 1, left, seen + 1, cured + int(ok))
    return out


def test_cure_rates_equal_an_independent_count(pair):
    before, after = pair
    table = rr.cure_rates(before, after)
    assert table["dimension"].tolist()[0] == "all"
    for dimension in ("all", "arrears_bucket", "segment_name", "recovery_strategy"):
        expected = independent_cures(before, after, None if dimension == "all" else dimension)
        got = table[table["dimension"] == dimension].set_index("group")
        assert set(got.index) == set(expected), dimension
        for group, (delinquent, left, observed, cured) in expected.items():
            row = got.loc[group]
            assert (row["delinquent"], row["left_the_book"], row["observed"], row["cured"]) == (
                delinquent,
                left,
                observed,
                cured,
            ), (dimension, group)
            assert row["cure_rate"] == pytest.approx(cured / observed)
            low, high = wilson_interval(np.array([cured]), np.array([observed]))
            assert (row["ci_low"], row["ci_high"]) == pytest.approx((low[0], high[0]))
    buckets = table[table["dimension"] == "arrears_bucket"]["group"].tolist()
    assert buckets == ["1-30", "31-60", "61-90", "90+"]  # delinquent: never current, resolved
    # cures fall with arrears in the follow-up's matrix (35 % of 1-30 back to current, 2 % of 90+)
    rates = table[table["dimension"] == "arrears_bucket"]["cure_rate"].tolist()
    assert rates[0] > rates[-1]


def test_a_snapshot_without_the_columns_is_refused_with_their_names(pair):
    before, after = pair
    with pytest.raises(
        ValueError, match=r"previous snapshot lacks the columns \['arrears_bucket'\]"
    ):
        rr.roll_rate_matrix(before.drop(columns="arrears_bucket"), after)
    with pytest.raises(ValueError, match="names a borrower more than once"):
        rr.roll_rate_matrix(before, pd.concat([after, after.head(1)]))


def test_the_sql_bucket_is_the_pandas_bucket(pair):
    before, after = pair
    book = pd.concat([before, after.assign(Days_Past_Due=after["Days_Past_Due"] * 2)])
    with duckdb.connect() as con:
        con.register("book", book[["Days_Past_Due", "Recovery_Status"]])
        sql = con.execute(f"SELECT {bucket_sql()} AS b FROM book").df()["b"]
    assert sql.tolist() == arrears_bucket(book).tolist()
    assert set(sql) == set(BUCKETS)


def test_the_chart_shows_each_cell_and_says_when_there_is_nothing(pair):
    matrix = rr.roll_rate_matrix(*pair).assign(previous_snapshot="t0.csv@x", snapshot="t1.csv@y")
    fig = roll_rates_figure(matrix)
    try:
        ax = fig.axes[0]
        texts = {t.get_text() for t in ax.texts}
        row = matrix.iloc[0]
        assert f"{row['share']:.0%}\n({row['borrowers']:,})" in texts
        assert "t1.csv@y" in ax.get_xlabel() and "t0.csv@x" in ax.get_ylabel()
        n_current = matrix.loc[matrix["from_bucket"] == "current", "borrowers"].sum()
        assert f"current  (n={n_current:,})" in [t.get_text() for t in ax.get_yticklabels()]
    finally:
        plt.close(fig)
    empty = roll_rates_figure(rr.empty_matrix())
    try:
        assert NOTHING_TO_COMPARE in [t.get_text() for t in empty.axes[0].texts]
    finally:
        plt.close(empty)


def test_a_book_with_nobody_delinquent_has_one_row_and_no_rate():
    resolved = with_groups(generate_loan_book(200, seed=9), 3)  # every loan resolved
    table = rr.cure_rates(resolved, resolved.head(150))
    assert table[["dimension", "group", "delinquent", "observed"]].values.tolist() == [
        ["all", "all", 0, 0]
    ]
    assert table["cure_rate"].isna().all() and table["ci_low"].isna().all()
