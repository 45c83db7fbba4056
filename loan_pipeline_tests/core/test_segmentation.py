"""Segment names come from centroids, never from KMeans's arbitrary ids."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from loan_pipeline.core.features import feature_matrix, scale_features
from loan_pipeline.core.sample import generate_loan_book
from loan_pipeline.core.segmentation import (
    assign_segments,
    burden_scores,
    fit_segments,
    name_segments,
    segment_profile,
)
from loan_pipeline.domain import NOTEBOOK_FEATURES


@pytest.fixture(scope="module")
def book():
    loans = generate_loan_book(3000, seed=7)
    scaled, _ = scale_features(loans, NOTEBOOK_FEATURES)
    model = fit_segments(feature_matrix(scaled), NOTEBOOK_FEATURES, k=4, random_state=42, n_init=10)
    segments = assign_segments(model, scaled["Borrower_ID"], feature_matrix(scaled))
    profile = segment_profile(loans, segments, NOTEBOOK_FEATURES)
    return loans, model, segments, profile


def test_names_are_unique_and_cover_every_segment(book):
    _, model, segments, _ = book
    assert sorted(model.names) == [0, 1, 2, 3]
    assert len(set(model.names.values())) == 4
    assert set(segments["segment_name"]) == set(model.names.values())


@pytest.mark.parametrize(
    ("word", "column", "highest"),
    [
        ("High loan", "Loan_Amount", True),
        ("Small loan", "Loan_Amount", False),
        ("Deep arrears", "Days_Past_Due", True),
        ("High income", "Monthly_Income", True),
        ("Low income", "Monthly_Income", False),
        ("High balance", "Outstanding_Loan_Amount", True),
        ("Many missed payments", "Num_Missed_Payments", True),
        ("Current", "Days_Past_Due", False),
    ],
)
def test_a_name_means_the_extreme_segment(book, word, column, highest):
    """Whenever a segment is named for a trait, it is the segment most extreme on it."""
    _, _, _, profile = book
    named = profile[
        profile["segment_name"].str.contains(rf"(?:^|, ){word}", case=False, regex=True)
    ]
    extreme = profile[column].max() if highest else profile[column].min()
    for _, row in named.iterrows():
        assert row[column] == extreme, (row["segment_name"], column)


def test_some_segment_is_named_for_high_loans_on_a_loan_heavy_book():
    """Plant a group of very large loans: the segment named for high loans holds them."""
    loans = generate_loan_book(2000, seed=3)
    big = loans.sample(300, random_state=0).index
    loans.loc[big, "Loan_Amount"] = loans.loc[big, "Loan_Amount"] * 20
    scaled, _ = scale_features(loans, NOTEBOOK_FEATURES)
    model = fit_segments(feature_matrix(scaled), NOTEBOOK_FEATURES, k=4)
    segments = assign_segments(model, scaled["Borrower_ID"], feature_matrix(scaled))
    profile = segment_profile(loans, segments, NOTEBOOK_FEATURES)
    high = profile[profile["segment_name"].str.startswith("High loan")]
    assert len(high) == 1
    assert high["Loan_Amount"].iloc[0] == profile["Loan_Amount"].max()


def test_names_do_not_depend_on_cluster_order():
    rng = np.random.default_rng(0)
    centroids = pd.DataFrame(
        rng.normal(size=(5, len(NOTEBOOK_FEATURES))), columns=NOTEBOOK_FEATURES
    )
    names = name_segments(centroids)
    perm = [3, 0, 4, 1, 2]
    permuted = name_segments(centroids.iloc[perm].reset_index(drop=True))
    assert [names[p] for p in perm] == [permuted[i] for i in range(5)]


def test_segment_ids_ordered_by_burden(book):
    _, model, _, _ = book
    burden = burden_scores(model.centroids)
    assert burden.is_monotonic_increasing


def test_relabelled_kmeans_gives_the_same_segments():
    """Two fits whose KMeans ids differ (other seeds) give the same ids and names when they find
    the same partition."""
    rng = np.random.default_rng(1)
    centres = rng.normal(scale=8, size=(3, 4))
    X = np.vstack([c + rng.normal(size=(200, 4)) for c in centres])
    cols = ["Loan_Amount", "Days_Past_Due", "Monthly_Income", "Age"]
    ids = pd.Series([f"B{i}" for i in range(len(X))])
    a = fit_segments(X, cols, k=3, random_state=0, n_init=3)
    b = fit_segments(X, cols, k=3, random_state=5, n_init=3)
    sa, sb = assign_segments(a, ids, X), assign_segments(b, ids, X)
    assert (sa["segment_id"] == sb["segment_id"]).all()
    assert (sa["segment_name"] == sb["segment_name"]).all()


def test_sizes_and_silhouette(book):
    loans, model, segments, _ = book
    assert sum(model.sizes.values()) == len(loans)
    assert segments["segment_id"].value_counts().sort_index().tolist() == [
        model.sizes[s] for s in range(4)
    ]
    assert -1 <= model.metrics["silhouette"] <= 1


def test_too_few_borrowers_is_a_clear_error():
    with pytest.raises(ValueError, match="cannot form 4 segments from 3 borrowers"):
        fit_segments(np.zeros((3, 2)), ["a", "b"], k=4)


def test_k_selection_finds_well_separated_blobs():
    from loan_pipeline.core.segmentation import evaluate_k

    rng = np.random.default_rng(0)
    for true_k, seed in ((3, 1), (5, 2)):
        centres = np.random.default_rng(seed).normal(scale=10, size=(true_k, 6))
        X = np.vstack([c + rng.normal(size=(400, 6)) for c in centres])
        selection = evaluate_k(X, list(range(2, 9)), sample_size=2000, bootstraps=5)
        assert selection.chosen == true_k, selection.table
        row = selection.chosen_row
        assert row["stable"] and row["ari_mean"] > 0.95


def test_k_selection_on_noise_reports_instability():
    from loan_pipeline.core.segmentation import evaluate_k

    X = np.random.default_rng(3).normal(size=(1500, 6))
    table = evaluate_k(X, [4, 6], sample_size=1500, bootstraps=5).table
    assert (table["ari_mean"] < 0.9).all()


def test_segments_keep_ids_and_names_across_runs():
    """Refit on the same data with another seed (KMeans numbers the clusters differently):
    matching to the previous model restores the same ids and names."""
    rng = np.random.default_rng(1)
    centres = rng.normal(scale=8, size=(4, 4))
    X = np.vstack([c + rng.normal(size=(300, 4)) for c in centres])
    cols = ["Loan_Amount", "Days_Past_Due", "Monthly_Income", "Interest_Rate"]
    ids = pd.Series([f"B{i}" for i in range(len(X))])
    first = fit_segments(X, cols, k=4, random_state=0, n_init=1)
    second = fit_segments(X, cols, k=4, random_state=9, n_init=1, previous=first)
    a, b = assign_segments(first, ids, X), assign_segments(second, ids, X)
    assert (a["segment_id"] == b["segment_id"]).all()
    assert (a["segment_name"] == b["segment_name"]).all()
    assert max(second.matched.values()) < 0.2


def test_a_new_segment_gets_a_new_id_and_old_ones_keep_theirs():
    rng = np.random.default_rng(2)
    centres = rng.normal(scale=8, size=(4, 3))
    cols = ["Loan_Amount", "Days_Past_Due", "Monthly_Income"]
    X3 = np.vstack([c + rng.normal(size=(300, 3)) for c in centres[:3]])
    X4 = np.vstack([X3, centres[3] + rng.normal(size=(300, 3))])
    first = fit_segments(X3, cols, k=3, n_init=3)
    second = fit_segments(X4, cols, k=4, n_init=3, previous=first)
    ids3 = pd.Series([f"B{i}" for i in range(len(X3))])
    a = assign_segments(first, ids3, X3)
    b = assign_segments(second, ids3, X3)
    assert (a["segment_id"] == b["segment_id"]).mean() > 0.99
    assert sorted(second.names) == [0, 1, 2, 3]
