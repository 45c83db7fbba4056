"""The outcome model: finds a planted signal, admits when there is none, never sees the answer."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from loan_pipeline.assets.risk import fallback_thresholds
from loan_pipeline.core import runtime
from loan_pipeline.core.folds import folds_and_draws
from loan_pipeline.core.generator import generate_loan_book
from loan_pipeline.core.model_inputs import EXCLUDED, MERGED, risk_inputs
from loan_pipeline.core.risk_methods import (
    fit_notebook_model,
    fit_recommended_model,
    fit_risk_model,
)
from loan_pipeline.core.scoring import score_borrowers
from loan_pipeline.core.strategy import rules_based
from loan_pipeline.core.validation import reason_kinds
from loan_pipeline.schemas import LOAN_BOOK_COLUMNS, OUTCOME_SIDE_COLUMNS
from loan_pipeline.settings import ClusterConfig, RiskConfig
from loan_pipeline_tests.defaults import config_kwargs
from loan_pipeline_tests.planted import is_planted


def risk_settings(**overrides) -> dict:
    """``fit_recommended_model``'s settings: RiskConfig's defaults, with ``overrides``."""
    return config_kwargs(fit_recommended_model, RiskConfig, **overrides)


RISK = risk_settings()


def score_in_chunks_of(monkeypatch, rows: int) -> None:
    """Score, count and draw ``rows`` at a time (``model_inputs.SCORE_CHUNK``, which every
    core module reads from there)."""
    from loan_pipeline.core import model_inputs

    monkeypatch.setattr(model_inputs, "SCORE_CHUNK", rows)


@pytest.fixture(scope="module")
def planted():
    book = generate_loan_book(4000, seed=5, signal=1.0, open_fraction=0.05)
    return book, fit_recommended_model(book, **RISK)


@pytest.fixture(scope="module")
def no_signal():
    book = generate_loan_book(4000, seed=6, signal=0.0)
    return book, fit_recommended_model(book, **RISK)


def test_recovers_the_planted_signal(planted):
    _, model = planted
    m = model.metrics
    # the generator's true burden score reaches about 0.81; a fitted model on 4,000 rows, 0.75+
    assert m["model_roc_auc"] > 0.75
    assert m["model_roc_auc"] > m["days_past_due_only_roc_auc"] > m["base_rate_roc_auc"] - 0.05
    assert m["model_brier"] < m["days_past_due_only_brier"] < m["base_rate_brier"]
    assert m["model_pr_auc"] > m["base_rate_pr_auc"]
    assert model.beats_baseline
    assert 0 < m["model_roc_auc_fold_sd"] < 0.05
    assert model.secondary is not None and m["written_off_model_roc_auc"] > 0.7


def test_scores_are_calibrated(planted):
    _, model = planted
    table = model.primary.calibration
    assert (table["predicted"] - table["observed"]).abs().max() < 0.1
    assert table["predicted"].is_monotonic_increasing


def test_reason_codes_name_the_planted_features(planted):
    book, model = planted
    scores = score_borrowers(model, book, None)
    high = scores[scores["risk_score"] > scores["risk_score"].quantile(0.8)]
    top = reason_kinds(high["reason_1"]).head(3).index
    assert all(is_planted(kind) for kind in top), top.tolist()
    assert high["reason_1"].notna().all()


def test_out_of_fold_and_open_loans(planted):
    book, model = planted
    scores = score_borrowers(model, book, None).set_index("Borrower_ID")
    open_ids = book.loc[book["Recovery_Status"].isna(), "Borrower_ID"]
    resolved_ids = book.loc[book["Recovery_Status"].notna(), "Borrower_ID"]
    assert len(open_ids) > 100
    assert (scores.loc[open_ids, "score_source"] == "open_loan").all()
    assert scores.loc[open_ids, "not_fully_recovered"].isna().all()
    # open loans: the model fitted on every resolved loan
    X_open = risk_inputs(book[book["Recovery_Status"].isna()])
    full = model.primary.estimator.predict_proba(X_open)[:, 1]
    np.testing.assert_allclose(scores.loc[open_ids, "risk_score"], full)
    # resolved loans: their out-of-fold score, which differs from the in-sample one
    assert (scores.loc[resolved_ids, "score_source"] == "out_of_fold").all()
    # each resolved borrower's score comes from the model of its fold (by its Borrower_ID)
    resolved = book[book["Recovery_Status"].notna()]
    fold, _ = folds_and_draws(resolved["Borrower_ID"], model.primary.folds, model.primary.seed)
    assert np.bincount(fold).min() > 0.15 * len(resolved)  # five folds of about a fifth each
    X_resolved = risk_inputs(resolved)
    for k, fitted in enumerate(model.primary.fold_estimators):
        mine = fold == k
        np.testing.assert_allclose(
            scores.loc[resolved_ids[mine], "risk_score"],
            fitted.predict_proba(X_resolved[mine])[:, 1],
        )
    in_sample = model.primary.estimator.predict_proba(
        risk_inputs(book[book["Recovery_Status"].notna()])
    )[:, 1]
    assert np.abs(in_sample - scores.loc[resolved_ids, "risk_score"].to_numpy()).mean() > 1e-3
    assert model.metrics["resolved_loans"] == len(resolved_ids)


def test_no_signal_does_not_beat_the_base_rate(no_signal):
    _, model = no_signal
    assert not model.beats_baseline
    assert model.metrics["brier_skill_vs_base_rate"] < 0.01
    assert 0.4 < model.metrics["model_roc_auc"] < 0.6


def test_outcome_side_columns_are_never_inputs(no_signal):
    book, model = no_signal
    inputs = risk_inputs(book)
    forbidden = set(OUTCOME_SIDE_COLUMNS) | {"Age", "Gender", "Borrower_ID", "Loan_ID"}
    assert forbidden.isdisjoint(inputs.columns)
    fitted = set(model.primary.explainer.named_steps["prepare"].get_feature_names_out())
    assert not any(name.startswith(tuple(forbidden)) for name in fitted), fitted
    assert set(EXCLUDED) == forbidden
    # every loan-book column is either an input or excluded with a reason
    assert set(LOAN_BOOK_COLUMNS) <= set(model.features) | set(model.excluded)
    assert set(model.excluded) == set(EXCLUDED) | set(MERGED)


def test_a_leaking_book_still_does_not_help():
    """Make the outcome-side columns give the answer away: the model never sees them."""
    book = generate_loan_book(3000, seed=7, signal=0.0)
    bad = book["Recovery_Status"] != "Fully Recovered"
    book["Collection_Attempts"] = np.where(bad, 10, 0)
    book["Legal_Action_Taken"] = np.where(book["Recovery_Status"] == "Written Off", "Yes", "No")
    model = fit_recommended_model(book, **RISK)
    assert not model.beats_baseline
    assert model.metrics["model_roc_auc"] < 0.6


def test_rules_based_fallback_on_arrears():
    import pandas as pd

    from loan_pipeline.domain import STRATEGY_LEGAL, STRATEGY_REMINDERS, STRATEGY_SETTLEMENT

    loans = pd.DataFrame(
        {"Days_Past_Due": [0, 31, 91, 0, 0, 30], "Num_Missed_Payments": [0, 0, 0, 2, 6, 1]}
    )
    assert rules_based(loans, **fallback_thresholds())[0].tolist() == [
        STRATEGY_REMINDERS,
        STRATEGY_SETTLEMENT,
        STRATEGY_LEGAL,
        STRATEGY_SETTLEMENT,
        STRATEGY_LEGAL,
        STRATEGY_REMINDERS,
    ]


def test_too_few_resolved_loans_is_a_clear_error():
    book = generate_loan_book(300, seed=1, open_fraction=0.99)
    with pytest.raises(ValueError, match="too few resolved loans"):
        fit_recommended_model(book, **RISK)


def test_fallback_reasons_name_the_rule_that_fired():
    import pandas as pd

    loans = pd.DataFrame(
        {"Days_Past_Due": [120, 0, 45, 0, 10], "Num_Missed_Payments": [0, 7, 0, 3, 1]}
    )
    assert rules_based(loans, **fallback_thresholds())[1].tolist() == [
        "Days_Past_Due > 90",
        "Num_Missed_Payments >= 6",
        "Days_Past_Due > 30",
        "Num_Missed_Payments >= 2",
        "Days_Past_Due <= 30 and Num_Missed_Payments < 2",
    ]


def test_a_bounded_training_sample_keeps_the_quality_and_scores_everyone():
    """Fitting each fold on a fixed-seed sample (max_train_rows) loses next to nothing, and every
    resolved borrower still gets an out-of-fold score."""
    book = generate_loan_book(8000, seed=9, signal=1.0)
    full = fit_recommended_model(book, **risk_settings(max_train_rows=1_000_000))
    bounded = fit_recommended_model(book, **risk_settings(max_train_rows=1_500))
    held_out = bounded.primary.out_of_fold(book)
    assert (~np.isnan(held_out)).sum() == book["Recovery_Status"].notna().sum()
    assert bounded.metrics["fitting_sample"] == 1_500
    assert full.metrics["fitting_sample"] == book["Recovery_Status"].notna().sum()
    assert abs(full.metrics["model_roc_auc"] - bounded.metrics["model_roc_auc"]) < 0.02
    assert bounded.metrics["model_brier"] < full.metrics["model_brier"] + 0.005


def test_metrics_equal_scikit_learns_definitions():
    """The one-sort metrics give scikit-learn's numbers, ties in the scores included."""
    from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

    from loan_pipeline.core.evaluation import _metrics

    rng = np.random.default_rng(7)
    for n, levels in ((50, 5), (1_000, 40), (20_000, None)):
        y = rng.integers(0, 2, n)
        p = rng.random(n) * 0.6 + y * 0.3
        if levels:  # heavy ties, as a coarse score has
            p = np.round(p * levels) / levels
        got = _metrics(y, p)
        assert got["roc_auc"] == pytest.approx(roc_auc_score(y, p), abs=1e-12)
        assert got["pr_auc"] == pytest.approx(average_precision_score(y, p), abs=1e-12)
        assert got["brier"] == pytest.approx(brier_score_loss(y, p), abs=1e-12)
    constant = _metrics(np.array([0, 1, 1, 0]), np.full(4, 0.5))
    assert constant["roc_auc"] == pytest.approx(0.5)
    assert np.isnan(_metrics(np.ones(4), np.full(4, 0.5))["roc_auc"])


def test_the_answer_does_not_depend_on_the_number_of_threads(planted, monkeypatch):
    """Folds and candidate k run side by side in threads; one thread must give the same model,
    scores and k table to the last bit."""
    from loan_pipeline.core.segmentation import PARALLEL_SELECTION_ROWS, evaluate_k

    book, parallel = planted
    # two groups, so the gap is computed too; enough rows for the k to be scored in threads
    X = np.random.default_rng(3).normal(size=(PARALLEL_SELECTION_ROWS, 5))
    X[::2, 0] += 8
    k_parallel = evaluate_k(X, [2, 3, 4], **config_kwargs(evaluate_k, ClusterConfig, resamples=3))
    monkeypatch.setattr(runtime, "workers", lambda: 1)
    serial = fit_recommended_model(book, **RISK)
    k_serial = evaluate_k(X, [2, 3, 4], **config_kwargs(evaluate_k, ClusterConfig, resamples=3))
    assert serial.metrics == parallel.metrics
    pd.testing.assert_frame_equal(
        score_borrowers(serial, book), score_borrowers(parallel, book), check_exact=True
    )
    pd.testing.assert_frame_equal(k_serial.table, k_parallel.table)
    assert k_serial.chosen == k_parallel.chosen == 2 and k_serial.supported


def test_joins_by_position_equal_joins_by_key():
    """The positional fast path of join_by_id / lookup_by_id gives what a keyed join gives, and
    a table in another order (or with other ids) falls back to the keyed join."""
    from loan_pipeline.core.joins import join_by_id, lookup_by_id

    ids = pd.Series(pd.array([f"BRW_{i}" for i in range(50)], dtype="string[pyarrow]"))
    left = pd.DataFrame({"Borrower_ID": ids, "a": np.arange(50)})
    right = pd.DataFrame({"Borrower_ID": ids, "b": np.arange(50) * 2.0})
    shuffled = right.sample(frac=1.0, random_state=1)
    partial = right.iloc[5:]
    for other in (right, shuffled, partial):
        expected = left.merge(other, on="Borrower_ID", how="left", validate="one_to_one")
        pd.testing.assert_frame_equal(join_by_id(left, other), expected)
        values = other.set_index("Borrower_ID")["b"]
        np.testing.assert_array_equal(lookup_by_id(values, ids), values.reindex(ids).to_numpy())


def test_scoring_in_chunks_gives_the_same_table(planted, monkeypatch):
    """Large books are scored (and held-out folds predicted) a chunk of rows at a time; the
    chunk size must not change a single score or reason."""
    book, model = planted
    whole = score_borrowers(model, book, None)
    score_in_chunks_of(monkeypatch, 333)
    chunked = score_borrowers(model, book, None)
    pd.testing.assert_frame_equal(chunked, whole)
    # open loans' scores are the pipeline's own predict_proba (computed row by row, so to the
    # last bit or two; the preparation is shared with the reasons, not recomputed)
    open_loans = (whole["score_source"] == "open_loan").to_numpy()
    assert open_loans.any()
    direct = model.primary.estimator.predict_proba(risk_inputs(book))[:, 1]
    np.testing.assert_allclose(
        whole["risk_score"].to_numpy()[open_loans], direct[open_loans], rtol=1e-13, atol=0
    )
    refit = fit_recommended_model(book, **RISK)
    # sums over pieces of 333 rows: the same figures up to the order of float additions
    assert refit.metrics == pytest.approx(model.metrics, rel=1e-12, abs=1e-15)


def test_inputs_from_category_codes_equal_inputs_from_text():
    """The folds take rows of ``model_source`` (categories as codes), not of the loans: the
    model must see exactly the inputs the text gives, odd values and blanks included."""
    from loan_pipeline.core.model_inputs import model_source

    book = generate_loan_book(3000, seed=9)
    for col, odd in (
        ("Employment_Type", "Freelance"),
        ("Loan_Type", None),
        ("Payment_History", ""),
    ):
        book[col] = book[col].astype("string[pyarrow]")
        book.loc[book.index[::37], col] = odd
    rows = np.random.default_rng(0).permutation(len(book))[:1000]
    pd.testing.assert_frame_equal(
        risk_inputs(model_source(book).iloc[rows]), risk_inputs(book.iloc[rows]), check_exact=True
    )


def test_binned_metrics_match_scikit_learn_and_the_exact_calibration():
    """The out-of-fold metrics are summed per score bin (so partitions add up): on continuous
    scores they match scikit-learn's exact figures to well under the printed precision."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    from loan_pipeline.core.evaluation import (
        SCORE_BINS,
        _bin_of,
        _binned_metrics,
        binned_calibration,
        calibration_table,
    )

    rng = np.random.default_rng(11)
    y = rng.integers(0, 2, 200_000)
    p = 1 / (1 + np.exp(-(rng.normal(size=len(y)) + 1.2 * y - 0.6)))
    counts = np.zeros((2, SCORE_BINS), dtype="int64")
    np.add.at(counts, (y, _bin_of(p)), 1)
    got = _binned_metrics(counts[0], counts[1], float(((p - y) ** 2).sum()))
    assert got["roc_auc"] == pytest.approx(roc_auc_score(y, p), abs=1e-4)
    assert got["pr_auc"] == pytest.approx(average_precision_score(y, p), abs=1e-4)
    assert got["brier"] == pytest.approx(np.mean((p - y) ** 2), abs=1e-12)
    sums = np.bincount(_bin_of(p), weights=p, minlength=SCORE_BINS)
    binned = binned_calibration(counts, sums)
    exact = calibration_table(y, p)
    assert binned["decile"].tolist() == list(range(1, 11))
    np.testing.assert_allclose(binned["predicted"], exact["predicted"], atol=2e-3)
    np.testing.assert_allclose(binned["observed"], exact["observed"], atol=5e-3)
    assert binned["borrowers"].sum() == len(y)


def test_folds_and_samples_are_the_same_in_any_partitioning(planted, monkeypatch):
    """A borrower's fold and draw come from its Borrower_ID alone, and the evaluation is a sum
    over pieces: a book fitted in small pieces gives the model fitted whole."""
    book, whole = planted
    ids = book["Borrower_ID"]
    fold, draw = folds_and_draws(ids, 5, 42)
    for start in (0, 7, 1234):
        f, d = folds_and_draws(ids.iloc[start : start + 500], 5, 42)
        np.testing.assert_array_equal(f, fold[start : start + 500])
        np.testing.assert_array_equal(d, draw[start : start + 500])
    assert 0.45 < draw.mean() < 0.55 and draw.min() >= 0 and draw.max() < 1
    other, _ = folds_and_draws(ids, 5, 43)
    assert (other != fold).mean() > 0.7  # another seed, another assignment
    score_in_chunks_of(monkeypatch, 333)
    pieces = fit_recommended_model(book, **RISK)
    for key, value in whole.metrics.items():
        assert pieces.metrics[key] == pytest.approx(value, rel=1e-12, abs=1e-12), key
    for a, b in zip(pieces.primary.fold_estimators, whole.primary.fold_estimators, strict=True):
        np.testing.assert_array_equal(a.named_steps["model"].coef_, b.named_steps["model"].coef_)


def test_a_misspelled_or_missing_setting_is_an_error_not_a_silent_default():
    book = generate_loan_book(300, seed=1)
    with pytest.raises(TypeError, match="max_training_rows"):
        fit_recommended_model(book, **RISK, max_training_rows=1_000)
    with pytest.raises(TypeError, match="max_train_rows"):
        fit_recommended_model(book, **{k: v for k, v in RISK.items() if k != "max_train_rows"})
    every = config_kwargs(fit_risk_model, RiskConfig)
    for method in ("recommended", "notebook"):
        with pytest.raises(TypeError, match="n_estimator"):
            fit_risk_model(book, None, None, method=method, **every, n_estimator=10)
    notebook = config_kwargs(fit_notebook_model, RiskConfig)
    with pytest.raises(TypeError, match="folds"):
        fit_notebook_model(book, book, **notebook, folds=3)  # a setting of the other method
