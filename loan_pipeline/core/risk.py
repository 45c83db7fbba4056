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

from loan_pipeline.core.compute import parallel_map, single_threaded
from loan_pipeline.schemas import CATEGORIES
from loan_pipeline.settings import RISK_CATEGORICAL, RISK_NUMERIC

# Ratios a credit analyst reads first: instalment burden, share still owed, collateral cover.
RISK_ENGINEERED = ["emi_to_income", "outstanding_share", "collateral_coverage"]
# Heavy-tailed amounts enter as log(1 + x).
LOG_COLUMNS = [
    "Monthly_Income",
    "Loan_Amount",
    "Collateral_Value",
    "Outstanding_Loan_Amount",
    "Monthly_EMI",
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
        coverage = np.where(outstanding > 0, collateral / outstanding, 0.0)
    out = loans[RISK_NUMERIC].astype("float64")
    out["emi_to_income"] = np.clip(emi_to_income, 0, 10)
    out["outstanding_share"] = np.clip(outstanding_share, 0, 1)
    out["collateral_coverage"] = np.clip(coverage, 0, 10)
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


def one_hot_columns() -> list[str]:
    """The one-hot input columns of ``risk_inputs``, in order."""
    return [f"{col}_{value}" for col in RISK_CATEGORICAL for value in CATEGORIES[col]]


def _pipeline(numeric: list[str], categorical: list[str], C: float = 1.0):
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

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
    if categorical:  # already one-hot (risk_inputs): 0/1 columns enter as they are
        parts.append(("cat", "passthrough", categorical))
    return Pipeline(
        [
            ("prepare", ColumnTransformer(parts, verbose_feature_names_out=False)),
            ("model", LogisticRegression(C=C, max_iter=2000)),
        ]
    )


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
    """One outcome model with its out-of-fold evaluation."""

    target: str
    estimator: object  # the logistic pipeline fitted on all resolved loans
    explainer: object  # the same pipeline: reason codes decompose the score's own log-odds
    oof: pd.Series  # Borrower_ID -> out-of-fold probability (NaN: open loan)
    observed: pd.Series  # Borrower_ID -> 0/1 target (NaN: open loan)
    metrics: dict[str, float]
    calibration: pd.DataFrame
    coefficients: pd.DataFrame
    center: np.ndarray  # mean transformed input of the training loans (reason codes)


def fit_outcome_model(
    loans: pd.DataFrame,
    target: str = "not_fully_recovered",
    folds: int = 5,
    random_state: int = 42,
    max_train_rows: int = 50_000,
    source: pd.DataFrame | None = None,
) -> OutcomeModel:
    """Fit and evaluate one outcome model on the resolved loans of ``loans`` (``source``: its
    ``model_source``, when the caller has it already)."""
    from sklearn.model_selection import StratifiedKFold

    column, rule = TARGETS[target]
    is_resolved = loans[column].notna().to_numpy()
    at = np.flatnonzero(is_resolved)  # positions in ``loans`` of the resolved loans
    y = rule(loans[column].iloc[at]).to_numpy(dtype=int)
    if len(at) < folds * 2 or y.sum() < folds or (len(y) - y.sum()) < folds:
        raise ValueError(
            f"too few resolved loans to fit the {target} model: {len(at)} with "
            f"{int(y.sum())} positives; need at least {folds} of each class"
        )
    numeric = RISK_NUMERIC + RISK_ENGINEERED
    rng = np.random.default_rng(random_state)
    oof = np.zeros(len(y))
    oof_base = np.zeros(len(y))
    oof_one = np.zeros(len(y))
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=random_state)
    splits = []
    for train, test in splitter.split(np.zeros(len(y)), y):  # samples drawn in fold order
        if len(train) > max_train_rows:
            train = np.sort(rng.choice(train, size=max_train_rows, replace=False))
        splits.append((train, test))
    everything = np.arange(len(y))
    if len(everything) > max_train_rows:
        everything = np.sort(rng.choice(everything, size=max_train_rows, replace=False))

    # Inputs are built only for the rows a step needs (the fitting sample; the held-out fold a
    # chunk at a time), so memory stays bounded whatever the size of the book.
    source = model_source(loans) if source is None else source

    def inputs(rows: np.ndarray) -> pd.DataFrame:
        return risk_inputs(source.iloc[at[rows]])

    def fold(split: tuple[np.ndarray, np.ndarray]) -> tuple:
        train, test = split
        X_train = inputs(train)
        model = _pipeline(numeric, one_hot_columns()).fit(X_train, y[train])
        one = _pipeline([BASELINE_FEATURE], []).fit(X_train[[BASELINE_FEATURE]], y[train])
        p, p_one = np.empty(len(test)), np.empty(len(test))
        for start in range(0, len(test), SCORE_CHUNK):
            X_test = inputs(test[start : start + SCORE_CHUNK])
            p[start : start + SCORE_CHUNK] = model.predict_proba(X_test)[:, 1]
            p_one[start : start + SCORE_CHUNK] = one.predict_proba(X_test[[BASELINE_FEATURE]])[:, 1]
        return p, p_one, y[train].mean()

    def final(_: object):
        # One model scores and explains: the reason codes decompose the very log-odds that
        # gives the score.
        return _pipeline(numeric, one_hot_columns()).fit(inputs(everything), y[everything])

    # the folds and the final fit are independent: side by side, one core each
    *fitted, estimator = parallel_map(
        lambda job: job[0](job[1]), [(fold, split) for split in splits] + [(final, None)]
    )
    fold_metrics = []
    for (_, test), (p, p_one, base) in zip(splits, fitted, strict=True):
        oof[test], oof_one[test], oof_base[test] = p, p_one, base
        fold_metrics.append(_metrics(y[test], p))
    explainer = estimator
    with single_threaded():
        center = explainer.named_steps["prepare"].transform(inputs(everything)).mean(axis=0)

    metrics: dict[str, float] = {}
    for name, p in (("model", oof), ("base_rate", oof_base), ("days_past_due_only", oof_one)):
        for metric, value in _metrics(y, p).items():
            metrics[f"{name}_{metric}"] = value
    for metric in ("roc_auc", "pr_auc", "brier"):
        metrics[f"model_{metric}_fold_sd"] = float(
            np.std([m[metric] for m in fold_metrics], ddof=1)
        )
    metrics["brier_skill_vs_base_rate"] = 1 - metrics["model_brier"] / metrics["base_rate_brier"]
    metrics["resolved_loans"] = len(y)
    metrics["positive_rate"] = float(y.mean())
    metrics["folds"] = folds
    names = explainer.named_steps["prepare"].get_feature_names_out()
    coefficients = pd.DataFrame(
        {"feature": names, "coefficient": explainer.named_steps["model"].coef_[0]}
    ).sort_values("coefficient", key=np.abs, ascending=False, ignore_index=True)
    # over every loan of the book, in its order (NaN for open loans): scoring the same book
    # then looks the scores up by position
    oof_all = np.full(len(loans), np.nan)
    oof_all[is_resolved] = oof
    observed_all = np.full(len(loans), np.nan)
    observed_all[is_resolved] = y
    ids = pd.Index(loans["Borrower_ID"], name="Borrower_ID")
    return OutcomeModel(
        target=target,
        estimator=estimator,
        explainer=explainer,
        oof=pd.Series(oof_all, index=ids),
        observed=pd.Series(observed_all, index=ids),
        metrics=metrics,
        calibration=calibration_table(y, oof),
        coefficients=coefficients,
        center=center,
    )


def reason_codes(
    explainer,
    center: np.ndarray,
    X: pd.DataFrame,
    top: int = 3,
    chunk_rows: int = 250_000,
    transformed: np.ndarray | None = None,
) -> pd.DataFrame:
    """The ``top`` inputs pushing each borrower's score up the most.

    A logistic model's log-odds is a sum of coefficient x transformed input; measured from the
    average borrower of the training data (``center``), the largest positive terms are the
    reasons. A numeric input reads "<column> high" or "<column> low" (the side that raised the
    score); a category reads "<column> = <value>", or "<column> not <value>" when lacking that
    value raised it. Fewer than ``top`` reasons when fewer terms push the score up.
    ``transformed``: ``X`` through the explainer's preparation, when the caller has it already.
    """
    prepare = explainer.named_steps["prepare"]
    coef = explainer.named_steps["model"].coef_[0]
    above, below = [], []
    for name in prepare.get_feature_names_out():
        base = next((c for c in RISK_CATEGORICAL if name.startswith(f"{c}_")), None)
        if base is None:
            above.append(f"{name} high")
            below.append(f"{name} low")
        else:
            value = name[len(base) + 1 :]
            above.append(f"{base} = {value}")
            below.append(f"{base} not {value}")
    import pyarrow as pa

    labels = pa.array(above + below, pa.large_string())  # label i: feature i high, i + n: low
    n = len(above)
    codes = np.zeros((len(X), top), dtype="int64")
    missing = np.zeros((len(X), top), dtype=bool)
    with single_threaded():
        for start in range(0, len(X), chunk_rows):
            rows = slice(start, start + chunk_rows)
            prepared = prepare.transform(X.iloc[rows]) if transformed is None else transformed[rows]
            centred = prepared - center
            contrib = centred * coef
            # the top terms of each row: partition (linear), then order those few
            k = min(top, contrib.shape[1])
            part = np.argpartition(-contrib, k - 1, axis=1)[:, :k]
            within = np.argsort(-np.take_along_axis(contrib, part, axis=1), axis=1, kind="stable")
            order = np.take_along_axis(part, within, axis=1)
            pushed_up = np.take_along_axis(contrib, order, axis=1) > 1e-12
            is_above = np.take_along_axis(centred, order, axis=1) > 0
            codes[start : start + chunk_rows] = np.where(is_above, order, order + n)
            missing[start : start + chunk_rows] = ~pushed_up
    # Arrow strings straight from the label table: no Python object per cell
    return pd.DataFrame(
        {
            f"reason_{i + 1}": pd.arrays.ArrowStringArray(
                labels.take(pa.array(codes[:, i], mask=missing[:, i]))
            )
            for i in range(top)
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


def fit_recommended_model(
    loans: pd.DataFrame,
    folds: int = 5,
    random_state: int = 42,
    max_train_rows: int = 50_000,
    min_skill: float = 0.01,
    **_: object,
) -> RiskModel:
    """Two outcome models; the first gates the strategies: it must beat the base
    rate's Brier score by ``min_skill`` (Brier skill score) on the held-out folds."""
    source = model_source(loans)
    primary = fit_outcome_model(
        loans, "not_fully_recovered", folds, random_state, max_train_rows, source
    )
    try:
        secondary = fit_outcome_model(
            loans, "written_off", folds, random_state, max_train_rows, source
        )
    except ValueError:
        secondary = None  # too few write-offs to model; reported as missing
    skill = primary.metrics["brier_skill_vs_base_rate"]
    metrics = dict(primary.metrics)
    if secondary is not None:
        metrics |= {f"written_off_{k}": v for k, v in secondary.metrics.items()}
    return RiskModel(
        method="recommended",
        estimator=primary.estimator,
        features=RISK_NUMERIC + RISK_ENGINEERED + RISK_CATEGORICAL,
        target="not Fully Recovered (Recovery_Status), resolved loans",
        metrics=metrics,
        primary=primary,
        secondary=secondary,
        beats_baseline=bool(skill >= min_skill),
        min_skill=min_skill,
        excluded=dict(EXCLUDED),
    )


def notebook_target(segments: pd.DataFrame, high_risk_segments: int = 2) -> pd.Series:
    """The notebook's label: the borrower is in one of the ``high_risk_segments`` highest-burden
    segments (in notebook mode segment ids are ordered by centroid burden, so these are the top
    ids). At least one segment always stays low risk, so the label has two classes."""
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
    **_: object,
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


def fit_risk_model(
    loans: pd.DataFrame,
    features: pd.DataFrame | None,
    segments: pd.DataFrame | None,
    method: str = "recommended",
    **params,
) -> RiskModel:
    """Fit the risk model by the configured ``method`` (``features`` and ``segments`` are the
    notebook method's inputs; the recommended model reads only ``loans``)."""
    if method == "notebook":
        return fit_notebook_model(features, segments, **params)
    if method == "recommended":
        return fit_recommended_model(loans, **params)
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
    from loan_pipeline.core.frames import lookup_by_id, text_from_codes

    ids = loans["Borrower_ID"]
    full = np.empty(len(loans))
    written = np.full(len(loans), np.nan)

    def chunk(start: int) -> pd.DataFrame:
        # a chunk of borrowers: inputs, both models' scores and the reasons (chunks are
        # independent and write disjoint slices: scored side by side, one core each)
        X = risk_inputs(loans.iloc[start : start + SCORE_CHUNK])
        # the primary pipeline is also the explainer: its preparation is computed once for the
        # score and the reasons (what Pipeline.predict_proba does, step by step)
        primary = model.primary.estimator
        prepared = primary.named_steps["prepare"].transform(X)
        full[start : start + len(X)] = primary.named_steps["model"].predict_proba(prepared)[:, 1]
        if model.secondary is not None:
            written[start : start + len(X)] = model.secondary.estimator.predict_proba(X)[:, 1]
        explainer = model.primary.explainer
        shared = prepared if explainer is primary else None
        reasons = reason_codes(explainer, model.primary.center, X, transformed=shared)
        return reasons.reset_index(drop=True)

    parts = parallel_map(chunk, range(0, len(loans), SCORE_CHUNK))
    reasons = (
        pd.concat(parts, ignore_index=True)
        if parts
        else pd.DataFrame({f"reason_{i}": pd.array([], "string[pyarrow]") for i in (1, 2, 3)})
    )

    oof = lookup_by_id(model.primary.oof, ids).astype("float64")
    resolved = ~np.isnan(oof)
    if model.secondary is not None:
        oof_w = lookup_by_id(model.secondary.oof, ids).astype("float64")
        written = np.where(np.isnan(oof_w), written, oof_w)
    return pd.DataFrame(
        {
            "Borrower_ID": ids.array,
            "risk_score": np.where(resolved, oof, full),
            "p_written_off": written,
            "score_source": text_from_codes(["out_of_fold", "open_loan"], ~resolved),
            "observed": lookup_by_id(model.primary.observed, ids).astype("float64"),
            "reason_1": reasons["reason_1"].array,
            "reason_2": reasons["reason_2"].array,
            "reason_3": reasons["reason_3"].array,
        }
    )
