"""Reason codes: each borrower's top reasons for its score, in words a borrower could be told,
with their values."""

from __future__ import annotations

import numpy as np
import pandas as pd

from loan_pipeline.core.model_inputs import one_hot_columns, risk_inputs
from loan_pipeline.core.runtime import single_threaded
from loan_pipeline.domain import INPUT_LABELS, RISK_CATEGORICAL
from loan_pipeline.schemas import CATEGORIES

# How a reason ends, by (category, lowers risk, high): a numeric input says which side of the
# average its value is; a reason of a borrower scored below the base rate says it lowers risk.
ENDINGS = [
    " (low)",
    " (high)",
    " (low, lowers risk)",
    " (high, lowers risk)",
    "",
    "",
    *[" (lowers risk)"] * 2,
]


def reason_codes(
    explainer,
    center: np.ndarray,
    X: pd.DataFrame,
    score: np.ndarray,
    base_rate: float,
    top: int = 3,
    chunk_rows: int = 250_000,
    transformed: np.ndarray | None = None,
) -> pd.DataFrame:
    """Each borrower's ``top`` reasons, in words a borrower could be told, with their values.

    A logistic model's log-odds is a sum of coefficient x transformed input; measured from the
    training data's average borrower (``center``; a categorical input from the book's own odds),
    each term says how far that input moved the score. A borrower scored at or above the book's
    ``base_rate`` gets the terms that raised it most ("Days past due: 150 (high)"); one scored
    below it the terms that lowered it most ("Days past due: 0 (low, lowers risk)"). Each
    coefficient has its input's own univariate sign (``SignConstrainedLogisticRegression``), so
    "high" raises risk only for an input whose higher values go with the outcome. Fewer than
    ``top`` reasons when fewer terms move the score that way. ``transformed``: ``X`` through the
    explainer's preparation, when the caller has it already.
    """
    import pyarrow as pa

    prepare = explainer.named_steps["prepare"]
    coef = explainer.named_steps["model"].coef_[0]
    names = list(prepare.get_feature_names_out())
    categorical = [j for j, n in enumerate(names) if n in RISK_CATEGORICAL]
    columns: dict[str, list] = {f"reason_{i + 1}": [] for i in range(top)}
    with single_threaded():
        for start in range(0, len(X), chunk_rows):
            rows = slice(start, start + chunk_rows)
            part = X.iloc[rows]
            prepared = prepare.transform(part) if transformed is None else transformed[rows]
            lower = np.asarray(score[rows]) < base_rate
            order, moved, ending = _strongest_terms(
                prepared - center, coef, lower, top=top, categorical=categorical
            )
            for i in range(top):
                columns[f"reason_{i + 1}"].append(
                    _reason_text(part, names, order[:, i], ending[:, i], moved[:, i])
                    if i < order.shape[1]
                    else pa.nulls(len(part), pa.large_string())
                )
    return pd.DataFrame(
        {
            name: pd.arrays.ArrowStringArray(pa.chunked_array(parts, pa.large_string()))
            for name, parts in columns.items()
        },
        index=X.index,
    )


def _strongest_terms(
    centred: np.ndarray, coef: np.ndarray, lower: np.ndarray, *, top: int, categorical: list[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per borrower (a row of ``centred``: inputs measured from the average borrower), the
    positions of the ``top`` terms that moved the score most toward its framing (up; down for a
    borrower scored ``lower`` than the base rate), strongest first; whether each moved it at
    all; and how its reason ends (a position in ``ENDINGS``; ``categorical``: the positions of
    the categorical inputs)."""
    contrib = centred * coef
    # a mitigant's term is negative: ranking by the signed term, most toward the framing
    signed = np.where(lower[:, None], -contrib, contrib)
    k = min(top, signed.shape[1])
    part_top = np.argpartition(-signed, k - 1, axis=1)[:, :k]
    within = np.argsort(-np.take_along_axis(signed, part_top, axis=1), axis=1, kind="stable")
    order = np.take_along_axis(part_top, within, axis=1)
    moved = np.take_along_axis(signed, order, axis=1) > 1e-12
    high = np.take_along_axis(centred, order, axis=1) > 0
    ending = np.isin(order, categorical) * 4 + lower[:, None] * 2 + high
    return order, moved, ending


def _reason_text(
    X: pd.DataFrame, names: list[str], codes: np.ndarray, ending: np.ndarray, moved: np.ndarray
):
    """Each row's reason as Arrow text: the label of input ``names[codes[r]]``, its value in
    ``X`` and its ending (a position in ``ENDINGS``); none where the term did not move the
    score."""
    import pyarrow as pa
    import pyarrow.compute as pc

    labels = pa.array([INPUT_LABELS.get(n, (n, ""))[0] + ": " for n in names], pa.large_string())
    text = pc.binary_join_element_wise(
        labels.take(pa.array(codes)),
        _shown_values(X, names, codes),
        pa.array(ENDINGS, pa.large_string()).take(pa.array(ending)),
        pa.scalar("", pa.large_string()),
    )
    return pc.if_else(pa.array(moved), text, pa.scalar(None, pa.large_string()))


def _shown_values(X: pd.DataFrame, names: list[str], codes: np.ndarray):
    """The value of input ``names[codes[r]]`` in row ``r`` of ``X``, as Arrow text: a category
    by its name, a share as a percentage, counts and amounts rounded."""
    import pyarrow as pa
    import pyarrow.compute as pc

    numbers = np.full(len(X), np.nan)
    text = pa.nulls(len(X), pa.large_string())
    for j, name in enumerate(names):
        mine = codes == j
        if not mine.any():
            continue
        kind = INPUT_LABELS.get(name, (name, "rate"))[1]
        if kind == "category":
            block = X[one_hot_columns([name])].to_numpy()
            which = pa.array(block.argmax(axis=1), mask=~mine | (block.max(axis=1) == 0))
            text = pc.coalesce(text, pa.array(CATEGORIES[name], pa.large_string()).take(which))
            continue
        x = X[name].to_numpy(dtype="float64")[mine]
        numbers[mine] = (
            np.round(x * 100)
            if kind == "share"
            else np.round(x, 1)
            if kind == "rate"
            else np.round(x)
        )
    shares = [j for j, n in enumerate(names) if INPUT_LABELS.get(n, ("", ""))[1] == "share"]
    formatted = pc.cast(pa.array(numbers, pa.float64(), from_pandas=True), pa.large_string())
    percent = pc.binary_join_element_wise(
        formatted, pa.scalar("%", pa.large_string()), pa.scalar("", pa.large_string())
    )
    return pc.coalesce(text, pc.if_else(pa.array(np.isin(codes, shares)), percent, formatted))


def reasons_on_sample(loans, scores, positions: np.ndarray) -> tuple[dict[str, float], dict]:
    """The reasons given to the borrowers at ``positions`` of ``scores`` (a frame, or the
    partitions of one; ``loans`` alike), read against the book's own relations
    (``validation.wrong_signed_reasons``), and the ten kinds of first reason given most."""
    from loan_pipeline.core.partitions import take_positions
    from loan_pipeline.core.validation import reason_kinds, wrong_signed_reasons

    scored = take_positions(scores, positions)
    sampled = take_positions(loans, positions)
    checked = wrong_signed_reasons(sampled, scored, risk_inputs(sampled, one_hot=False))
    return checked, reason_kinds(scored["reason_1"]).head(10).to_dict()
