"""Segments and risk scores a credit analyst can trust.

Pipeline-level tests: every test reads real in-process materializations of the asset graph on
generated loan books (``loan_pipeline.core.generator``) whose planted relation is documented, so
what the pipeline should find is known in advance.

Several tests share a run through module-scoped fixtures. Runs that need "the previous run" start
from a copy of an earlier run's storage folder, so no fixture overwrites another one's outputs.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from loan_pipeline.core.generator import generate_loan_book, write_loan_book
from loan_pipeline.core.validation import reason_kinds
from loan_pipeline.domain import CLUSTER_FEATURES, NOTEBOOK_FEATURES, STRATEGIES
from loan_pipeline.schemas import MONEY_COLUMNS, PERCENT_COLUMNS
from loan_pipeline_tests.conftest import (
    PROJECT_ROOT,
    SAMPLE_CSV,
    PipelineRun,
    require_reference,
    run_pipeline,
)
from loan_pipeline_tests.planted import is_planted

ROWS = 3_000
SEED = 11
NEW_ROWS = 30  # 1% of ROWS

POLICY_MODEL = "score bands"
POLICY_FALLBACK = "rules-based fallback"
GATE_CHECK = "model_beats_base_rate"
SIGN_CHECK = "coefficient_signs_agree_with_data"
STABILITY_CHECK = "chosen_k_is_stable"
PSI_CHECK = "population_is_stable"
FAIRNESS_CHECK = "no_unexplained_strategy_gap"
OUTCOME_SHARE_COLUMNS = ["share_fully_recovered", "share_partially_recovered", "share_written_off"]
STRATEGY_SHARE_COLUMNS = ["share_legal", "share_settlement", "share_reminders"]

# Columns the risk model must never see: the outcome, outcome-side columns, protected
# characteristics and identifiers.
NEVER_INPUTS = [
    "Recovery_Status",
    "Collection_Attempts",
    "Collection_Method",
    "Legal_Action_Taken",
    "Age",
    "Gender",
    "Borrower_ID",
    "Loan_ID",
]


# --- helpers ------------------------------------------------------------------------------------


def checks(run: PipelineRun) -> dict:
    """Check name -> its evaluation (AssetCheckEvaluation) in this run."""
    return {
        e.event_specific_data.check_name: e.event_specific_data
        for e in run.result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }


def meta(run: PipelineRun, asset: str) -> dict:
    """Asset -> {metadata key: plain value} of its materialization in this run."""
    return {k: v.value for k, v in run.materialized()[asset].items()}


def succeeded(run: PipelineRun) -> PipelineRun:
    failures = [
        (e.step_key, e.step_failure_data.error.message if e.step_failure_data.error else None)
        for e in run.result.get_step_failure_events()
    ]
    assert run.result.success, f"pipeline run failed: {failures}"
    return run


def by_borrower(df: pd.DataFrame) -> pd.DataFrame:
    return df.sort_values("Borrower_ID", ignore_index=True)


def continue_from(previous: PipelineRun, storage: Path) -> Path:
    """A copy of ``previous``'s storage folder, for a run that follows it."""
    shutil.copytree(previous.storage, storage, symlinks=True)
    return storage


def write_frame(df: pd.DataFrame, path: Path) -> Path:
    df.to_csv(path, index=False)  # NaN Recovery_Status -> blank field, as the generator writes
    return path


# --- shared runs ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def books(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("books")


@pytest.fixture(scope="module")
def signal_csv(books) -> Path:
    return write_loan_book(books / "signal.csv", ROWS, seed=SEED, signal=1.0, open_fraction=0.05)


@pytest.fixture(scope="module")
def signal_run(signal_csv, tmp_path_factory) -> PipelineRun:
    """First run on a book with the planted signal and 5% open loans (fresh storage)."""
    return succeeded(run_pipeline(signal_csv, tmp_path_factory.mktemp("trust") / "first"))


@pytest.fixture(scope="module")
def rerun(signal_run, signal_csv, tmp_path_factory) -> PipelineRun:
    """The same book again, after ``signal_run`` (its storage: stored model, tables, profile)."""
    storage = continue_from(signal_run, tmp_path_factory.mktemp("trust") / "rerun")
    return succeeded(run_pipeline(signal_csv, storage))


@pytest.fixture(scope="module")
def grown_book(signal_csv, books) -> tuple[Path, list[str]]:
    """The signal book plus NEW_ROWS borrowers of another seed under unused ids."""
    book = pd.read_csv(signal_csv)
    extra = generate_loan_book(NEW_ROWS, seed=SEED + 1000, signal=1.0, open_fraction=0.05)
    numbers = range(ROWS + 1, ROWS + NEW_ROWS + 1)
    extra["Borrower_ID"] = [f"BRW_{i}" for i in numbers]
    extra["Loan_ID"] = [f"LN_{i}" for i in numbers]
    assert not set(extra["Borrower_ID"]) & set(book["Borrower_ID"])
    assert not set(extra["Loan_ID"]) & set(book["Loan_ID"])
    grown = pd.concat([book, extra[book.columns]], ignore_index=True)
    return write_frame(grown, books / "grown.csv"), extra["Borrower_ID"].tolist()


@pytest.fixture(scope="module")
def grown_run(signal_run, grown_book, tmp_path_factory) -> PipelineRun:
    storage = continue_from(signal_run, tmp_path_factory.mktemp("trust") / "grown")
    return succeeded(run_pipeline(grown_book[0], storage))


@pytest.fixture(scope="module")
def shifted_run(rerun, books, tmp_path_factory) -> PipelineRun:
    """After the same book twice: a book whose Days_Past_Due moved up by 60 days (max 180)."""
    book = generate_loan_book(ROWS, seed=SEED, signal=1.0, open_fraction=0.05)
    book["Days_Past_Due"] = (book["Days_Past_Due"] + 60).clip(upper=180)
    csv = write_frame(book, books / "shifted.csv")
    storage = continue_from(rerun, tmp_path_factory.mktemp("trust") / "shifted")
    return run_pipeline(csv, storage)  # success is asserted by the test


@pytest.fixture(scope="module")
def no_signal_run(books, tmp_path_factory) -> PipelineRun:
    csv = write_loan_book(books / "no_signal.csv", ROWS, seed=SEED + 1, signal=0.0)
    return succeeded(run_pipeline(csv, tmp_path_factory.mktemp("trust") / "no_signal"))


# --- 1. segment ids stable on the same data -------------------------------------------------------


def test_segments_are_identical_when_the_same_book_runs_again(signal_run, rerun):
    first = by_borrower(signal_run.table("borrower_segments"))
    second = by_borrower(rerun.table("borrower_segments"))
    pd.testing.assert_frame_equal(second, first)  # ids and names

    # the second run did match its segments to the first run's stored model ...
    assert meta(signal_run, "cluster_model")["matched_to_last_run"] == {}
    matched = meta(rerun, "cluster_model")["matched_to_last_run"]
    assert set(matched) == set(first["segment_name"])
    assert all(d < 1e-6 for d in matched.values()), matched
    # ... and says nobody moved
    segments_meta = meta(rerun, "borrower_segments")
    assert segments_meta["changed_segment_since_last_run"] == 0
    assert segments_meta["borrowers_in_both_runs"] == ROWS
    assert segments_meta["new_borrowers"] == 0
    assert "changed_segment_since_last_run" not in meta(signal_run, "borrower_segments")


# --- 2. segment ids stable when 1% new borrowers arrive -------------------------------------------


def test_segments_survive_one_percent_new_borrowers(signal_run, grown_run, grown_book):
    _, new_ids = grown_book
    before = signal_run.table("borrower_segments")
    after = grown_run.table("borrower_segments")
    assert len(after) == ROWS + NEW_ROWS
    assert set(after["Borrower_ID"]) - set(before["Borrower_ID"]) == set(new_ids)

    both = before.merge(after, on="Borrower_ID", suffixes=("_before", "_after"))
    assert len(both) == ROWS
    kept = (both["segment_id_before"] == both["segment_id_after"]).mean()
    assert kept >= 0.99, f"only {kept:.1%} of returning borrowers kept their segment id"

    names_before = dict(zip(before["segment_id"], before["segment_name"], strict=True))
    names_after = dict(zip(after["segment_id"], after["segment_name"], strict=True))
    matched = meta(grown_run, "cluster_model")["matched_to_last_run"]
    assert matched, "the run on the grown book was not matched to the stored model"
    common = set(names_before) & set(names_after)
    assert common, (names_before, names_after)
    for seg in common:
        assert names_after[seg] == names_before[seg], (seg, names_before, names_after)

    segments_meta = meta(grown_run, "borrower_segments")
    assert segments_meta["new_borrowers"] == NEW_ROWS
    assert segments_meta["borrowers_in_both_runs"] == ROWS
    assert segments_meta["changed_segment_since_last_run"] == int(
        (both["segment_id_before"] != both["segment_id_after"]).sum()
    )


# --- 3. the planted signal is found, and used -----------------------------------------------------


def test_planted_signal_is_found_and_drives_the_strategies(signal_run):
    gate = checks(signal_run)[GATE_CHECK]
    assert gate.passed is True

    strategies = signal_run.table("recovery_strategies")
    assert len(strategies) == ROWS
    assert set(strategies["policy"]) == {POLICY_MODEL}

    risk = meta(signal_run, "risk_model")
    assert risk["model_roc_auc"] > 0.75, risk["model_roc_auc"]
    assert risk["model_roc_auc"] > risk["days_past_due_only_roc_auc"]
    assert risk["model_brier"] < risk["base_rate_brier"]

    loans = signal_run.table("validated_loans")[["Borrower_ID", "Recovery_Status"]]
    scores = signal_run.table("risk_scores").merge(loans, on="Borrower_ID", validate="one_to_one")
    assert len(scores) == ROWS
    is_open = scores["Recovery_Status"].isna()
    assert 0 < is_open.sum() < ROWS  # open_fraction=0.05 gave some open loans
    assert (scores.loc[is_open, "score_source"] == "open_loan").all()
    assert scores["not_fully_recovered"].dtype == "boolean"  # yes/no, empty when open
    assert scores.loc[is_open, "not_fully_recovered"].isna().all()
    resolved = scores[~is_open]
    assert (resolved["score_source"] == "out_of_fold").all()
    expected = resolved["Recovery_Status"] != "Fully Recovered"
    assert (resolved["not_fully_recovered"] == expected).all()

    top = reason_kinds(scores["reason_1"]).head(3)
    assert all(is_planted(kind) for kind in top.index), top.to_dict()


def test_the_validation_report_and_right_signed_reasons_reach_the_ui(signal_run):
    signs = checks(signal_run)[SIGN_CHECK]
    assert signs.passed is True and signs.severity.value == "ERROR"
    risk = meta(signal_run, "risk_model")
    assert risk["gini"] == pytest.approx(2 * risk["model_roc_auc"] - 1)
    assert risk["roc_auc_ci_low"] < risk["model_roc_auc"] < risk["roc_auc_ci_high"]
    assert 0.2 < risk["ks"] < 0.8
    assert abs(risk["calibration_slope"] - 1) < 0.2
    # the rest of the figures, of both targets, are in one table (the base rate ranks nobody)
    (base_rate_auc,) = [r for r in risk["metrics"].splitlines() if "| base_rate_roc_auc " in r]
    assert [c.strip() for c in base_rate_auc.split("|")[2:4]] == ["0.500", "0.500"]
    for table in ("gains_by_decile", "coefficient_signs", "fallback_evidence"):
        assert "|" in risk[table], table
    scores = meta(signal_run, "risk_scores")
    assert scores["reasons_given"] > ROWS and scores["wrong_signed_share"] < 0.01
    assert all(is_planted(kind) for kind in list(scores["top_reasons"])[:3])
    report = signal_run.table("fairness_report")
    assert report["roc_auc"].between(0.6, 1).all()  # each group is ranked by the model
    card = (signal_run.storage / "reports" / "model_card.md").read_text()
    for section in (
        "## Validation report",
        "Gains by decile",
        "## Coefficients against the data",
        "## The fallback policy's evidence",
    ):
        assert section in card, section


# --- 4. no signal: the gate fails and the fallback policy is used ---------------------------------


def test_no_signal_falls_back_to_the_rules_based_policy(no_signal_run):
    gate = checks(no_signal_run)[GATE_CHECK]
    assert gate.passed is False
    assert meta(no_signal_run, "risk_model")["brier_skill_vs_base_rate"] < 0.01

    strategies = no_signal_run.table("recovery_strategies")
    assert len(strategies) == ROWS
    assert set(strategies["policy"]) == {POLICY_FALLBACK}
    strategy_meta = meta(no_signal_run, "recovery_strategies")
    assert strategy_meta["policy"] == POLICY_FALLBACK
    assert strategy_meta["policy_note"].startswith(
        "**The risk model does not beat the base rate: strategies come from the rules-based "
        "fallback policy on arrears**"
    )

    card = (no_signal_run.storage / "reports" / "model_card.md").read_text()
    assert "below the bar" in card
    assert "the model is used" not in card


# --- 5. outcome-side columns never leak into the model --------------------------------------------


def test_outcome_side_columns_do_not_leak_into_the_model(books, tmp_path_factory):
    book = generate_loan_book(ROWS, seed=SEED + 2, signal=0.0)
    written_off = book["Recovery_Status"] == "Written Off"
    not_fully = book["Recovery_Status"] != "Fully Recovered"
    book["Collection_Method"] = np.where(written_off, "Legal Notice", "Calls")
    book["Legal_Action_Taken"] = np.where(written_off, "Yes", "No")
    book["Collection_Attempts"] = np.where(not_fully, 10, 0)
    # the leak is real: each of these columns alone gives the outcome away
    assert ((book["Legal_Action_Taken"] == "Yes") == written_off).all()
    assert ((book["Collection_Attempts"] == 10) == not_fully).all()
    csv = write_frame(book, books / "leaky.csv")
    run = succeeded(run_pipeline(csv, tmp_path_factory.mktemp("trust") / "leaky"))

    assert checks(run)[GATE_CHECK].passed is False
    risk = meta(run, "risk_model")
    assert risk["brier_skill_vs_base_rate"] < 0.01
    assert risk["model_roc_auc"] < 0.6, risk["model_roc_auc"]  # a leak would give ~1.0
    features = list(risk["features"])
    assert features, "risk_model metadata lists no features"
    assert not set(NEVER_INPUTS) & set(features), features
    assert set(NEVER_INPUTS) <= set(risk["excluded_columns"])
    assert set(run.table("recovery_strategies")["policy"]) == {POLICY_FALLBACK}


# --- 6. population stability ----------------------------------------------------------------------


def test_population_stability_first_run_same_book_and_shifted_book(signal_run, rerun, shifted_run):
    # first run: nothing to compare with; it becomes the baseline
    first = signal_run.table("population_stability")
    assert (first["status_vs_previous"] == "no previous run").all()
    assert (first["status_vs_baseline"] == "this run is the baseline").all()
    assert first[["psi_vs_baseline", "psi_vs_previous"]].isna().all().all()
    first_meta = meta(signal_run, "population_stability")
    assert first_meta["compared_with_previous_run"] is False
    assert first_meta["this_run_is_the_baseline"] is True
    assert checks(signal_run)[PSI_CHECK].passed is True

    # the same book again: stable against the previous run and the baseline (the first run)
    again = rerun.table("population_stability")
    assert meta(rerun, "population_stability")["compared_with_previous_run"] is True
    assert meta(rerun, "population_stability")["baseline_snapshot"] == signal_run.result.run_id
    assert {"Days_Past_Due", "risk_score", "frozen_model_score"} <= set(again["column"])
    for against in ("baseline", "previous"):
        assert again[f"psi_vs_{against}"].notna().all(), again
        assert (again[f"psi_vs_{against}"] < 0.01).all(), again
        assert (again[f"status_vs_{against}"] == "stable").all(), again
    assert checks(rerun)[PSI_CHECK].passed is True

    # Days_Past_Due shifted by 60 days: the WARN check fails, the run still succeeds
    succeeded(shifted_run)
    check = checks(shifted_run)[PSI_CHECK]
    assert check.passed is False
    assert check.severity.value == "WARN"
    shifted = shifted_run.table("population_stability").set_index("column")
    assert shifted.loc["Days_Past_Due", "psi_vs_baseline"] > 0.25, shifted
    assert shifted.loc["Days_Past_Due", "status_vs_baseline"] == "significant shift"
    assert "Days_Past_Due" in check.metadata["shifted"].value
    # the reason the run summary prints: what shifted, by how much
    psi = shifted.loc["Days_Past_Due", "psi_vs_baseline"]
    assert "shifted beyond PSI 0.25: " in check.description
    assert f"Days_Past_Due {psi:.3f}" in check.description
    assert signal_run.result.run_id in check.metadata["against"].value
    assert "recovery_strategies" in shifted_run.materialized()  # downstream still ran


# --- 7. k: configured, or chosen from the data ----------------------------------------------------


def test_configured_k_is_used(books, signal_csv, tmp_path_factory):
    run = succeeded(
        run_pipeline(
            signal_csv,
            tmp_path_factory.mktemp("trust") / "k3",
            run_config={"ops": {"cluster_model": {"config": {"k": 3}}}},
        )
    )
    cluster = meta(run, "cluster_model")
    assert cluster["k"] == 3
    assert cluster["k_chosen_by"] == "config"
    assert run.table("borrower_segments")["segment_id"].nunique() == 3
    assert len(run.table("segment_profiles")) == 3


def test_default_k_is_chosen_from_the_data(signal_run):
    cluster = meta(signal_run, "cluster_model")
    assert 2 <= cluster["k"] <= 8
    assert cluster["k_chosen_by"].startswith("data")
    assert cluster["k"] == len(signal_run.table("segment_profiles"))
    assert cluster["k"] == signal_run.table("borrower_segments")["segment_id"].nunique()
    chart = signal_run.storage / "charts" / "chart_k_selection.png"
    data = chart.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    Image.open(io.BytesIO(data)).load()


# --- 8. an unstable k is flagged (WARN), not fatal ------------------------------------------------


def test_unstable_k_on_the_reference_warns_and_the_run_goes_on(tmp_path):
    csv = require_reference()
    run = succeeded(
        run_pipeline(
            csv, tmp_path / "storage", run_config={"ops": {"cluster_model": {"config": {"k": 6}}}}
        )
    )
    check = checks(run)[STABILITY_CHECK]
    assert check.passed is False
    assert check.severity.value == "WARN"
    assert check.metadata["k"].value == 6
    assert check.metadata["prediction_strength"].value < check.metadata["threshold"].value == 0.8
    assert check.metadata["verdict"].value == (
        "no stable segmentation: k=6 set in config as a convenient split"
    )
    assert meta(run, "cluster_model")["k"] == 6
    assert "recovery_strategies" in run.materialized()


# --- 9. notebook method end to end ----------------------------------------------------------------


def test_notebook_method_end_to_end(signal_csv, tmp_path_factory):
    run = succeeded(
        run_pipeline(signal_csv, tmp_path_factory.mktemp("trust") / "notebook", method="notebook")
    )
    cluster = meta(run, "cluster_model")
    assert cluster["k"] == 4
    assert cluster["method"] == "notebook"
    assert list(meta(run, "scaled_features")["features"]) == NOTEBOOK_FEATURES
    sources = set(run.table("risk_scores")["score_source"])
    assert sources == {"train", "test"}
    strategies = run.table("recovery_strategies")
    assert len(strategies) == ROWS
    assert set(strategies["policy"]) == {POLICY_MODEL}
    card = (run.storage / "reports" / "model_card.md").read_text()
    assert "notebook method" in card


# --- 10. segment profiles add up ------------------------------------------------------------------


def test_segment_profiles_add_up(signal_run):
    profile = signal_run.table("segment_profiles").set_index("segment_id").sort_index()
    loans = signal_run.table("validated_loans")
    segments = signal_run.table("borrower_segments")
    assert profile["borrowers"].sum() == len(loans) == ROWS
    # shares are published to 3 decimals, money means to 2, means of counts to 1
    assert abs(profile["share_of_book"].sum() - 1.0) <= 0.0005 * len(profile)

    has_resolved = profile["borrowers"] > profile["open_loans"]
    assert has_resolved.all()
    sums = profile.loc[has_resolved, OUTCOME_SHARE_COLUMNS].sum(axis=1)
    np.testing.assert_allclose(sums, 1.0, rtol=0, atol=0.0015)

    joined = loans.merge(segments, on="Borrower_ID", validate="one_to_one")
    assert len(joined) == ROWS
    grouped = joined.groupby("segment_id")
    features = [f for f in CLUSTER_FEATURES if f in profile.columns]
    assert features == CLUSTER_FEATURES
    for feature in features:
        # money and the interest rate (% a year) to 2 decimals, counts and months to 1
        places = 2 if feature in MONEY_COLUMNS + PERCENT_COLUMNS else 1
        mean = grouped[feature].mean()
        assert (profile[feature] == profile[feature].round(places)).all(), feature
        np.testing.assert_allclose(profile[feature], mean, rtol=0, atol=0.5 * 10**-places + 1e-9)
    assert (profile["borrowers"] == grouped.size()).all()
    assert (
        profile["open_loans"] == grouped["Recovery_Status"].apply(lambda s: s.isna().sum())
    ).all()
    assert (profile["segment_name"] == grouped["segment_name"].first()).all()
    resolved = joined[joined["Recovery_Status"].notna()]
    written_off = resolved.groupby("segment_id")["Recovery_Status"].apply(
        lambda s: (s == "Written Off").mean()
    )
    np.testing.assert_allclose(profile["share_written_off"], written_off, rtol=0, atol=0.0005)


# --- 11. fairness report --------------------------------------------------------------------------


def test_fairness_report_covers_every_group(signal_run):
    report = signal_run.table("fairness_report")
    loans = signal_run.table("validated_loans")

    overall = report[report["group_type"] == "all"]
    assert len(overall) == 1
    assert overall["borrowers"].iloc[0] == ROWS
    genders = report[report["group_type"] == "Gender"]
    assert set(genders["group"]) == set(loans["Gender"])
    assert genders["borrowers"].sum() == ROWS
    bands = report[report["group_type"] == "age_band"]
    # the generator draws Age uniformly from 21-64: every band is present
    assert bands["group"].tolist() == ["18-29", "30-44", "45-59", "60 and over"]  # age order
    assert bands["borrowers"].sum() == ROWS

    np.testing.assert_allclose(report[STRATEGY_SHARE_COLUMNS].sum(axis=1), 1.0, atol=1e-9)
    assert len(STRATEGY_SHARE_COLUMNS) == len(STRATEGIES)

    check = checks(signal_run)[FAIRNESS_CHECK]
    assert check.severity.value == "WARN"


def test_the_fairness_check_says_which_groups_and_gaps_fail_it(tmp_path):
    """With no gap tolerated (max_gap 0, every group judged), the WARN check fails and its
    reason, what the run summary prints, names each flagged group with its unexplained gap."""
    run = succeeded(
        run_pipeline(
            SAMPLE_CSV,
            tmp_path / "storage",
            {"ops": {"fairness_report": {"config": {"max_gap": 0.0, "min_group": 1}}}},
        )
    )
    check = checks(run)[FAIRNESS_CHECK]
    report = run.table("fairness_report")
    flagged = report[(report["group_type"] != "all") & (report["unexplained_legal_gap"].abs() > 0)]
    assert not check.passed and len(flagged) > 0
    assert check.description.startswith(
        "legal action more often (or less) than the group's outcomes explain, beyond max_gap 0.00: "
    )
    for row in flagged.itertuples():
        assert f"{row.group_type} {row.group} {row.unexplained_legal_gap:+.3f}" in (
            check.description
        )


# --- 12. the model-card command -------------------------------------------------------------------


def test_model_card_command_copies_card_and_chart(signal_run, tmp_path):
    out = tmp_path / "card" / "card.md"
    env = {**os.environ, "LOAN_PIPELINE_STORAGE": str(signal_run.storage)}
    done = subprocess.run(
        [sys.executable, "-m", "loan_pipeline", "model-card", "--out", str(out)],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    card = out.read_text()
    for section in (
        "## Excluded columns, and why",
        "## Metrics on held-out folds",
        "## Fairness",
    ):
        assert section in card, section
    chart = out.parent / "model_card_calibration.png"
    assert (
        chart.read_bytes() == (signal_run.storage / "charts" / "chart_calibration.png").read_bytes()
    )
    assert "(model_card_calibration.png)" in card
    assert "../charts/chart_calibration.png" not in card
