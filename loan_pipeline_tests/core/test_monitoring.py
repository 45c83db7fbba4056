from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from loan_pipeline import settings
from loan_pipeline.core.monitoring import (
    FROZEN_SCORE,
    OWN_SCORE,
    age_band,
    baseline_record,
    distribution_profile,
    fairness_flags,
    fairness_table,
    frozen_pipeline,
    psi,
    psi_status,
    significant_shifts,
    stability_columns,
    stability_report,
    stability_table,
)
from loan_pipeline.domain import STRATEGY_LEGAL, STRATEGY_REMINDERS
from loan_pipeline_tests.defaults import config_kwargs

FAIRNESS = config_kwargs(fairness_flags, settings.FairnessConfig)


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
    assert fairness_flags(table, **FAIRNESS).empty


def test_harsher_treatment_without_worse_outcomes_is_flagged():
    loans, strategies = _book()
    women = loans["Gender"] == "Female"
    strategies.loc[women & (np.arange(len(loans)) % 2 == 0), "recovery_strategy"] = STRATEGY_LEGAL
    table = fairness_table(loans, strategies)
    flagged = fairness_flags(table, **FAIRNESS)
    assert ("Gender", "Female") in set(zip(flagged["group_type"], flagged["group"], strict=True))
    row = table[(table["group"] == "Female")].iloc[0]
    assert row["share_legal"] > 0.45 and abs(row["outcome_gap"]) < 0.05
    # legal action at random among women: their outcomes explain the book's rate, not theirs
    assert abs(row["expected_share_legal"] - table.iloc[0]["share_legal"]) < 0.02
    assert row["unexplained_legal_gap"] > 0.2


def test_treatment_in_line_with_outcomes_is_not_flagged_when_legal_action_is_rarer():
    """Legal action for one in five borrowers not fully recovered, whatever their group, and
    women twice as often not fully recovered: women get legal action more often, and their
    outcomes explain all of it. The gaps are on their own scales (legal: about 4 points;
    outcome: about 20 points), and the unexplained gap, on the legal-action rate's scale, is 0;
    subtracting the outcome gap from the legal gap, as the report once did, would call it a
    16-point gap and flag it."""
    loans, strategies = _book(n=4000, seed=5)
    women = (loans["Gender"] == "Female").to_numpy()
    k = np.arange(len(loans))
    bad = np.where(women, k % 5 < 4, k % 5 < 2)  # not fully recovered: 80 % of women, 40 % of men
    loans["Recovery_Status"] = np.where(bad, "Written Off", "Fully Recovered")
    legal = bad & (k // 5 % 5 == 0)  # 1 in 5 of them, in either group
    strategies.loc[legal, "recovery_strategy"] = STRATEGY_LEGAL
    table = fairness_table(loans, strategies).set_index("group")
    book = table.loc["all borrowers"]
    women_row = table.loc["Female"]
    assert women_row["legal_gap"] > 0.03 and women_row["outcome_gap"] > 0.15
    assert women_row["legal_gap"] - women_row["outcome_gap"] < -FAIRNESS["max_gap"]
    # 0 up to the draw: which borrowers got legal action is not exactly 1 in 5 in every group
    assert table["unexplained_legal_gap"].abs().max() < 0.03
    assert abs(book["unexplained_legal_gap"]) < 1e-12
    assert fairness_flags(table.reset_index(), **FAIRNESS).empty


def test_harsher_treatment_matched_by_outcomes_is_not_flagged():
    loans, strategies = _book()
    women = loans["Gender"] == "Female"
    loans.loc[women, "Recovery_Status"] = "Written Off"
    loans.loc[~women, "Recovery_Status"] = "Fully Recovered"
    strategies.loc[women, "recovery_strategy"] = STRATEGY_LEGAL
    assert fairness_flags(fairness_table(loans, strategies), **FAIRNESS).empty


def test_small_groups_are_shown_not_judged():
    loans, strategies = _book(n=40)
    strategies.loc[loans["Gender"] == "Female", "recovery_strategy"] = STRATEGY_LEGAL
    table = fairness_table(loans, strategies)
    genders = table[table["group_type"] == "Gender"]
    assert (genders["borrowers"] < FAIRNESS["min_group"]).all()
    assert not fairness_flags(
        table, **config_kwargs(fairness_flags, settings.FairnessConfig, min_group=1)
    ).empty  # the gap is there...
    assert fairness_flags(table, **FAIRNESS).empty  # ...but too few borrowers to judge


def test_age_bands():
    assert age_band(pd.Series([21, 29, 30, 44, 45, 59, 60, 64])).tolist() == [
        "18-29",
        "18-29",
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
        # the legal-action rate at the book's rate per outcome (open loans an outcome of their own)
        row["expected_share_legal"] = float(
            frame["outcome"].fillna(-1).map(legal_by_outcome).mean()
        )
        return row

    legal_by_outcome = (
        (df["recovery_strategy"] == STRATEGY_LEGAL).groupby(df["outcome"].fillna(-1)).mean()
    )
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
    # the age bands' labels sort in age order, as text too
    assert got["group"].tolist()[-4:] == ["18-29", "30-44", "45-59", "60 and over"]
    assert got["group_type"].tolist() == want["group_type"].tolist()
    for column in want.columns.drop(["group_type", "group"]):
        np.testing.assert_allclose(
            got[column].to_numpy(float), want[column].to_numpy(float), rtol=1e-12, err_msg=column
        )


# --- drift against a baseline and against the previous run -----------------------------------


def test_a_slow_drift_adds_up_against_the_baseline_not_against_the_previous_run():
    from loan_pipeline.core.generator import generate_loan_book

    days = generate_loan_book(20_000, seed=3)["Days_Past_Due"].astype(float)
    baseline = previous = None
    found = []
    for step in range(5):
        current = pd.DataFrame({"Days_Past_Due": (days * 1.1**step).round()})
        table, profile = stability_report(current, previous, baseline)
        row = table.iloc[0]
        found.append((row["psi_vs_previous"], row["psi_vs_baseline"]))
        if step == 0:
            assert row["status_vs_baseline"] == "this run is the baseline"
            assert row["status_vs_previous"] == "no previous run"
            baseline = profile
        else:
            assert row["psi_vs_previous"] < 0.10 and row["status_vs_previous"] == "stable"
        previous = json.loads(json.dumps(profile))  # as the profile file is read back
    vs_baseline = [b for _, b in found[1:]]
    assert vs_baseline == sorted(vs_baseline)
    assert found[1][1] == found[1][0]  # one step: the baseline is the previous run
    assert vs_baseline[-1] > 0.25, found
    assert psi_status(vs_baseline[-1]) == "significant shift"


def test_counted_once_in_both_references_bins_as_if_counted_in_each():
    rng = np.random.default_rng(5)
    earlier, before, now = (pd.Series(rng.lognormal(mu, 1.0, 5_000)) for mu in (0.0, 0.2, 0.3))
    baseline, previous = distribution_profile(earlier), distribution_profile(before)
    assert set(baseline["edges"]).isdisjoint(previous["edges"])  # bins of their own
    table = stability_table(now.to_frame("x"), {"x": previous}, {"x": baseline})
    assert table.loc[0, "psi_vs_baseline"] == pytest.approx(psi(baseline, now), rel=1e-12)
    assert table.loc[0, "psi_vs_previous"] == pytest.approx(psi(previous, now), rel=1e-12)
    assert table.loc[0, "psi_vs_baseline"] > table.loc[0, "psi_vs_previous"]


def test_psi_status_thresholds():
    moderate, significant = "moderate shift", "significant shift"
    expected = {0.0: "stable", 0.0999: "stable", 0.1: moderate, 0.25: moderate, 0.2501: significant}
    assert {value: psi_status(value) for value in expected} == expected


def test_a_models_score_is_compared_only_with_the_same_models_scores():
    rng = np.random.default_rng(1)
    score = pd.Series(rng.uniform(size=2_000))
    profile = distribution_profile(score)
    current = pd.DataFrame({FROZEN_SCORE: score, "risk_score": score})
    by = {"a": {**profile, "model_sha256": "a"}, "b": {**profile, "model_sha256": "b"}}
    reference = {FROZEN_SCORE: by["a"], "risk_score": profile}

    same = stability_table(current, reference, reference, {FROZEN_SCORE: "a"})
    assert same.set_index("column").loc[FROZEN_SCORE, "psi_vs_previous"] == 0.0
    other = stability_table(
        current, {**reference, FROZEN_SCORE: by["b"]}, reference, {FROZEN_SCORE: "a"}
    )
    other = other.set_index("column")
    assert other.loc[FROZEN_SCORE, "status_vs_previous"] == "previous run used another frozen model"
    assert np.isnan(other.loc[FROZEN_SCORE, "psi_vs_previous"])
    assert other.loc[FROZEN_SCORE, "status_vs_baseline"] == "stable"
    # the refitted model's score is compared whatever model made it
    assert other.loc["risk_score", "status_vs_previous"] == "stable"
    none = stability_table(current, reference, reference, {FROZEN_SCORE: None}).set_index("column")
    assert none.loc[FROZEN_SCORE, "status_vs_baseline"] == "no frozen model"
    assert none.loc[FROZEN_SCORE, "status_vs_previous"] == "no frozen model"
    assert (none["measure"] == "PSI").all()


def test_significant_shifts_judge_the_inputs_and_the_frozen_score_not_the_refitted_one():
    table = pd.DataFrame(
        {
            "column": ["Days_Past_Due", "Loan_Amount", "risk_score", FROZEN_SCORE],
            "psi_vs_baseline": [0.31, 0.25, 0.9, 0.4],
            "psi_vs_previous": [0.05, np.nan, 0.9, 0.01],
        }
    )
    assert significant_shifts(table, "baseline") == {"Days_Past_Due": 0.31, FROZEN_SCORE: 0.4}
    assert significant_shifts(table, "previous") == {}


def test_a_runs_profile_becomes_a_baseline_with_its_own_models_scores():
    rng = np.random.default_rng(2)
    current = pd.DataFrame({"x": rng.normal(size=1_000), "risk_score": rng.uniform(size=1_000)})
    current[FROZEN_SCORE] = current["risk_score"] ** 2  # another baseline's model
    current[OWN_SCORE] = current["risk_score"] ** 0.5  # this run's model
    _, profile = stability_report(current, digests={FROZEN_SCORE: "old", OWN_SCORE: "mine"})
    assert OWN_SCORE not in set(stability_table(current)["column"])  # profiled, not reported
    record = baseline_record("run-1", profile, "mine", True, "run-2", "pinned (run-1)", 1.0)
    assert record["profiles"][FROZEN_SCORE] == profile[OWN_SCORE]
    assert record["profiles"][FROZEN_SCORE]["model_sha256"] == "mine"
    assert OWN_SCORE not in record["profiles"] and record["profiles"]["x"] == profile["x"]
    assert (record["snapshot"], record["pinned_by"], record["model_sha256"]) == (
        "run-1",
        "run-2",
        "mine",
    )
    with pytest.raises(ValueError, match="come from different runs"):
        baseline_record("run-1", profile, "another", True, "run-2", "pinned", 1.0)
    without = {c: p for c, p in profile.items() if c != OWN_SCORE}
    with pytest.raises(ValueError, match="made before baselines were kept"):
        baseline_record("run-1", without, "mine", True, "run-2", "pinned", 1.0)
    # a model with nothing to score with (the notebook method's) needs no such profile
    assert baseline_record("run-1", without, "nb", False, "run-2", "pinned", 1.0)["profiles"]


def test_a_pipelines_scores_are_each_rows_own(monkeypatch):
    from loan_pipeline.core import model_inputs
    from loan_pipeline.core.generator import generate_loan_book
    from loan_pipeline.core.logistic import pipeline_scores, probability
    from loan_pipeline.core.model_inputs import risk_inputs
    from loan_pipeline.core.risk import RiskModel
    from loan_pipeline.core.risk_methods import fit_recommended_model
    from loan_pipeline.core.scoring import scores_of

    loans = generate_loan_book(600, seed=4)
    model = fit_recommended_model(
        loans, **config_kwargs(fit_recommended_model, settings.RiskConfig, folds=2)
    )
    pipeline = frozen_pipeline(model)
    (whole,) = pipeline_scores([pipeline], loans)
    np.testing.assert_array_equal(whole, probability(pipeline, risk_inputs(loans)))
    monkeypatch.setattr(model_inputs, "SCORE_CHUNK", 128)  # in chunks, side by side: the same bits
    again, other = pipeline_scores([pipeline, model.secondary.estimator], loans)
    np.testing.assert_array_equal(again, whole)
    np.testing.assert_array_equal(other, probability(model.secondary.estimator, risk_inputs(loans)))
    assert pipeline_scores([pipeline], loans.iloc[:0])[0].shape == (0,)
    columns = stability_columns(loans, scores_of(loans, model), {FROZEN_SCORE: pipeline})
    np.testing.assert_array_equal(columns[FROZEN_SCORE].to_numpy(), whole)
    assert frozen_pipeline(RiskModel("notebook", None, [], "")) is None
