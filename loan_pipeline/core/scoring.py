"""Every borrower's score: out-of-fold for a resolved loan (from the fold model that never saw
it), the final model's for an open one, with the written-off score and the reasons; or the
notebook forest's score of its features."""

from __future__ import annotations

import numpy as np
import pandas as pd

from loan_pipeline.core import model_inputs
from loan_pipeline.core.logistic import probability
from loan_pipeline.core.model_inputs import risk_inputs
from loan_pipeline.core.reason_codes import reason_codes
from loan_pipeline.core.risk import RiskModel
from loan_pipeline.core.runtime import parallel_map, single_threaded


def scores_of(loans: pd.DataFrame, model: RiskModel) -> pd.DataFrame:
    """``score_borrowers`` of the recommended model on a frame, or one partition of it."""
    return score_borrowers(model, loans)


def score_borrowers(
    model: RiskModel, loans: pd.DataFrame, features: pd.DataFrame | None = None
) -> pd.DataFrame:
    """One row per borrower: Borrower_ID, risk_score, p_written_off, score_source,
    not_fully_recovered (the observed outcome; empty for an open loan), reason_1..3. Resolved borrowers get their out-of-fold score; open loans the full model's."""
    if model.method == "notebook":
        return _notebook_scores(model, features)
    from loan_pipeline.core.joins import text_from_codes

    score = np.empty(len(loans))
    written = np.full(len(loans), np.nan)

    def chunk(start: int) -> pd.DataFrame:
        # chunks are independent and write disjoint slices: scored side by side, one core each
        rows = loans.iloc[start : start + model_inputs.SCORE_CHUNK]
        end = start + len(rows)
        score[start:end], written[start:end], reasons = _score_rows(model, rows)
        return reasons

    parts = parallel_map(chunk, range(0, len(loans), model_inputs.SCORE_CHUNK))
    reasons = (
        pd.concat(parts, ignore_index=True)
        if parts
        else pd.DataFrame({f"reason_{i}": pd.array([], "string[pyarrow]") for i in (1, 2, 3)})
    )
    observed = model.primary.observed(loans)
    resolved = ~np.isnan(observed)
    return pd.DataFrame(
        {
            "Borrower_ID": loans["Borrower_ID"].array,
            "risk_score": score,
            "p_written_off": written,
            "score_source": text_from_codes(["out_of_fold", "open_loan"], ~resolved),
            "not_fully_recovered": outcome_flags(observed),
            "reason_1": reasons["reason_1"].array,
            "reason_2": reasons["reason_2"].array,
            "reason_3": reasons["reason_3"].array,
        }
    )


def outcome_flags(observed: np.ndarray) -> pd.arrays.BooleanArray:
    """0/1 outcomes (NaN: open loan) as yes/no with empty cells: what an analyst filters on."""
    missing = np.isnan(observed)
    return pd.arrays.BooleanArray(np.nan_to_num(observed) == 1.0, missing)


def _score_rows(
    model: RiskModel, rows: pd.DataFrame
) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """A chunk of borrowers' risk scores, written-off scores and reasons, from inputs made once
    for both models and the reasons."""
    primary, secondary = model.primary, model.secondary
    X = risk_inputs(rows)
    # the final pipeline is also the explainer: its preparation is computed once for the score
    # and the reasons
    final = primary.estimator
    prepared = final.named_steps["prepare"].transform(X)
    full = probability(final, X, prepared)
    # a resolved borrower's score is out-of-fold: from the model that never saw it
    held_out = primary.out_of_fold(rows, X)
    score = np.where(np.isnan(held_out), full, held_out)
    written = np.full(len(rows), np.nan)
    if secondary is not None:
        held_out = secondary.out_of_fold(rows, X)
        full = probability(secondary.estimator, X)
        written = np.where(np.isnan(held_out), full, held_out)
    explainer = primary.explainer
    reasons = reason_codes(
        explainer,
        primary.center,
        X,
        score,
        primary.metrics["positive_rate"],
        transformed=prepared if explainer is final else None,
    )
    return score, written, reasons.reset_index(drop=True)


def _notebook_scores(model: RiskModel, features: pd.DataFrame) -> pd.DataFrame:
    """The notebook forest's score of every borrower of its features table, with its training
    label and whether the borrower was in its test split; no reasons."""
    X = features[model.features].to_numpy(dtype="float64")
    with single_threaded():
        proba = model.estimator.predict_proba(X)[:, 1]
    ids = features["Borrower_ID"]
    labels = model.labels.reindex(ids).fillna(False).to_numpy(dtype=float)
    source = np.where(ids.isin(set(model.test_ids)), "test", "train")
    return pd.DataFrame(
        {
            "Borrower_ID": ids.to_numpy(),
            "risk_score": proba.astype("float64"),
            "p_written_off": np.nan,
            "score_source": source.astype(object),
            "not_fully_recovered": outcome_flags(labels),
            "reason_1": None,
            "reason_2": None,
            "reason_3": None,
        }
    )


def score_summary(scores) -> tuple[float, dict[str, int], int]:
    """Of a scores table (pandas or Dask): the mean score, the borrowers per score source (most
    first), and the borrowers scored."""
    from loan_pipeline.core.partitions import score_sum, sum_counts, summarise, value_counts

    sources = summarise(value_counts, sum_counts, scores, ["score_source"])
    total = summarise(score_sum, sum, scores)
    mean = float(total[0] / total[1]) if total[1] else float("nan")
    return mean, sources.sort_values(ascending=False, kind="stable").to_dict(), int(total[1])
