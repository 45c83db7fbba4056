"""Parity with the original notebook on the reference data set, run through the real graph."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import adjusted_rand_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from loan_pipeline.domain import NOTEBOOK_FEATURES
from loan_pipeline_tests.conftest import REFERENCE_CSV


def _notebook_clusters(csv) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    df = pd.read_csv(csv)
    X = StandardScaler().fit_transform(df[NOTEBOOK_FEATURES])
    labels = KMeans(n_clusters=4, random_state=42, n_init=10).fit_predict(X)
    return df, X, labels


def test_cluster_assignment_equals_direct_sklearn(notebook_reference_run):
    df, _, labels = _notebook_clusters(REFERENCE_CSV)
    segments = (
        notebook_reference_run.table("borrower_segments")
        .set_index("Borrower_ID")
        .loc[df["Borrower_ID"]]
    )
    assert adjusted_rand_score(labels, segments["segment_id"]) == 1.0


def test_scaled_features_equal_standard_scaler(notebook_reference_run):
    df, X, _ = _notebook_clusters(REFERENCE_CSV)
    scaled = notebook_reference_run.table("scaled_features")
    assert scaled["Borrower_ID"].tolist() == df["Borrower_ID"].tolist()
    np.testing.assert_allclose(scaled[NOTEBOOK_FEATURES].to_numpy(), X, rtol=1e-12, atol=1e-12)


def test_risk_scores_equal_direct_random_forest(notebook_reference_run):
    """The notebook's RandomForest(100, random_state=42) on a stratified 80/20 split of the
    high-burden flag gives exactly the pipeline's scores."""
    df, X, _ = _notebook_clusters(REFERENCE_CSV)
    scores = (
        notebook_reference_run.table("risk_scores").set_index("Borrower_ID").loc[df["Borrower_ID"]]
    )
    y = scores["not_fully_recovered"].to_numpy(dtype=bool)
    assert 0 < y.mean() < 1
    idx_train, idx_test = train_test_split(
        np.arange(len(X)), test_size=0.2, random_state=42, stratify=y
    )
    rf = RandomForestClassifier(n_estimators=100, random_state=42).fit(X[idx_train], y[idx_train])
    np.testing.assert_allclose(
        scores["risk_score"].to_numpy(), rf.predict_proba(X)[:, 1], atol=1e-12
    )
    assert set(scores.index[scores["score_source"] == "test"]) == set(
        df["Borrower_ID"].iloc[idx_test]
    )
