"""The risk model: ``fit_risk_model`` is the single entry point; ``method`` picks the
implementation:

- ``recommended``: the target is the real outcome, "not Fully Recovered" (and, as a second model,
  "Written Off"), learned from the loans that have one. The model is a logistic regression
  (maximum likelihood, so its probabilities are calibrated by construction; the calibration
  table and chart check it on the held-out folds) on pre-outcome columns only (``model_inputs``:
  the inputs, and the columns left out and why). Every resolved borrower's score is out-of-fold
  (from a model that never saw that borrower); open loans are scored by the model fitted on all
  resolved loans (``scoring``). Metrics are computed on the held-out folds, next to a base-rate
  and a one-feature (Days_Past_Due) baseline (``outcome_model``, ``evaluation``).
- ``notebook``: the original method, for comparison: a RandomForest learns the
  high-burden-segment flag (so it only re-learns the clustering).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from loan_pipeline.core.model_inputs import EXCLUDED, MERGED, MODEL_CATEGORICAL, MODEL_NUMERIC
from loan_pipeline.core.outcome_model import fit_outcome_model
from loan_pipeline.core.risk import RiskModel


def fit_recommended_model(
    loans: pd.DataFrame,
    *,
    folds: int,
    random_state: int,
    max_train_rows: int,
    min_skill: float,
    sign_constraints: bool,
) -> RiskModel:
    """Two outcome models; the first gates the strategies: it must beat the base
    rate's Brier score by ``min_skill`` (Brier skill score) on the held-out folds, and each of
    its coefficients must agree in sign with its input's univariate relation to the outcome
    (``sign_constraints`` makes them; without, the check says where they do not)."""
    fit = dict(
        folds=folds,
        random_state=random_state,
        max_train_rows=max_train_rows,
        sign_constraints=sign_constraints,
    )
    primary = fit_outcome_model(loans, "not_fully_recovered", **fit)
    try:
        # the second model's figures are for reading: no interval on its ROC AUC
        secondary = fit_outcome_model(loans, "written_off", **fit, bootstrap=0)
    except ValueError:
        secondary = None  # too few write-offs to model; reported as missing
    skill = primary.metrics["brier_skill_vs_base_rate"]
    metrics = dict(primary.metrics)
    if secondary is not None:
        metrics |= {f"written_off_{k}": v for k, v in secondary.metrics.items()}
    return RiskModel(
        method="recommended",
        estimator=primary.estimator,
        features=MODEL_NUMERIC + MODEL_CATEGORICAL,
        target="not Fully Recovered (Recovery_Status), resolved loans",
        metrics=metrics,
        primary=primary,
        secondary=secondary,
        beats_baseline=bool(skill >= min_skill),
        min_skill=min_skill,
        excluded=dict(EXCLUDED)
        | {c: f"carried by {by} (nearly collinear with it)" for c, by in MERGED.items()},
    )


def notebook_target(segments: pd.DataFrame, *, high_risk_segments: int) -> pd.Series:
    """The notebook's label: the borrower is in one of the ``high_risk_segments`` highest-burden
    segments (in notebook mode segment ids are ordered by centroid burden, so these are the top
    ids). At least one segment always stays low risk, so the label has two classes."""
    k = int(segments["segment_id"].max()) + 1
    n_high = min(high_risk_segments, k - 1)
    return segments.set_index("Borrower_ID")["segment_id"].ge(k - n_high)


def fit_notebook_model(
    features: pd.DataFrame,
    segments: pd.DataFrame,
    *,
    n_estimators: int,
    random_state: int,
    test_size: float,
    high_risk_segments: int,
) -> RiskModel:
    """The original method, faithfully: a RandomForest learns the high-burden-segment flag on a
    stratified 80/20 split; accuracy and ROC AUC are measured on the held-out 20%.

    (It only re-learns the clustering: its labels come from the clusters. Kept for comparison.)
    """
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.metrics import accuracy_score, roc_auc_score
    from sklearn.model_selection import train_test_split

    cols = [c for c in features.columns if c != "Borrower_ID"]
    y_all = notebook_target(segments, high_risk_segments=high_risk_segments).reindex(
        features["Borrower_ID"]
    )
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


def fit_risk_model(
    loans: pd.DataFrame,
    features: pd.DataFrame | None,
    segments: pd.DataFrame | None,
    *,
    method: str,
    folds: int,
    max_train_rows: int,
    min_skill: float,
    random_state: int,
    sign_constraints: bool,
    n_estimators: int,
    test_size: float,
    high_risk_segments: int,
) -> RiskModel:
    """Fit the risk model by the configured ``method`` (``features`` and ``segments`` are the
    notebook method's inputs; the recommended model reads only ``loans``). Every setting is
    ``settings.RiskConfig``'s; each method takes the ones it uses."""
    if method == "notebook":
        return fit_notebook_model(
            features,
            segments,
            n_estimators=n_estimators,
            random_state=random_state,
            test_size=test_size,
            high_risk_segments=high_risk_segments,
        )
    if method == "recommended":
        return fit_recommended_model(
            loans,
            folds=folds,
            random_state=random_state,
            max_train_rows=max_train_rows,
            min_skill=min_skill,
            sign_constraints=sign_constraints,
        )
    raise ValueError(f"unknown risk method {method!r}; choose 'recommended' or 'notebook'")
