from __future__ import annotations

import numpy as np
import pandas as pd

from loan_pipeline.core.monitoring import (
    age_band,
    distribution_profile,
    fairness_flags,
    fairness_table,
    psi,
    stability_table,
)
from loan_pipeline.domain import STRATEGY_LEGAL, STRATEGY_REMINDERS


def _book(n=2000, seed=0):
    rng = np.random.default_rng(seed)
    loans = pd.DataFrame(
        {
            "Borrower_ID": [f"B{i}" for i in range(n)],
            "Gender": rng.choice(["Male", "Female"], n),
            "Age": rng.integers(21, 65, n),
            "Recovery_Status": rng.choice(["Fully Recovered", "Written Off"], n),
        }
    )
    strategies = pd.DataFrame(
        {
            "Borrower_ID": loans["Borrower_ID"],
            "risk_score": rng.uniform(size=n),
            "recovery_strategy": STRATEGY_REMINDERS,
        }
    )
    return loans, strategies


def test_equal_treatment_is_not_flagged():
    loans, strategies = _book()
    bad = loans["Recovery_Status"] == "Written Off"
    strategies.loc[bad, "recovery_strategy"] = (
        STRATEGY_LEGAL  # harsh exactly where outcomes are bad
    )
    table = fairness_table(loans, strategies)
    assert set(table["group_type"]) == {"all", "Gender", "age_band"}
    shares = table[["share_legal", "share_settlement", "share_reminders"]].sum(axis=1)
    np.testing.assert_allclose(shares, 1.0)
    assert fairness_flags(table).empty


def test_harsher_treatment_without_worse_outcomes_is_flagged():
    loans, strategies = _book()
    women = loans["Gender"] == "Female"
    strategies.loc[women & (np.arange(len(loans)) % 2 == 0), "recovery_strategy"] = STRATEGY_LEGAL
    table = fairness_table(loans, strategies)
    flagged = fairness_flags(table, max_gap=0.10)
    assert ("Gender", "Female") in set(zip(flagged["group_type"], flagged["group"], strict=True))
    row = table[(table["group"] == "Female")].iloc[0]
    assert row["share_legal"] > 0.45 and abs(row["outcome_gap"]) < 0.05


def test_harsher_treatment_matched_by_outcomes_is_not_flagged():
    loans, strategies = _book()
    women = loans["Gender"] == "Female"
    loans.loc[women, "Recovery_Status"] = "Written Off"
    loans.loc[~women, "Recovery_Status"] = "Fully Recovered"
    strategies.loc[women, "recovery_strategy"] = STRATEGY_LEGAL
    assert fairness_flags(fairness_table(loans, strategies)).empty


def test_small_groups_are_shown_not_judged():
    loans, strategies = _book(n=40)
    strategies.loc[loans["Gender"] == "Female", "recovery_strategy"] = STRATEGY_LEGAL
    table = fairness_table(loans, strategies)
    genders = table[table["group_type"] == "Gender"]
    assert (genders["borrowers"] < 30).all()
    assert not fairness_flags(table, min_group=1).empty  # the gap is there...
    assert fairness_flags(table, min_group=30).empty  # ...but too few borrowers to judge


def test_age_bands():
    assert age_band(pd.Series([21, 29, 30, 44, 45, 59, 60, 64])).tolist() == [
        "under 30",
        "under 30",
        "30-44",
        "30-44",
        "45-59",
        "45-59",
        "60 and over",
        "60 and over",
    ]


def test_psi_is_zero_for_the_same_distribution_and_large_for_a_shift():
    rng = np.random.default_rng(0)
    before = pd.Series(rng.normal(size=50_000))
    profile = distribution_profile(before)
    assert psi(profile, before) < 1e-9
    assert psi(profile, pd.Series(rng.normal(size=50_000))) < 0.01
    assert psi(profile, pd.Series(rng.normal(loc=1.0, size=50_000))) > 0.25
    current = pd.DataFrame({"x": before + 2, "y": before})
    table = stability_table(current, previous={"x": profile}).set_index("column")
    assert table.loc["x", "status_vs_previous"] == "significant shift"
    assert table.loc["y", "status_vs_previous"] == "no previous run"
    assert (table["status_vs_baseline"] == "this run is the baseline").all()


def test_psi_of_a_discrete_column():
    before = pd.Series([0] * 900 + [1] * 100)
    profile = distribution_profile(before)
    assert psi(profile, before) < 1e-9
    assert psi(profile, pd.Series([0] * 500 + [1] * 500)) > 0.25


def test_fairness_rates_carry_their_standard_errors():
    loans, strategies = _book(n=400)
    strategies.loc[::4, "recovery_strategy"] = STRATEGY_LEGAL
    table = fairness_table(loans, strategies).set_index("group")
    overall = table.loc["all borrowers"]
    assert overall["share_legal"] == 0.25
    assert abs(overall["share_legal_se"] - (0.25 * 0.75 / 400) ** 0.5) < 1e-12
    p = overall["observed_not_fully_recovered"]
    assert abs(overall["observed_se"] - (p * (1 - p) / 400) ** 0.5) < 1e-12


def _fairness_by_groupby(loans, strategies):
    """The straightforward version (a pandas groupby, one sub-frame per group): the reference
    the count-and-sum implementation must match."""
    from loan_pipeline.core.monitoring import STRATEGY_COLUMNS

    df = strategies[["Borrower_ID", "risk_score", "recovery_strategy"]].merge(
        loans[["Borrower_ID", "Gender", "Age", "Recovery_Status"]], on="Borrower_ID", how="left"
    )
    df["outcome"] = np.where(
        df["Recovery_Status"].isna(),
        np.nan,
        (df["Recovery_Status"] != "Fully Recovered").astype(float),
    )
    df["age_band"] = age_band(df["Age"])

    def summarise(frame):
        row = {"borrowers": len(frame)}
        shares = frame["recovery_strategy"].value_counts(normalize=True)
        for strategy, column in STRATEGY_COLUMNS.items():
            row[column] = float(shares.get(strategy, 0.0))
        row["mean_score"] = float(frame["risk_score"].mean())
        row["resolved"] = int(frame["outcome"].notna().sum())
        row["observed_not_fully_recovered"] = (
            float(frame["outcome"].mean()) if row["resolved"] else np.nan
        )
        return row

    rows = [{"group_type": "all", "group": "all borrowers", **summarise(df)}]
    for group_type in ("Gender", "age_band"):
        for group, frame in df.groupby(group_type, sort=True, observed=True):
            rows.append({"group_type": group_type, "group": str(group), **summarise(frame)})
    return pd.DataFrame(rows)


def test_fairness_counts_match_a_groupby_on_messy_data():
    loans, strategies = _book(n=3000, seed=3)
    rng = np.random.default_rng(3)
    loans["Gender"] = loans["Gender"].astype("string[pyarrow]")
    loans.loc[rng.choice(3000, 40, replace=False), "Gender"] = "Other"
    loans.loc[rng.choice(3000, 30, replace=False), "Gender"] = None
    loans.loc[rng.choice(3000, 25, replace=False), "Age"] = 70  # a fourth band
    loans.loc[rng.choice(3000, 300, replace=False), "Recovery_Status"] = None  # open loans
    chosen = rng.choice([STRATEGY_LEGAL, STRATEGY_REMINDERS, "Settlement Offer"], 3000)
    strategies["recovery_strategy"] = pd.array(chosen, dtype="string[pyarrow]")
    strategies.loc[rng.choice(3000, 50, replace=False), "risk_score"] = np.nan
    strategies = strategies.sample(frac=1.0, random_state=0)  # ids not in the book's order

    got = fairness_table(loans, strategies)
    want = _fairness_by_groupby(loans, strategies)
    assert got["group"].tolist() == want["group"].tolist()
    assert got["group_type"].tolist() == want["group_type"].tolist()
    for column in want.columns.drop(["group_type", "group"]):
        np.testing.assert_allclose(
            got[column].to_numpy(float), want[column].to_numpy(float), rtol=1e-12, err_msg=column
        )
