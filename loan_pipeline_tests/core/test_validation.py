"""The validator's figures and reasons a borrower could be told, on generated books."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from scipy.stats import chi2, ks_2samp
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from loan_pipeline import settings
from loan_pipeline.assets.risk import fallback_thresholds
from loan_pipeline.core.evaluation import SCORE_BINS, binned_calibration
from loan_pipeline.core.generator import generate_loan_book
from loan_pipeline.core.model_inputs import (
    LOG_COLUMNS,
    RISK_ENGINEERED,
    one_hot_columns,
    risk_inputs,
)
from loan_pipeline.core.monitoring import fairness_table
from loan_pipeline.core.risk_methods import fit_recommended_model
from loan_pipeline.core.scoring import score_borrowers
from loan_pipeline.core.signed import SignConstrainedLogisticRegression
from loan_pipeline.core.strategy import strategy_table
from loan_pipeline.core.validation import (
    arrears_evidence,
    binned_auc,
    bootstrap_auc,
    calibration_fit,
    coefficient_signs,
    gains_table,
    hosmer_lemeshow,
    ks_statistic,
    reason_kinds,
    validation_metrics,
    wrong_signed_reasons,
)
from loan_pipeline.domain import INPUT_LABELS, POLICY_MODEL, RISK_NUMERIC
from loan_pipeline_tests.defaults import config_kwargs


@pytest.fixture(scope="module")
def book():
    # the generator's collateral is 0 for every Personal loan: log collateral and the
    # Personal-loan flag are nearly the same input (correlation about -0.99)
    return generate_loan_book(20_000, seed=11, signal=1.0, open_fraction=0.05)


@pytest.fixture(scope="module")
def model(book):
    return fit_recommended_model(book, **config_kwargs(fit_recommended_model, settings.RiskConfig))


@pytest.fixture(scope="module")
def scores(book, model):
    return score_borrowers(model, book)


def _binned(y: np.ndarray, p: np.ndarray):
    """Loans counted per score bin and class, and the scores summed per bin, as core.evaluation does."""
    bins = np.minimum((p * SCORE_BINS).astype("int64"), SCORE_BINS - 1)
    counts = np.bincount(y * SCORE_BINS + bins, minlength=2 * SCORE_BINS).reshape(2, -1)
    return counts, np.bincount(bins, weights=p, minlength=SCORE_BINS)


def test_binned_figures_equal_the_per_loan_ones():
    rng = np.random.default_rng(3)
    p = rng.beta(2, 3, 30_000)
    y = (rng.random(30_000) < np.clip(p * 1.1 - 0.02, 0, 1)).astype("int64")  # miscalibrated
    counts, sums = _binned(y, p)
    assert ks_statistic(counts) == pytest.approx(ks_2samp(p[y == 1], p[y == 0]).statistic, abs=1e-3)
    logit = np.log(p / (1 - p))
    fitted = LogisticRegression(C=np.inf).fit(logit[:, None], y)
    cal = calibration_fit(counts, sums)
    assert cal["calibration_slope"] == pytest.approx(fitted.coef_[0, 0], abs=2e-3)
    # the intercept with the slope fixed at 1: the offset model, solved directly
    from scipy.optimize import brentq

    def score(a):
        return np.sum(y - 1 / (1 + np.exp(-(a + logit))))

    assert cal["calibration_intercept"] == pytest.approx(brentq(score, -5, 5), abs=2e-3)

    table = binned_calibration(counts, sums)
    hl = hosmer_lemeshow(table)
    deciles = pd.qcut(pd.Series(p).rank(method="first"), 10, labels=False)
    frame = pd.DataFrame({"d": deciles, "p": p, "y": y}).groupby("d").agg(["sum", "mean", "size"])
    expected, n = frame[("p", "sum")], frame[("p", "size")]
    direct = (((frame[("y", "sum")] - expected) ** 2) / (expected * (1 - expected / n))).sum()
    assert hl["hosmer_lemeshow"] == pytest.approx(direct, rel=0.02)
    assert hl["hosmer_lemeshow_p"] == pytest.approx(chi2.sf(hl["hosmer_lemeshow"], 8))
    assert hl["hosmer_lemeshow_p"] < 0.01  # the planted miscalibration is found

    figures = validation_metrics(counts, sums, table, replicates=300)
    auc = roc_auc_score(y, p)
    assert figures["gini"] == pytest.approx(2 * auc - 1, abs=2e-3)
    assert figures["roc_auc_ci_low"] < auc < figures["roc_auc_ci_high"]
    # the interval's width is about 4 standard errors of AUC (Hanley-McNeil's ~0.003 here)
    assert 0.005 < figures["roc_auc_ci_high"] - figures["roc_auc_ci_low"] < 0.03

    gains = gains_table(counts, sums)
    assert list(gains["decile"]) == list(range(1, 11))
    assert gains["bad_rate"].is_monotonic_decreasing
    assert gains["cumulative_bads_captured"].iloc[-1] == pytest.approx(1.0)
    assert gains["ks"].max() == pytest.approx(figures["ks"], abs=0.02)
    assert gains["borrowers"].sum() == len(p)


def test_the_base_rate_has_no_ranking_and_the_report_is_in_the_metrics(model):
    m = model.metrics
    assert m["base_rate_roc_auc"] == pytest.approx(0.5)
    assert m["roc_auc_ci_low"] < m["model_roc_auc"]
    assert m["model_roc_auc"] < m["roc_auc_ci_high"]
    assert m["gini"] == pytest.approx(2 * m["model_roc_auc"] - 1, abs=1e-6)
    assert 0.3 < m["ks"] < 0.7
    assert 0.9 < m["calibration_slope"] < 1.1  # maximum likelihood: calibrated by construction
    assert abs(m["calibration_intercept"]) < 0.05
    assert model.primary.gains is not None and len(model.primary.gains) == 10


def _collinear_pipeline(book):
    """The model as it was: every column as given plus the ratios, categories one-hot, no sign
    constraints: the collinear inputs share their effect arbitrarily."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    resolved = book[book["Recovery_Status"].notna()]
    X = risk_inputs(resolved)
    y = (resolved["Recovery_Status"] != "Fully Recovered").to_numpy(dtype="int64")
    numeric = RISK_NUMERIC + RISK_ENGINEERED
    logged = [c for c in numeric if c in LOG_COLUMNS]
    prepare = ColumnTransformer(
        [
            (
                "log",
                Pipeline(
                    [
                        ("l", FunctionTransformer(np.log1p, feature_names_out="one-to-one")),
                        ("s", StandardScaler()),
                    ]
                ),
                logged,
            ),
            ("num", StandardScaler(), [c for c in numeric if c not in logged]),
            ("cat", "passthrough", one_hot_columns()),
        ],
        verbose_feature_names_out=False,
    )
    pipeline = Pipeline(
        [("prepare", prepare), ("model", SignConstrainedLogisticRegression(constrain=False))]
    )
    return pipeline.fit(X, y), X, y


def test_collinear_inputs_contradict_the_data_unless_merged_and_constrained(book, model, scores):
    old, X, y = _collinear_pipeline(book)
    signs = coefficient_signs(old, X, y)
    # the unconstrained, collinear fit gives some input the opposite of its own relation
    assert not signs["agrees"].all(), signs
    prepared = old.named_steps["prepare"].transform(X)
    vif = np.diag(np.linalg.inv(np.corrcoef(prepared[:, np.std(prepared, axis=0) > 0].T)))
    assert vif.max() > 50  # collateral and the loan types

    # the model as built: merged inputs, every coefficient with its input's own sign
    assert model.primary.signs["agrees"].all()
    assert model.signs_agree and model.usable
    resolved = book[book["Recovery_Status"].notna()]
    mine = model.primary.estimator.named_steps["prepare"].transform(risk_inputs(resolved))
    mine = mine[:, np.std(mine, axis=0) > 0]
    assert np.diag(np.linalg.inv(np.corrcoef(mine.T))).max() < 10
    checked = wrong_signed_reasons(book, scores, risk_inputs(book, one_hot=False))
    assert checked["reasons_given"] > len(book)  # most borrowers get three
    assert checked["wrong_signed_share"] < 0.01, checked


def test_a_contradicting_coefficient_fails_the_model(book, model):
    old, X, y = _collinear_pipeline(book)
    contradicting = coefficient_signs(old, X, y).query("~agrees")
    assert len(contradicting)
    for row in contradicting.itertuples():
        assert np.sign(row.coefficient) == -row.direction != 0
    # a model with such a coefficient may not set the strategies
    failed = dataclasses.replace(
        model, primary=dataclasses.replace(model.primary, signs=coefficient_signs(old, X, y))
    )
    assert failed.beats_baseline and not failed.signs_agree and not failed.usable
    assert list(failed.contradicting_signs()) == contradicting["input"].tolist()
    assert model.contradicting_signs() == {}


def test_reasons_are_in_words_with_values_and_framed_by_the_score(book, model, scores):
    base = model.metrics["positive_rate"]
    reasons = scores[["reason_1", "reason_2", "reason_3"]]
    text = reasons.stack().astype(str)
    labels = tuple(label + ": " for label, _ in INPUT_LABELS.values())
    assert text.str.startswith(labels).all()
    assert not text.str.contains("_").any()  # no column names
    low = scores["risk_score"] < base
    lowered = reasons[low].stack().astype(str)
    raised = reasons[~low].stack().astype(str)
    assert lowered.str.endswith("lowers risk)").all()
    assert not raised.str.contains("lowers risk").any()
    assert scores.loc[~low, "reason_1"].notna().all()
    # the value shown is the borrower's own
    days = scores["reason_1"].str.extract(r"^Days past due: (\d+) ")[0].dropna().astype(int)
    assert (days == book.loc[days.index, "Days_Past_Due"]).all()
    assert len(days) > 100
    kinds = reason_kinds(scores["reason_1"])
    assert "Days past due (high)" in kinds.index


def test_each_group_has_its_own_auc_and_calibration(book, model, scores):
    table = strategy_table(
        book[
            [
                "Borrower_ID",
                "Loan_ID",
                "Outstanding_Loan_Amount",
                "Days_Past_Due",
                "Num_Missed_Payments",
            ]
        ],
        pd.DataFrame({"Borrower_ID": book["Borrower_ID"], "segment_id": 0, "segment_name": "all"}),
        scores,
        POLICY_MODEL,
        **config_kwargs(strategy_table, settings.StrategyConfig),
        **fallback_thresholds(),
    )
    report = fairness_table(book, table)
    merged = book.merge(scores, on="Borrower_ID")
    resolved = merged[merged["Recovery_Status"].notna()]
    y = (resolved["Recovery_Status"] != "Fully Recovered").astype(int)
    women = resolved["Gender"] == "Female"
    row = report.set_index(["group_type", "group"]).loc[("Gender", "Female")]
    assert row["roc_auc"] == pytest.approx(
        roc_auc_score(y[women], resolved["risk_score"][women]), abs=2e-3
    )
    assert row["mean_predicted"] == pytest.approx(resolved["risk_score"][women].mean())
    assert row["observed_to_predicted"] == pytest.approx(
        y[women].mean() / resolved["risk_score"][women].mean()
    )
    assert report["roc_auc"].notna().all()


def test_the_fallback_evidence_counts_each_band(book):
    thresholds = dict(legal_days=90, legal_missed=6, settlement_days=30, settlement_missed=2)
    evidence = arrears_evidence(book, **thresholds).set_index("band")
    resolved = book[book["Recovery_Status"].notna()]
    bad = resolved["Recovery_Status"] != "Fully Recovered"
    deep = resolved["Days_Past_Due"] > 90
    assert evidence.loc["over 90", "resolved"] == deep.sum()
    assert evidence.loc["over 90", "not_fully_recovered_rate"] == pytest.approx(bad[deep].mean())
    assert evidence.loc["0-30", "resolved"] + evidence.loc["31-90", "resolved"] + deep.sum() == len(
        resolved
    )
    # the arrears bands order the outcome, as the policy assumes
    rates = evidence["not_fully_recovered_rate"]
    assert rates["0-30"] < rates["31-90"] < rates["over 90"]


def test_the_bootstrap_draws_what_every_bin_drawn_gives():
    """Drawing only for the bins holding loans gives the resamples of drawing for every bin
    (a Poisson draw with mean 0 is 0 and uses no randomness): the same interval, to the bit."""
    rng = np.random.default_rng(3)
    counts = np.zeros((2, 2**14), dtype="int64")
    np.add.at(counts, (rng.integers(0, 2, 500), rng.integers(0, 2**14, 500)), 1)
    every_bin = np.random.default_rng(11)
    expected = [binned_auc(*every_bin.poisson(counts).astype("float64")) for _ in range(200)]
    np.testing.assert_array_equal(bootstrap_auc(counts, 200, seed=11), expected)
