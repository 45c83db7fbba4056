"""One outcome model fitted and evaluated honestly: a logistic regression per cross-validation
fold and one on all resolved loans, each on a bounded sample, with the out-of-fold evaluation
and what its reason codes and its model card read."""

from __future__ import annotations

import numpy as np
import pandas as pd

from loan_pipeline.core import model_inputs
from loan_pipeline.core.evaluation import binned_calibration, evaluation_counts, out_of_fold_metrics
from loan_pipeline.core.folds import class_counts, fitting_samples
from loan_pipeline.core.logistic import logistic_pipeline
from loan_pipeline.core.model_inputs import (
    BASELINE_FEATURE,
    MODEL_CATEGORICAL,
    MODEL_NUMERIC,
    one_hot_columns,
    risk_inputs,
)
from loan_pipeline.core.risk import OutcomeModel
from loan_pipeline.core.runtime import parallel_map, single_threaded
from loan_pipeline.core.summaries import add_elementwise
from loan_pipeline.core.validation import (
    BOOTSTRAP_REPLICATES,
    coefficient_signs,
    gains_table,
    validation_metrics,
)
from loan_pipeline.domain import RISK_CATEGORICAL


def fit_outcome_model(
    loans,
    target: str,
    *,
    folds: int,
    random_state: int,
    max_train_rows: int,
    sign_constraints: bool,
    bootstrap: int = BOOTSTRAP_REPLICATES,
) -> OutcomeModel:
    """Fit and evaluate one outcome model on the resolved loans of ``loans``: a pandas frame, or
    a Dask frame whose partitions are summed (the same functions, the same answer).

    Each fold's model is fitted on at most ``max_train_rows`` of the other folds' loans: those
    with the smallest draws (``folds_and_draws``), a uniform sample drawn by the borrowers' own
    hashes. The final model likewise, over all resolved loans. Three passes over the book:
    counts, the sample's candidates, the out-of-fold evaluation.
    """
    from loan_pipeline.core.partitions import summarise

    pieces = {
        "piece_rows": model_inputs.SCORE_CHUNK,
        "split_every": 8,
    }  # sums: merged on the workers
    counts = summarise(class_counts, add_elementwise, loans, target, folds, random_state, **pieces)
    _require_both_classes_in_every_fold(counts, target, folds)
    drawn, samples = fitting_samples(
        loans, target, counts, folds=folds, seed=random_state, max_train_rows=max_train_rows
    )
    X_drawn, y = risk_inputs(drawn), drawn["_y"].to_numpy()
    # the folds and the final fit are independent: side by side, one core each
    *by_fold, (estimator, _, _) = parallel_map(
        lambda rows: _fit_on(X_drawn.iloc[rows], y[rows], sign_constraints=sign_constraints),
        samples,
    )
    fold_models = [m for m, _, _ in by_fold]
    evaluation = summarise(
        evaluation_counts,
        add_elementwise,
        loans,
        target,
        fold_models,
        [baseline for _, baseline, _ in by_fold],
        folds,
        random_state,
        **pieces,
    )
    metrics = out_of_fold_metrics(evaluation, counts, [rate for _, _, rate in by_fold], folds=folds)
    metrics["fitting_sample"] = len(samples[-1])
    binned, sums = evaluation["model"].sum(axis=0), evaluation["model_sum"]
    calibration = binned_calibration(binned, sums)
    metrics |= validation_metrics(binned, sums, calibration, bootstrap, random_state)
    signs, center, coefficients = _explanation(estimator, X_drawn.iloc[samples[-1]], y[samples[-1]])
    return OutcomeModel(
        target=target,
        estimator=estimator,
        explainer=estimator,
        fold_estimators=fold_models,
        folds=folds,
        seed=random_state,
        metrics=metrics,
        calibration=calibration,
        coefficients=coefficients,
        center=center,
        gains=gains_table(binned, sums),
        signs=signs,
    )


def _require_both_classes_in_every_fold(counts: np.ndarray, target: str, folds: int) -> None:
    """Refuse to fit when a fold lacks loans of a class (``counts``: ``class_counts``)."""
    n_resolved, positives = int(counts.sum()), int(counts[:, 1].sum())
    if n_resolved < folds * 2 or (counts == 0).any():
        raise ValueError(
            f"too few resolved loans to fit the {target} model: {n_resolved} with "
            f"{positives} positives; need loans of each class in each of the {folds} folds"
        )


def _fit_on(X: pd.DataFrame, y: np.ndarray, *, sign_constraints: bool) -> tuple:
    """On one fitting sample: the model, the Days_Past_Due-only baseline, and the sample's
    outcome rate (the base rate's score)."""
    model = logistic_pipeline(
        MODEL_NUMERIC, one_hot_columns(MODEL_CATEGORICAL), constrain=sign_constraints
    ).fit(X, y)
    days_past_due_only = logistic_pipeline([BASELINE_FEATURE], []).fit(X[[BASELINE_FEATURE]], y)
    return model, days_past_due_only, float(y.mean())


def _explanation(
    estimator, X: pd.DataFrame, y: np.ndarray
) -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame]:
    """What the reason codes and the model card read of the final model, on its fitting sample
    (``X``, ``y``): each coefficient against its input's univariate direction, the average
    borrower the reasons are measured from, and the coefficients, largest first."""
    prepare = estimator.named_steps["prepare"]
    with single_threaded():
        signs = coefficient_signs(estimator, X, y)
        center = prepare.transform(X).mean(axis=0)
    names = prepare.get_feature_names_out()
    # a categorical input is measured from the book's own odds (its weight of evidence 0)
    center[np.isin(names, RISK_CATEGORICAL)] = 0.0
    coefficients = pd.DataFrame(
        {"feature": names, "coefficient": estimator.named_steps["model"].coef_[0]}
    ).sort_values("coefficient", key=np.abs, ascending=False, ignore_index=True)
    return signs, center, coefficients
