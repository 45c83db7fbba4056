"""The outcome model's out-of-fold evaluation, against a base-rate and a Days_Past_Due-only
baseline.

Out-of-fold scores are counted in fine bins of the probability (``evaluation_counts``, one frame
or partition at a time): the metrics and the calibration table are sums over partitions, so a
book of any size is evaluated in pieces. ``_metrics`` and ``calibration_table`` are the same
figures from the loans themselves, what the binned ones are tested against.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from loan_pipeline.core import model_inputs
from loan_pipeline.core.folds import folds_and_draws, resolved_labels
from loan_pipeline.core.logistic import probability
from loan_pipeline.core.model_inputs import BASELINE_FEATURE, model_source, risk_inputs
from loan_pipeline.core.runtime import single_threaded

SCORE_BINS = 2**14


def _bin_of(p: np.ndarray) -> np.ndarray:
    return np.minimum((p * SCORE_BINS).astype("int64"), SCORE_BINS - 1)


def _metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """ROC AUC, PR AUC (average precision) and Brier score of scores ``p`` for labels ``y``.

    The same definitions as scikit-learn's ``roc_auc_score``, ``average_precision_score`` and
    ``brier_score_loss`` (tied scores form one threshold; tested equal), from one sort instead
    of one per metric: on a million borrowers they are a large part of the model's cost.
    """
    y = np.asarray(y, dtype=float)
    p = np.asarray(p, dtype=float)
    brier = float(np.mean((p - y) ** 2))
    positives = y.sum()
    if not 0 < positives < len(y):
        return {"roc_auc": float("nan"), "pr_auc": float("nan"), "brier": brier}
    order = np.argsort(-p)  # order within a tie does not matter: a tie is one threshold
    ys, ps = y[order], p[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(ps)), len(ps) - 1]  # one threshold per value
    tp = np.cumsum(ys)[last_of_tie]
    fp = (last_of_tie + 1) - tp
    tpr = np.r_[0.0, tp / positives]
    fpr = np.r_[0.0, fp / (len(y) - positives)]
    roc_auc = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
    precision = tp / (tp + fp)
    pr_auc = float(np.sum(np.diff(tpr) * precision))
    return {"roc_auc": roc_auc, "pr_auc": pr_auc, "brier": brier}


def calibration_table(y: np.ndarray, p: np.ndarray, bins: int = 10) -> pd.DataFrame:
    """Observed rate against mean predicted probability, by decile of the prediction."""
    order = pd.qcut(pd.Series(p).rank(method="first"), q=min(bins, len(p)), labels=False)
    frame = pd.DataFrame({"bin": order, "predicted": p, "observed": y.astype(float)})
    out = frame.groupby("bin").agg(
        predicted=("predicted", "mean"),
        observed=("observed", "mean"),
        borrowers=("observed", "size"),
    )
    out.index = out.index.astype(int) + 1
    return out.rename_axis("decile").reset_index()


def evaluation_counts(
    part: pd.DataFrame,
    target: str,
    fitted: list,
    days_past_due_only: list,
    folds: int,
    seed: int,
) -> dict[str, np.ndarray]:
    """One frame's or partition's out-of-fold evaluation, as sums: resolved loans per fold,
    class and score bin for the model (``fitted``: fold models) and the Days_Past_Due-only
    baseline (``days_past_due_only``: fold models of that one input), the model's probabilities summed per bin, squared errors per fold."""
    at, y = resolved_labels(part, target)
    fold, _ = folds_and_draws(part["Borrower_ID"].iloc[at], folds, seed)
    p, p_baseline = np.empty(len(at)), np.empty(len(at))
    with single_threaded():
        for start in range(0, len(at), model_inputs.SCORE_CHUNK):
            rows = slice(start, start + model_inputs.SCORE_CHUNK)
            X = risk_inputs(model_source(part.iloc[at[rows]]))
            f = fold[rows]
            for k in range(folds):
                mine = np.flatnonzero(f == k)
                if len(mine):
                    Xk = X.iloc[mine]
                    p[start + mine] = probability(fitted[k], Xk)
                    p_baseline[start + mine] = probability(
                        days_past_due_only[k], Xk[[BASELINE_FEATURE]]
                    )
    out = {}
    for name, scores in (("model", p), ("days_past_due_only", p_baseline)):
        cell = (fold.astype("int64") * 2 + y) * SCORE_BINS + _bin_of(scores)
        out[name] = np.bincount(cell, minlength=folds * 2 * SCORE_BINS).reshape(
            folds, 2, SCORE_BINS
        )
        out[f"{name}_squared_error"] = np.bincount(fold, weights=(scores - y) ** 2, minlength=folds)
    out["model_sum"] = np.bincount(_bin_of(p), weights=p, minlength=SCORE_BINS)
    return out


def _binned_metrics(negatives: np.ndarray, positives: np.ndarray, squared: float) -> dict:
    """ROC AUC, PR AUC (average precision) and Brier score from loans counted per score bin
    (ascending): ``_metrics`` with every bin one threshold, as a tie is there."""
    n1, n0 = positives.sum(), negatives.sum()
    n = n1 + n0
    brier = float(squared / n) if n else float("nan")
    if not (n1 and n0):
        return {"roc_auc": float("nan"), "pr_auc": float("nan"), "brier": brier}
    used = (positives + negatives) > 0
    tp = np.cumsum(positives[used][::-1]).astype("float64")
    fp = np.cumsum(negatives[used][::-1]).astype("float64")
    tpr = np.r_[0.0, tp / n1]
    fpr = np.r_[0.0, fp / n0]
    roc_auc = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
    pr_auc = float(np.sum(np.diff(tpr) * (tp / (tp + fp))))
    return {"roc_auc": roc_auc, "pr_auc": pr_auc, "brier": brier}


def binned_calibration(counts: np.ndarray, sums: np.ndarray, bins: int = 10) -> pd.DataFrame:
    """``calibration_table`` from loans counted per score bin (``counts``: class x bin) and
    their probabilities summed per bin: each bin goes to the decile of its middle loan's rank."""
    per_bin = counts.sum(axis=0)
    n = per_bin.sum()
    middle = np.cumsum(per_bin) - per_bin / 2
    decile = np.minimum((middle * min(bins, n) / n).astype("int64"), bins - 1)
    used = per_bin > 0
    frame = (
        pd.DataFrame(
            {
                "decile": decile[used] + 1,
                "predicted": sums[used],
                "observed": counts[1][used].astype("float64"),
                "borrowers": per_bin[used],
            }
        )
        .groupby("decile", as_index=False)
        .sum()
    )
    frame["predicted"] /= frame["borrowers"]
    frame["observed"] /= frame["borrowers"]
    return frame[["decile", "predicted", "observed", "borrowers"]]


def out_of_fold_metrics(
    evaluation: dict[str, np.ndarray], counts: np.ndarray, rates: list[float], *, folds: int
) -> dict[str, float]:
    """ROC AUC, PR AUC and Brier score of the model and its two baselines on the held-out folds
    (the model's with their spread across folds), the model's Brier skill over the base rate,
    and the loans evaluated. ``evaluation``: ``evaluation_counts`` summed over the book;
    ``counts``: its ``class_counts``; ``rates``: each fold's base rate, its fitting sample's mean.
    """
    base, base_squared = _base_rate_counts(counts, rates, folds)
    tables = {
        "model": (evaluation["model"], evaluation["model_squared_error"]),
        "base_rate": (base, base_squared),
        "days_past_due_only": (
            evaluation["days_past_due_only"],
            evaluation["days_past_due_only_squared_error"],
        ),
    }
    metrics: dict[str, float] = {}
    for name, (binned, squared) in tables.items():
        pooled = binned.sum(axis=0)
        for metric, value in _binned_metrics(pooled[0], pooled[1], squared.sum()).items():
            metrics[f"{name}_{metric}"] = value
    # The base rate is a constant within each fold, so it has no ranking: pooled over folds it
    # would rank the folds' slightly different rates against each other (ROC AUC 0.496 on one
    # book). Its ROC AUC and PR AUC are the mean within folds: 0.5 and the positive rate.
    within = [_binned_metrics(base[k, 0], base[k, 1], base_squared[k]) for k in range(folds)]
    for metric in ("roc_auc", "pr_auc"):
        metrics[f"base_rate_{metric}"] = float(np.mean([m[metric] for m in within]))
    metrics |= _spread_across_folds(*tables["model"], folds)
    metrics["brier_skill_vs_base_rate"] = 1 - metrics["model_brier"] / metrics["base_rate_brier"]
    n_resolved, positives = int(counts.sum()), int(counts[:, 1].sum())
    metrics["resolved_loans"] = n_resolved
    metrics["positive_rate"] = positives / n_resolved
    metrics["folds"] = folds
    return metrics


def _base_rate_counts(
    counts: np.ndarray, rates: list[float], folds: int
) -> tuple[np.ndarray, np.ndarray]:
    """The base rate's evaluation, as ``evaluation_counts`` gives the model's: its score in fold
    k is the mean of its fitting sample, so one bin per fold holds all of fold k's loans."""
    base = np.zeros((folds, 2, SCORE_BINS), dtype="int64")
    base_squared = np.zeros(folds)
    for k, rate in enumerate(rates):
        base[k, :, _bin_of(np.array([rate]))[0]] = counts[k]
        base_squared[k] = counts[k, 0] * rate**2 + counts[k, 1] * (1 - rate) ** 2
    return base, base_squared


def _spread_across_folds(binned: np.ndarray, squared: np.ndarray, folds: int) -> dict[str, float]:
    """The standard deviation across folds of each fold's own ROC AUC, PR AUC and Brier score."""
    fold_metrics = [_binned_metrics(binned[k, 0], binned[k, 1], squared[k]) for k in range(folds)]
    return {
        f"model_{metric}_fold_sd": float(np.std([m[metric] for m in fold_metrics], ddof=1))
        for metric in ("roc_auc", "pr_auc", "brier")
    }
