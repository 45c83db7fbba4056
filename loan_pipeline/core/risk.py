"""The risk model: fit, evaluate on held-out borrowers, score every borrower.

``fit_risk_model`` is the single entry point; ``method`` picks the implementation, so a later
method replaces one function, not the graph.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd


@dataclass
class RiskModel:
    """A fitted risk model with its evaluation and the borrowers it held out."""

    method: str
    estimator: object
    features: list[str]
    target: str
    metrics: dict[str, float] = field(default_factory=dict)
    test_ids: list[str] = field(default_factory=list)
    labels: pd.Series | None = None  # Borrower_ID -> training target


def notebook_target(segments: pd.DataFrame, high_risk_segments: int = 2) -> pd.Series:
    """The notebook's label: the borrower is in one of the ``high_risk_segments`` highest-burden
    segments (segment ids are ordered by centroid burden, so these are the top ids). At least
    one segment always stays low risk, so the label has two classes."""
    k = int(segments["segment_id"].max()) + 1
    n_high = min(high_risk_segments, k - 1)
    return segments.set_index("Borrower_ID")["segment_id"].ge(k - n_high)


def fit_notebook_model(
    features: pd.DataFrame,
    segments: pd.DataFrame,
    n_estimators: int = 100,
    random_state: int = 42,
    test_size: float = 0.2,
    high_risk_segments: int = 2,
) -> RiskModel:
    """The original method, faithfully: a RandomForest learns the high-burden-segment flag on a
    stratified 80/20 split; accuracy and ROC AUC are measured on the held-out 20%.

    (It only re-learns the clustering: its labels come from the clusters. Kept for comparison.)
    """
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.metrics import accuracy_score, roc_auc_score
    from sklearn.model_selection import train_test_split

    cols = [c for c in features.columns if c != "Borrower_ID"]
    y_all = notebook_target(segments, high_risk_segments).reindex(features["Borrower_ID"])
    if y_all.isna().any():
        raise ValueError("every borrower in the feature matrix needs a segment")
    X = features[cols].to_numpy(dtype="float64")
    y = y_all.to_numpy(dtype=bool)
    if y.all() or not y.any():
        raise ValueError("the high-risk flag has a single class; cannot train a classifier")
    idx_train, idx_test = train_test_split(
        np.arange(len(X)), test_size=test_size, random_state=random_state, stratify=y
    )
    rf = RandomForestClassifier(n_estimators=n_estimators, random_state=random_state)
    rf.fit(X[idx_train], y[idx_train])
    proba = rf.predict_proba(X[idx_test])[:, 1]
    metrics = {
        "test_accuracy": float(accuracy_score(y[idx_test], proba >= 0.5)),
        "test_roc_auc": float(roc_auc_score(y[idx_test], proba)),
        "n_train": int(len(idx_train)),
        "n_test": int(len(idx_test)),
        "positive_rate": float(y.mean()),
    }
    return RiskModel(
        method="notebook",
        estimator=rf,
        features=cols,
        target="in a highest-burden segment (notebook)",
        metrics=metrics,
        test_ids=features["Borrower_ID"].to_numpy()[idx_test].tolist(),
        labels=y_all,
    )


METHODS = {"notebook": fit_notebook_model}


def fit_risk_model(
    features: pd.DataFrame, segments: pd.DataFrame, method: str = "notebook", **params
) -> RiskModel:
    """Fit the risk model by the configured ``method``."""
    try:
        fit = METHODS[method]
    except KeyError:
        raise ValueError(
            f"unknown risk method {method!r}; choose one of {sorted(METHODS)}"
        ) from None
    return fit(features, segments, **params)


def score_borrowers(model: RiskModel, features: pd.DataFrame) -> pd.DataFrame:
    """Score every borrower: Borrower_ID, risk_score, risk_label, split."""
    X = features[model.features].to_numpy(dtype="float64")
    proba = model.estimator.predict_proba(X)[:, 1]
    ids = features["Borrower_ID"]
    labels = model.labels.reindex(ids).fillna(False).to_numpy(dtype=bool)
    split = np.where(ids.isin(set(model.test_ids)), "test", "train")
    return pd.DataFrame(
        {
            "Borrower_ID": ids.to_numpy(),
            "risk_score": proba.astype("float64"),
            "risk_label": labels,
            "split": split.astype(object),
        }
    )
