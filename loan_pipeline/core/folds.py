"""Which loans each outcome model is fitted on: cross-validation folds and fitting samples.

A borrower's fold and its sample draw are a keyed hash of its Borrower_ID alone, so they are the
same whether the book is one frame or in partitions. ``class_counts`` and ``drawn_rows`` read one
frame or partition; their results are summed or concatenated over all of them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from loan_pipeline.core import model_inputs
from loan_pipeline.core.model_inputs import TARGETS, model_source


# Hash keys are 16 characters; the seed picks one, so another seed is another fold assignment.
def _hash_key(seed: int) -> str:
    return f"loanfolds{seed:07d}"[-16:].rjust(16, "0")


def folds_and_draws(ids: pd.Series, folds: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Each borrower's fold (0 .. folds - 1) and a uniform draw in [0, 1), both from a keyed
    hash of its Borrower_ID alone: the same in a whole frame and in any partition of it."""
    hashed = pd.util.hash_array(
        np.asarray(ids, dtype=object), hash_key=_hash_key(seed), categorize=False
    )
    fold = (hashed % np.uint64(folds)).astype("int8")
    # the draw from the hash's bits mixed again (splitmix64's finaliser), independent of the fold
    z = hashed + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return fold, (z >> np.uint64(11)).astype("float64") / float(2**53)


def resolved_labels(part: pd.DataFrame, target: str) -> tuple[np.ndarray, np.ndarray]:
    """(positions of the resolved loans, their 0/1 target) in one frame or partition."""
    column, rule = TARGETS[target]
    at = np.flatnonzero(part[column].notna().to_numpy())
    return at, rule(part[column].iloc[at]).to_numpy(dtype="int64")


def class_counts(part: pd.DataFrame, target: str, folds: int, seed: int) -> np.ndarray:
    """Resolved loans per fold and class (``folds`` x 2) of one frame or partition."""
    at, y = resolved_labels(part, target)
    fold, _ = folds_and_draws(part["Borrower_ID"].iloc[at], folds, seed)
    return np.bincount(fold.astype("int64") * 2 + y, minlength=folds * 2).reshape(folds, 2)


def drawn_rows(part: pd.DataFrame, target: str, folds: int, seed: int, below: float):
    """The resolved loans whose draw is below ``below``, as model sources with their target,
    fold and draw: the candidates of every fitting sample."""
    at, y = resolved_labels(part, target)
    fold, draw = folds_and_draws(part["Borrower_ID"].iloc[at], folds, seed)
    keep = draw < below
    source = model_source(part.iloc[at[keep]])
    return source.assign(_y=y[keep], _fold=fold[keep], _draw=draw[keep])


def fitting_samples(
    loans, target: str, counts: np.ndarray, *, folds: int, seed: int, max_train_rows: int
) -> tuple[pd.DataFrame, list[np.ndarray]]:
    """The candidates drawn from ``loans`` (``drawn_rows``, in the book's order) and, for each
    fold's model and then the final one, the positions among them of its fitting sample: at most
    ``max_train_rows`` of the loans it may learn from (the other folds'; the final model's, all
    resolved loans), those with the smallest draws, a uniform sample drawn by the borrowers' own
    hashes. ``counts``: ``class_counts`` of the whole book."""
    n_resolved = int(counts.sum())
    train_sizes = [n_resolved - int(counts[k].sum()) for k in range(folds)] + [n_resolved]
    wanted = [min(max_train_rows, n) for n in train_sizes]
    drawn, candidates = _candidates(loans, target, folds, seed, train_sizes, wanted)
    draw = drawn["_draw"].to_numpy()
    return drawn, [_smallest_draws(draw, c, w) for c, w in zip(candidates, wanted, strict=True)]


def _candidates(
    loans, target: str, folds: int, seed: int, train_sizes: list[int], wanted: list[int]
) -> tuple[pd.DataFrame, list[np.ndarray]]:
    """Every resolved loan whose draw is below a threshold that leaves each sample enough rows
    (with a margin; should a sample still be short, the threshold rises and the pass is
    repeated), and per sample which of them it may take."""
    from loan_pipeline.core.partitions import summarise

    below = min(1.0, max(w / n for w, n in zip(wanted, train_sizes, strict=True)) * 1.1)
    while True:
        drawn = summarise(
            drawn_rows,
            pd.concat,
            loans,
            target,
            folds,
            seed,
            below,
            piece_rows=model_inputs.SCORE_CHUNK,
        )
        candidates = [drawn["_fold"].to_numpy() != k for k in range(folds)]
        candidates.append(np.ones(len(drawn), dtype=bool))
        if below >= 1.0 or all(c.sum() >= w for c, w in zip(candidates, wanted, strict=True)):
            return drawn.reset_index(drop=True), candidates
        below = min(1.0, below * 1.5)


def _smallest_draws(draw: np.ndarray, candidate: np.ndarray, size: int) -> np.ndarray:
    """The ``size`` candidates with the smallest draws, in the book's order."""
    rows = np.flatnonzero(candidate)
    smallest = rows[np.argsort(draw[rows], kind="stable")[:size]]
    return np.sort(smallest)
