"""The risk model: fit, evaluate honestly, score every borrower, explain each score.

``fit_risk_model`` is the single entry point; ``method`` picks the implementation:

- ``recommended``: the target is the real outcome, "not Fully Recovered" (and, as a second model,
  "Written Off"), learned from the loans that have one. The model is a logistic regression
  (maximum likelihood, so its probabilities are calibrated by construction; the calibration
  table and chart check it on the held-out folds) on pre-outcome columns only (see ``RISK_NUMERIC``, ``RISK_CATEGORICAL``,
  ``EXCLUDED``). Every resolved borrower's score is out-of-fold (from a model that never saw
  that borrower); open loans are scored by the model fitted on all resolved loans. Metrics are
  computed on the held-out folds, next to a base-rate and a one-feature (Days_Past_Due) baseline.
- ``notebook``: the original method, for comparison: a RandomForest learns the
  high-burden-segment flag (so it only re-learns the clustering).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from loan_pipeline.core.runtime import parallel_map, single_threaded
from loan_pipeline.core.summaries import add_elementwise
from loan_pipeline.core.validation import (
    BOOTSTRAP_REPLICATES,
    coefficient_signs,
    gains_table,
    validation_metrics,
)
from loan_pipeline.domain import INPUT_LABELS, RISK_CATEGORICAL, RISK_NUMERIC
from loan_pipeline.schemas import CATEGORIES

# Ratios a credit analyst reads first: instalment burden, share still owed, and the share of the
# balance that no collateral secures.
RISK_ENGINEERED = ["emi_to_income", "outstanding_share", "unsecured_share"]
# The model's inputs: the columns as given, except those another input already carries, since
# nearly collinear inputs share their effect arbitrarily (variance inflation in brackets, measured
# on a generated 50,000-row book with all of them in): Collateral_Value and Loan_Type (a Personal
# loan has no collateral; 69) by unsecured_share; Monthly_EMI (Outstanding_Loan_Amount /
# Loan_Tenure) by emi_to_income; Loan_Amount by outstanding_share and the balance (27).
MERGED: dict[str, str] = {
    "Collateral_Value": "unsecured_share",
    "Loan_Type": "unsecured_share",
    "Monthly_EMI": "emi_to_income",
    "Loan_Amount": "outstanding_share",
}
MODEL_NUMERIC = [c for c in RISK_NUMERIC if c not in MERGED] + RISK_ENGINEERED
MODEL_CATEGORICAL = [c for c in RISK_CATEGORICAL if c not in MERGED]
# Heavy-tailed amounts enter as log(1 + x).
LOG_COLUMNS = [
    "Monthly_Income",
    "Loan_Amount",
    "Collateral_Value",
    "Outstanding_Loan_Amount",
    "Monthly_EMI",
    "emi_to_income",
]

# Every loan-book column that is not a model input, and why.
EXCLUDED: dict[str, str] = {
    "Recovery_Status": "the outcome itself (the target is derived from it)",
    "Collection_Attempts": "outcome-side: recorded during collection, after the loan went bad",
    "Collection_Method": "outcome-side: chosen during collection, after the loan went bad",
    "Legal_Action_Taken": "outcome-side: taken during collection (every 'Yes' is Written Off)",
    "Age": "protected characteristic (fair lending): monitored in the fairness report, not used",
    "Gender": "protected characteristic (fair lending): monitored in the fairness report, not used",
    "Borrower_ID": "identifier",
    "Loan_ID": "identifier",
}

TARGETS = {
    "not_fully_recovered": ("Recovery_Status", lambda s: s != "Fully Recovered"),
    "written_off": ("Recovery_Status", lambda s: s == "Written Off"),
}
BASELINE_FEATURE = "Days_Past_Due"
# Rows turned into model inputs at a time when scoring: bounds memory on large books.
SCORE_CHUNK = 500_000


def risk_inputs(loans: pd.DataFrame, one_hot: bool = True) -> pd.DataFrame:
    """The recommended model's input columns: pre-outcome columns plus three ratios, and (unless
    ``one_hot`` is False) the categories one-hot encoded."""
    income = loans["Monthly_Income"].to_numpy(dtype="float64")
    amount = loans["Loan_Amount"].to_numpy(dtype="float64")
    outstanding = loans["Outstanding_Loan_Amount"].to_numpy(dtype="float64")
    collateral = loans["Collateral_Value"].to_numpy(dtype="float64")
    with np.errstate(divide="ignore", invalid="ignore"):
        emi_to_income = np.where(
            income > 0, loans["Monthly_EMI"].to_numpy(dtype="float64") / income, 0.0
        )
        outstanding_share = np.where(amount > 0, outstanding / amount, 0.0)
        covered = np.where(outstanding > 0, collateral / outstanding, 1.0)
    out = loans[RISK_NUMERIC].astype("float64")
    out["emi_to_income"] = np.clip(emi_to_income, 0, 10)
    out["outstanding_share"] = np.clip(outstanding_share, 0, 1)
    out["unsecured_share"] = 1.0 - np.clip(covered, 0, 1)
    # Categories one-hot encoded here, over the contract's fixed category sets, so the model sees
    # numbers only (scikit-learn's encoder would turn a million Arrow strings into Python
    # objects at every fit and every prediction). Named "<column>_<value>", as OneHotEncoder
    # names them.
    for col in RISK_CATEGORICAL if one_hot else []:
        for value in CATEGORIES[col]:
            same = loans[col].eq(value).to_numpy(dtype=bool, na_value=False)
            out[f"{col}_{value}"] = same.astype("float64")
    return out


def model_source(loans: pd.DataFrame) -> pd.DataFrame:
    """The columns ``risk_inputs`` reads, with the categories as pandas categoricals over the
    contract's sets (codes from Arrow's ``index_in``; a value outside the set, or a missing one,
    has no category). ``risk_inputs`` of it equals ``risk_inputs`` of ``loans`` (tested), but
    taking rows of it (every fold, every chunk) moves one-byte codes instead of strings, and the
    one-hot comparison is on codes."""
    import pyarrow as pa
    import pyarrow.compute as pc

    columns: dict[str, object] = {c: loans[c] for c in RISK_NUMERIC}
    for col in RISK_CATEGORICAL:
        codes = pc.index_in(
            pa.array(loans[col].array, pa.large_string()),
            value_set=pa.array(CATEGORIES[col], pa.large_string()),
        )
        codes = np.asarray(codes.fill_null(-1).to_numpy(zero_copy_only=False), dtype="int8")
        columns[col] = pd.Categorical.from_codes(codes, categories=CATEGORIES[col])
    return pd.DataFrame(columns, index=loans.index, copy=False)


def one_hot_columns(columns: list[str] = RISK_CATEGORICAL) -> list[str]:
    """The one-hot input columns of ``risk_inputs`` for categorical ``columns``, in order."""
    return [f"{col}_{value}" for col in columns for value in CATEGORIES[col]]


def category_groups(columns: list[str]) -> dict[str, list[int]]:
    """Each categorical input's positions among one-hot ``columns`` ("<input>_<value>")."""
    return {
        col: [i for i, c in enumerate(columns) if c.startswith(f"{col}_")]
        for col in RISK_CATEGORICAL
        if any(c.startswith(f"{col}_") for c in columns)
    }


def _pipeline(numeric: list[str], categorical: list[str], C: float = 1.0, constrain: bool = True):
    """Inputs -> standardised numbers (logs of the heavy-tailed amounts; one weight-of-evidence
    column per categorical input) -> the sign-constrained logistic regression."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    from loan_pipeline.core.signed import CategoryRisk, SignConstrainedLogisticRegression

    logged = [c for c in numeric if c in LOG_COLUMNS]
    plain = [c for c in numeric if c not in LOG_COLUMNS]
    parts = []
    if logged:
        parts.append(
            (
                "log",
                Pipeline(
                    [
                        ("log1p", FunctionTransformer(np.log1p, feature_names_out="one-to-one")),
                        ("scale", StandardScaler()),
                    ]
                ),
                logged,
            )
        )
    if plain:
        parts.append(("num", StandardScaler(), plain))
    if categorical:  # one-hot (risk_inputs): one weight-of-evidence column per input
        parts.append(("cat", CategoryRisk(category_groups(categorical)), categorical))
    return Pipeline(
        [
            ("prepare", ColumnTransformer(parts, verbose_feature_names_out=False)),
            ("model", SignConstrainedLogisticRegression(C=C, constrain=constrain)),
        ]
    )


def probability(pipeline, X: pd.DataFrame, prepared: np.ndarray | None = None) -> np.ndarray:
    """A fitted logistic pipeline's probability of the positive class: its ``predict_proba``
    (to the last bit or two), computed row by row (each row's own sum of coefficient x input),
    so a borrower's score does not depend on which other rows are scored with it: a book scored
    whole and in partitions gives the same numbers, bit for bit. ``prepared``: ``X`` through
    the pipeline's preparation, when the caller has it already."""
    if prepared is None:
        prepared = pipeline.named_steps["prepare"].transform(X)
    model = pipeline.named_steps["model"]
    z = (np.asarray(prepared, dtype="float64") * model.coef_[0]).sum(axis=1) + model.intercept_[0]
    return 1.0 / (1.0 + np.exp(-z))


def pipeline_scores(pipelines: list, loans: pd.DataFrame) -> list[np.ndarray]:
    """Each fitted pipeline's score of every borrower of ``loans`` (a frame, or one partition of
    it): ``probability``, so the same bits in any partitioning. ``SCORE_CHUNK`` rows at a time,
    side by side on the cores, so memory stays bounded on a large book; a chunk's inputs are
    made once for all the pipelines (they cost about as much as a pipeline's scoring)."""
    out = [np.empty(len(loans)) for _ in pipelines]

    def chunk(start: int) -> None:
        rows = loans.iloc[start : start + SCORE_CHUNK]
        X = risk_inputs(rows)
        for scores, pipeline in zip(out, pipelines, strict=True):
            scores[start : start + len(rows)] = probability(pipeline, X)

    parallel_map(chunk, range(0, len(loans), SCORE_CHUNK))
    return out


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


@dataclass
class OutcomeModel:
    """One outcome model with its out-of-fold evaluation.

    Each borrower's fold comes from its Borrower_ID alone (``folds_and_draws``), so a borrower's
    out-of-fold score is computed wherever its row is (the fold models travel with the model),
    and the fitting samples are the same rows whether the book is one frame or in partitions.
    """

    target: str
    estimator: object  # the logistic pipeline fitted on (a sample of) all resolved loans
    explainer: object  # the same pipeline: reason codes decompose the score's own log-odds
    fold_estimators: list  # fold k's pipeline, fitted without fold k: its borrowers' scores
    folds: int
    seed: int
    metrics: dict[str, float]
    calibration: pd.DataFrame
    coefficients: pd.DataFrame
    center: np.ndarray  # mean transformed input of the training loans (reason codes)
    gains: pd.DataFrame | None = None  # decile gains table of the out-of-fold scores
    signs: pd.DataFrame | None = None  # each coefficient against its univariate direction

    @property
    def signs_agree(self) -> bool:
        return self.signs is None or bool(self.signs["agrees"].all())

    def observed(self, loans: pd.DataFrame) -> np.ndarray:
        """The 0/1 target of each loan (NaN: open loan)."""
        column, rule = TARGETS[self.target]
        status = loans[column]
        out = rule(status).to_numpy(dtype="float64", na_value=np.nan)
        out[status.isna().to_numpy()] = np.nan
        return out

    def out_of_fold(self, loans: pd.DataFrame, X: pd.DataFrame | None = None) -> np.ndarray:
        """Each resolved loan's score from the fold model that never saw it (NaN: open loan).
        ``X``: ``risk_inputs`` of ``loans``, when the caller has it already."""
        resolved = loans[TARGETS[self.target][0]].notna().to_numpy()
        fold, _ = folds_and_draws(loans["Borrower_ID"], self.folds, self.seed)
        out = np.full(len(loans), np.nan)
        X = risk_inputs(loans) if X is None else X
        with single_threaded():
            for k, fitted in enumerate(self.fold_estimators):
                rows = np.flatnonzero(resolved & (fold == k))
                if len(rows):
                    out[rows] = probability(fitted, X.iloc[rows])
        return out


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


def _labels(part: pd.DataFrame, target: str) -> tuple[np.ndarray, np.ndarray]:
    """(positions of the resolved loans, their 0/1 target) in one frame or partition."""
    column, rule = TARGETS[target]
    at = np.flatnonzero(part[column].notna().to_numpy())
    return at, rule(part[column].iloc[at]).to_numpy(dtype="int64")


def class_counts(part: pd.DataFrame, target: str, folds: int, seed: int) -> np.ndarray:
    """Resolved loans per fold and class (``folds`` x 2) of one frame or partition."""
    at, y = _labels(part, target)
    fold, _ = folds_and_draws(part["Borrower_ID"].iloc[at], folds, seed)
    return np.bincount(fold.astype("int64") * 2 + y, minlength=folds * 2).reshape(folds, 2)


def drawn_rows(part: pd.DataFrame, target: str, folds: int, seed: int, below: float):
    """The resolved loans whose draw is below ``below``, as model sources with their target,
    fold and draw: the candidates of every fitting sample."""
    at, y = _labels(part, target)
    fold, draw = folds_and_draws(part["Borrower_ID"].iloc[at], folds, seed)
    keep = draw < below
    source = model_source(part.iloc[at[keep]])
    return source.assign(_y=y[keep], _fold=fold[keep], _draw=draw[keep])


# Out-of-fold scores are counted in fine bins of the probability: the metrics and the
# calibration table are sums over partitions, so a book of any size is evaluated in pieces.
SCORE_BINS = 2**14


def _bin_of(p: np.ndarray) -> np.ndarray:
    return np.minimum((p * SCORE_BINS).astype("int64"), SCORE_BINS - 1)


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
    at, y = _labels(part, target)
    fold, _ = folds_and_draws(part["Borrower_ID"].iloc[at], folds, seed)
    p, p_baseline = np.empty(len(at)), np.empty(len(at))
    with single_threaded():
        for start in range(0, len(at), SCORE_CHUNK):
            rows = slice(start, start + SCORE_CHUNK)
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

    pieces = {"piece_rows": SCORE_CHUNK, "split_every": 8}  # sums: merged on the workers
    counts = summarise(class_counts, add_elementwise, loans, target, folds, random_state, **pieces)
    n_resolved, positives = int(counts.sum()), int(counts[:, 1].sum())
    if n_resolved < folds * 2 or (counts == 0).any():
        raise ValueError(
            f"too few resolved loans to fit the {target} model: {n_resolved} with "
            f"{positives} positives; need loans of each class in each of the {folds} folds"
        )
    train_sizes = [n_resolved - int(counts[k].sum()) for k in range(folds)] + [n_resolved]
    wanted = [min(max_train_rows, n) for n in train_sizes]
    # the candidates: every draw below a threshold that leaves each sample enough rows (with a
    # margin; should a sample still be short, the threshold rises and the pass is repeated)
    below = min(1.0, max(w / n for w, n in zip(wanted, train_sizes, strict=True)) * 1.1)
    while True:
        drawn = summarise(
            drawn_rows, pd.concat, loans, target, folds, random_state, below, piece_rows=SCORE_CHUNK
        )
        candidates = [drawn["_fold"].to_numpy() != k for k in range(folds)]
        candidates.append(np.ones(len(drawn), dtype=bool))
        if below >= 1.0 or all(c.sum() >= w for c, w in zip(candidates, wanted, strict=True)):
            break
        below = min(1.0, below * 1.5)
    drawn = drawn.reset_index(drop=True)
    draw = drawn["_draw"].to_numpy()
    y = drawn["_y"].to_numpy()

    def sample(candidate: np.ndarray, size: int) -> np.ndarray:
        rows = np.flatnonzero(candidate)
        smallest = rows[np.argsort(draw[rows], kind="stable")[:size]]
        return np.sort(smallest)  # in the book's order

    samples = [sample(c, w) for c, w in zip(candidates, wanted, strict=True)]
    numeric = MODEL_NUMERIC
    X_drawn = risk_inputs(drawn)

    def fit(rows: np.ndarray) -> tuple:
        X = X_drawn.iloc[rows]
        model = _pipeline(
            numeric, one_hot_columns(MODEL_CATEGORICAL), constrain=sign_constraints
        ).fit(X, y[rows])
        days_past_due_only = _pipeline([BASELINE_FEATURE], []).fit(X[[BASELINE_FEATURE]], y[rows])
        return model, days_past_due_only, float(y[rows].mean())

    # the folds and the final fit are independent: side by side, one core each
    fitted = parallel_map(fit, samples)
    *by_fold, (estimator, _, _) = fitted
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
    # the base rate's score in fold k is the mean of its fitting sample: one bin per fold
    base = np.zeros((folds, 2, SCORE_BINS), dtype="int64")
    base_squared = np.zeros(folds)
    for k, (_, _, rate) in enumerate(by_fold):
        base[k, :, _bin_of(np.array([rate]))[0]] = counts[k]
        base_squared[k] = counts[k, 0] * rate**2 + counts[k, 1] * (1 - rate) ** 2

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
    model_binned, model_squared = tables["model"]
    fold_metrics = [
        _binned_metrics(model_binned[k, 0], model_binned[k, 1], model_squared[k])
        for k in range(folds)
    ]
    for metric in ("roc_auc", "pr_auc", "brier"):
        metrics[f"model_{metric}_fold_sd"] = float(
            np.std([m[metric] for m in fold_metrics], ddof=1)
        )
    metrics["brier_skill_vs_base_rate"] = 1 - metrics["model_brier"] / metrics["base_rate_brier"]
    metrics["resolved_loans"] = n_resolved
    metrics["positive_rate"] = positives / n_resolved
    metrics["folds"] = folds
    metrics["fitting_sample"] = len(samples[-1])
    calibration = binned_calibration(model_binned.sum(axis=0), evaluation["model_sum"])
    metrics |= validation_metrics(
        model_binned.sum(axis=0), evaluation["model_sum"], calibration, bootstrap, random_state
    )
    explainer = estimator
    with single_threaded():
        signs = coefficient_signs(estimator, X_drawn.iloc[samples[-1]], y[samples[-1]])
        center = explainer.named_steps["prepare"].transform(X_drawn.iloc[samples[-1]]).mean(axis=0)
    names = explainer.named_steps["prepare"].get_feature_names_out()
    # a categorical input is measured from the book's own odds (its weight of evidence 0)
    center[np.isin(names, RISK_CATEGORICAL)] = 0.0
    coefficients = pd.DataFrame(
        {"feature": names, "coefficient": explainer.named_steps["model"].coef_[0]}
    ).sort_values("coefficient", key=np.abs, ascending=False, ignore_index=True)
    return OutcomeModel(
        target=target,
        estimator=estimator,
        explainer=explainer,
        fold_estimators=fold_models,
        folds=folds,
        seed=random_state,
        metrics=metrics,
        calibration=calibration,
        coefficients=coefficients,
        center=center,
        gains=gains_table(model_binned.sum(axis=0), evaluation["model_sum"]),
        signs=signs,
    )


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
    import pyarrow.compute as pc

    prepare = explainer.named_steps["prepare"]
    coef = explainer.named_steps["model"].coef_[0]
    names = list(prepare.get_feature_names_out())
    labels = pa.array([INPUT_LABELS.get(n, (n, ""))[0] + ": " for n in names], pa.large_string())
    endings = pa.array(ENDINGS, pa.large_string())
    columns: dict[str, list] = {f"reason_{i + 1}": [] for i in range(top)}
    with single_threaded():
        for start in range(0, len(X), chunk_rows):
            rows = slice(start, start + chunk_rows)
            part = X.iloc[rows]
            prepared = prepare.transform(part) if transformed is None else transformed[rows]
            centred = prepared - center
            contrib = centred * coef
            # a mitigant's term is negative: ranking by the signed term, most toward the framing
            lower = np.asarray(score[rows]) < base_rate
            signed = np.where(lower[:, None], -contrib, contrib)
            k = min(top, signed.shape[1])
            part_top = np.argpartition(-signed, k - 1, axis=1)[:, :k]
            within = np.argsort(
                -np.take_along_axis(signed, part_top, axis=1), axis=1, kind="stable"
            )
            order = np.take_along_axis(part_top, within, axis=1)
            moved = np.take_along_axis(signed, order, axis=1) > 1e-12
            high = np.take_along_axis(centred, order, axis=1) > 0
            categorical = np.isin(order, [j for j, n in enumerate(names) if n in RISK_CATEGORICAL])
            ending = categorical * 4 + lower[:, None] * 2 + high
            for i in range(top):
                if i >= k:
                    columns[f"reason_{i + 1}"].append(pa.nulls(len(part), pa.large_string()))
                    continue
                code = order[:, i]
                text = pc.binary_join_element_wise(
                    labels.take(pa.array(code)),
                    _shown_values(part, names, code),
                    endings.take(pa.array(ending[:, i])),
                    pa.scalar("", pa.large_string()),
                )
                columns[f"reason_{i + 1}"].append(
                    pc.if_else(pa.array(moved[:, i]), text, pa.scalar(None, pa.large_string()))
                )
    return pd.DataFrame(
        {
            name: pd.arrays.ArrowStringArray(pa.chunked_array(parts, pa.large_string()))
            for name, parts in columns.items()
        },
        index=X.index,
    )


@dataclass
class RiskModel:
    """The fitted risk model(s) with their evaluation."""

    method: str
    estimator: object
    features: list[str]
    target: str
    metrics: dict[str, float] = field(default_factory=dict)
    test_ids: list[str] = field(default_factory=list)  # notebook: the held-out borrowers
    labels: pd.Series | None = None  # notebook: Borrower_ID -> training label
    primary: OutcomeModel | None = None  # recommended: not Fully Recovered
    secondary: OutcomeModel | None = None  # recommended: Written Off
    beats_baseline: bool = True
    min_skill: float = 0.0
    excluded: dict[str, str] = field(default_factory=dict)
    # the rules-based fallback's evidence: the outcome rate by arrears band
    # (``validation.arrears_evidence``), shown beside the model's own
    fallback_evidence: pd.DataFrame | None = None

    @property
    def signs_agree(self) -> bool:
        """Every coefficient of the model that sets the strategies agrees in sign with its
        input's own relation to the outcome (always so for the notebook's forest, which has
        none)."""
        return self.primary is None or self.primary.signs_agree

    @property
    def usable(self) -> bool:
        """The strategies may use the scores: better than the base rate, reasons right-signed."""
        return self.beats_baseline and self.signs_agree


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


def scores_of(loans: pd.DataFrame, model: RiskModel) -> pd.DataFrame:
    """``score_borrowers`` of the recommended model on a frame, or one partition of it."""
    return score_borrowers(model, loans)


def score_borrowers(
    model: RiskModel, loans: pd.DataFrame, features: pd.DataFrame | None = None
) -> pd.DataFrame:
    """One row per borrower: Borrower_ID, risk_score, p_written_off, score_source, observed,
    reason_1..3. Resolved borrowers get their out-of-fold score; open loans the full model's."""
    if model.method == "notebook":
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
                "observed": labels,
                "reason_1": None,
                "reason_2": None,
                "reason_3": None,
            }
        )
    from loan_pipeline.core.joins import text_from_codes

    ids = loans["Borrower_ID"]
    score = np.empty(len(loans))
    written = np.full(len(loans), np.nan)
    primary, secondary = model.primary, model.secondary

    def chunk(start: int) -> pd.DataFrame:
        # a chunk of borrowers: inputs, both models' scores and the reasons (chunks are
        # independent and write disjoint slices: scored side by side, one core each)
        rows = loans.iloc[start : start + SCORE_CHUNK]
        X = risk_inputs(rows)
        # the final pipeline is also the explainer: its preparation is computed once for the
        # score and the reasons
        final = primary.estimator
        prepared = final.named_steps["prepare"].transform(X)
        full = probability(final, X, prepared)
        # a resolved borrower's score is out-of-fold: from the model that never saw it
        held_out = primary.out_of_fold(rows, X)
        score[start : start + len(X)] = np.where(np.isnan(held_out), full, held_out)
        if secondary is not None:
            held_out = secondary.out_of_fold(rows, X)
            full = probability(secondary.estimator, X)
            written[start : start + len(X)] = np.where(np.isnan(held_out), full, held_out)
        explainer = primary.explainer
        shared = prepared if explainer is final else None
        reasons = reason_codes(
            explainer,
            primary.center,
            X,
            score[start : start + len(X)],
            primary.metrics["positive_rate"],
            transformed=shared,
        )
        return reasons.reset_index(drop=True)

    parts = parallel_map(chunk, range(0, len(loans), SCORE_CHUNK))
    reasons = (
        pd.concat(parts, ignore_index=True)
        if parts
        else pd.DataFrame({f"reason_{i}": pd.array([], "string[pyarrow]") for i in (1, 2, 3)})
    )
    observed = primary.observed(loans)
    resolved = ~np.isnan(observed)
    return pd.DataFrame(
        {
            "Borrower_ID": ids.array,
            "risk_score": score,
            "p_written_off": written,
            "score_source": text_from_codes(["out_of_fold", "open_loan"], ~resolved),
            "observed": observed,
            "reason_1": reasons["reason_1"].array,
            "reason_2": reasons["reason_2"].array,
            "reason_3": reasons["reason_3"].array,
        }
    )
