"""The validation report a credit-model validator asks for, from out-of-fold scores.

Everything is computed from loans counted per score bin and class (``counts``: 2 x bins,
negatives then positives, bins ascending in score) and the probabilities summed per bin
(``sums``), the form in which ``core.evaluation`` evaluates a book of any size a partition at a time.
A bin is one threshold, as a tie is; with 2**14 bins the figures equal the per-loan ones to
the third decimal (tested against scikit-learn and scipy on the loans themselves).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# Resamples for the interval on ROC AUC. Drawing them is most of the validation report's cost
# (about 1 s on a 2-core machine), so only the model that sets the strategies gets one; with
# 200 the interval's ends moved by up to 0.0009 between seeds on a 50,000-row book.
BOOTSTRAP_REPLICATES = 500
DECILES = 10


def binned_auc(negatives: np.ndarray, positives: np.ndarray) -> float:
    """ROC AUC of loans counted per ascending score bin (ties within a bin count one half)."""
    n0, n1 = negatives.sum(), positives.sum()
    if not (n0 and n1):
        return float("nan")
    below = np.cumsum(negatives) - negatives  # negatives in lower bins
    return float((positives * (below + negatives / 2)).sum() / (n0 * n1))


def ks_statistic(counts: np.ndarray) -> float:
    """Kolmogorov-Smirnov: the largest gap between the score distributions of the two classes."""
    negatives, positives = counts
    if not (negatives.sum() and positives.sum()):
        return float("nan")
    gap = np.cumsum(negatives) / negatives.sum() - np.cumsum(positives) / positives.sum()
    return float(np.abs(gap).max())


def bootstrap_auc(
    counts: np.ndarray, replicates: int = BOOTSTRAP_REPLICATES, seed: int = 0
) -> np.ndarray:
    """ROC AUC of ``replicates`` Poisson bootstrap resamples of the loans: each loan drawn a
    Poisson(1) number of times, which for loans counted per bin is a Poisson draw per bin."""
    rng = np.random.default_rng(seed)
    # A Poisson draw with mean 0 is 0 and takes nothing from the generator, so drawing for the
    # bins that hold loans only gives the same resamples; a small book fills few of the bins.
    held = counts > 0
    means = counts[held]
    resample = np.zeros(counts.shape, dtype="float64")
    out = np.empty(replicates, dtype="float64")
    for i in range(replicates):
        resample[held] = rng.poisson(means)
        out[i] = binned_auc(*resample)
    return out


def _mean_score(counts: np.ndarray, sums: np.ndarray) -> np.ndarray:
    n = counts.sum(axis=0)
    return np.divide(sums, n, out=np.full(len(n), np.nan), where=n > 0)


def calibration_fit(counts: np.ndarray, sums: np.ndarray) -> dict[str, float]:
    """Calibration slope (logistic regression of the outcome on the logit of the score) and
    calibration intercept (the same with the slope fixed at 1: calibration-in-the-large), by
    Newton's method on the loans counted per bin. A calibrated model has slope 1, intercept 0."""
    used = counts.sum(axis=0) > 0
    p = np.clip(_mean_score(counts, sums)[used], 1e-9, 1 - 1e-9)
    x = np.log(p / (1 - p))
    n0, n1 = counts[0][used].astype("float64"), counts[1][used].astype("float64")
    n = n0 + n1

    def newton(design: np.ndarray, offset: np.ndarray) -> np.ndarray:
        beta = np.zeros(design.shape[1])
        for _ in range(50):
            mu = 1 / (1 + np.exp(-(design @ beta + offset)))
            gradient = design.T @ (n1 - n * mu)
            hessian = (design * (n * mu * (1 - mu))[:, None]).T @ design
            step = np.linalg.solve(hessian, gradient)
            beta += step
            if np.abs(step).max() < 1e-10:
                break
        return beta

    intercept, slope = newton(np.column_stack([np.ones_like(x), x]), np.zeros_like(x))
    (in_the_large,) = newton(np.ones((len(x), 1)), x)
    return {"calibration_slope": float(slope), "calibration_intercept": float(in_the_large)}


def _decile_of_bins(counts: np.ndarray, deciles: int, descending: bool) -> np.ndarray:
    """Each bin's decile by the rank of its middle loan (1 = highest scores if descending)."""
    per_bin = counts.sum(axis=0)
    order = per_bin[::-1] if descending else per_bin
    middle = np.cumsum(order) - order / 2
    decile = np.minimum((middle * deciles / max(per_bin.sum(), 1)).astype("int64"), deciles - 1)
    return (decile[::-1] if descending else decile) + 1


def gains_table(counts: np.ndarray, sums: np.ndarray, deciles: int = DECILES) -> pd.DataFrame:
    """The decile gains table, highest scores first: borrowers, bad (positive) count and rate,
    mean score, cumulative share of all bads captured, cumulative share of goods, KS at the
    decile (their difference) and lift (the decile's bad rate over the book's)."""
    decile = _decile_of_bins(counts, deciles, descending=True)
    used = counts.sum(axis=0) > 0
    frame = (
        pd.DataFrame(
            {
                "decile": decile[used],
                "borrowers": counts.sum(axis=0)[used],
                "bads": counts[1][used],
                "score_sum": sums[used],
            }
        )
        .groupby("decile", as_index=False)
        .sum()
    )
    frame[["borrowers", "bads"]] = frame[["borrowers", "bads"]].astype("int64")
    goods = frame["borrowers"] - frame["bads"]
    frame["bad_rate"] = frame["bads"] / frame["borrowers"]
    frame["mean_score"] = frame.pop("score_sum") / frame["borrowers"]
    frame["cumulative_bads_captured"] = frame["bads"].cumsum() / max(frame["bads"].sum(), 1)
    frame["cumulative_goods"] = goods.cumsum() / max(goods.sum(), 1)
    frame["ks"] = frame["cumulative_bads_captured"] - frame["cumulative_goods"]
    frame["lift"] = frame["bad_rate"] / (frame["bads"].sum() / frame["borrowers"].sum())
    return frame


def hosmer_lemeshow(calibration: pd.DataFrame) -> dict[str, float]:
    """Hosmer-Lemeshow over the calibration table's groups (observed vs mean predicted rate and
    borrowers per group): the statistic and its chi-squared p-value on groups - 2 degrees of
    freedom. On large books it rejects small, harmless miscalibration: read it with the slope."""
    from scipy.stats import chi2

    n = calibration["borrowers"].to_numpy(dtype="float64")
    p = calibration["predicted"].to_numpy(dtype="float64")
    o = calibration["observed"].to_numpy(dtype="float64") * n
    expected = n * p
    statistic = float(np.sum((o - expected) ** 2 / np.clip(expected * (1 - p), 1e-12, None)))
    dof = max(len(n) - 2, 1)
    return {"hosmer_lemeshow": statistic, "hosmer_lemeshow_p": float(chi2.sf(statistic, dof))}


def validation_metrics(
    counts: np.ndarray,
    sums: np.ndarray,
    calibration: pd.DataFrame,
    replicates: int = BOOTSTRAP_REPLICATES,
    seed: int = 0,
) -> dict[str, float]:
    """KS, Gini, the bootstrap 95 % interval of ROC AUC (none with no ``replicates``),
    calibration slope and intercept, and Hosmer-Lemeshow, of out-of-fold scores counted per bin."""
    auc = binned_auc(*counts)
    interval = {}
    if replicates:
        low, high = np.nanpercentile(bootstrap_auc(counts, replicates, seed), [2.5, 97.5])
        interval = {
            "roc_auc_ci_low": float(low),
            "roc_auc_ci_high": float(high),
            "bootstrap_replicates": replicates,
        }
    return {
        "ks": ks_statistic(counts),
        "gini": 2 * auc - 1,
        **interval,
        **calibration_fit(counts, sums),
        **hosmer_lemeshow(calibration),
    }


# --- reasons and coefficients against the data --------------------------------------------------


def coefficient_signs(pipeline, X: pd.DataFrame, y: np.ndarray) -> pd.DataFrame:
    """Each model input's coefficient next to its own univariate relation with the outcome in
    ``X``/``y`` (the correlation of the prepared input with the outcome, and the direction it
    gives: ``univariate_directions``), and whether the two agree: a coefficient contradicts its
    input when both have a sign and the signs differ."""
    from loan_pipeline.core.signed import univariate_directions

    prepared = pipeline.named_steps["prepare"].transform(X)
    direction, correlation = univariate_directions(prepared, y)
    coef = pipeline.named_steps["model"].coef_[0]
    sign = np.sign(np.where(np.abs(coef) > 1e-10, coef, 0.0))
    return pd.DataFrame(
        {
            "input": pipeline.named_steps["prepare"].get_feature_names_out(),
            "coefficient": coef,
            "univariate_correlation": correlation,
            "direction": direction.astype("int64"),
            "agrees": (sign == 0) | (direction == 0) | (sign == direction),
        }
    )


def reason_kinds(reasons: pd.Series) -> pd.Series:
    """How often each kind of reason is given, its value left out ("Days past due (high)";
    a category keeps its value: "Payment history: Missed"), most frequent first."""
    kinds = reasons.dropna().astype(str).str.replace(r"^([^:]+): [-\d.%]+ \(", r"\1 (", regex=True)
    return kinds.value_counts().astype("int64")


def wrong_signed_reasons(
    loans: pd.DataFrame, scores: pd.DataFrame, inputs: pd.DataFrame
) -> dict[str, float]:
    """How many of the reasons given contradict their input's own relation to the outcome in
    ``loans`` (resolved loans; "not Fully Recovered"), judged from the reason text alone: a
    numeric input's "(high)" raising risk needs a positive rank correlation, "(low)" a negative
    one (the reverse for "lowers risk"); a category raising risk needs an outcome rate above the
    book's. ``inputs``: the numeric model inputs of ``loans`` (``model_inputs.risk_inputs``). Returns
    the reasons given, the wrong-signed ones and their share."""
    from loan_pipeline.domain import INPUT_LABELS

    resolved = loans["Recovery_Status"].notna().to_numpy()
    bad = (loans["Recovery_Status"] != "Fully Recovered").to_numpy(dtype=bool, na_value=False)
    X = inputs
    by_label = {label: (name, kind) for name, (label, kind) in INPUT_LABELS.items()}
    book_rate = bad[resolved].mean()
    direction: dict[str, float] = {}
    category_rate: dict[tuple[str, str], float] = {}
    for name, kind in by_label.values():
        if kind == "category":
            values = loans[name][resolved].astype("string")
            rates = pd.Series(bad[resolved]).groupby(values.to_numpy()).mean()
            category_rate |= {(name, str(v)): r for v, r in rates.items()}
        elif name in X:
            direction[name] = float(
                pd.Series(X[name].to_numpy()[resolved]).corr(
                    pd.Series(bad[resolved].astype(float)), method="spearman"
                )
            )
    given = wrong = 0
    for column in [c for c in scores.columns if c.startswith("reason_")]:
        text = scores[column].dropna().astype(str)
        parts = text.str.extract(r"^(?P<label>[^:]+): (?P<value>.*?)(?: \((?P<side>[^)]*)\))?$")
        for (label, value, side), n in parts.value_counts(dropna=False).items():
            name, kind = by_label.get(label, (None, None))
            if name is None:
                continue
            side = "" if pd.isna(side) else side
            lowers = "lowers risk" in side
            if kind == "category":
                raises_risk = category_rate.get((name, value), book_rate) > book_rate
            else:
                high = side.startswith("high")
                raises_risk = (direction.get(name, 0.0) > 0) == high
            given += n
            wrong += n if raises_risk == lowers else 0
    return {
        "reasons_given": int(given),
        "wrong_signed_reasons": int(wrong),
        "wrong_signed_share": wrong / given if given else 0.0,
    }


# --- the fallback policy's evidence ---------------------------------------------------------------


def _arrears_bands(legal_days, legal_missed, settlement_days, settlement_missed):
    return [
        ("Days_Past_Due", f"0-{settlement_days}", None, settlement_days),
        ("Days_Past_Due", f"{settlement_days + 1}-{legal_days}", settlement_days, legal_days),
        ("Days_Past_Due", f"over {legal_days}", legal_days, None),
        ("Num_Missed_Payments", f"under {settlement_missed}", None, settlement_missed - 1),
        (
            "Num_Missed_Payments",
            f"{settlement_missed}-{legal_missed - 1}",
            settlement_missed - 1,
            legal_missed - 1,
        ),
        ("Num_Missed_Payments", f"{legal_missed} or more", legal_missed - 1, None),
    ]


def arrears_counts(part: pd.DataFrame, thresholds: dict[str, int]) -> np.ndarray:
    """Resolved loans and those not Fully Recovered in each of ``_arrears_bands`` (bands x 2)
    of one frame or partition (a band is above its lower bound, at most its upper bound)."""
    status = part["Recovery_Status"]
    resolved = status.notna().to_numpy()
    bad = (status != "Fully Recovered").to_numpy(dtype=bool, na_value=False) & resolved
    out = []
    for column, _, low, high in _arrears_bands(**thresholds):
        x = part[column].to_numpy(dtype="float64", na_value=np.nan)
        mask = np.ones(len(x), dtype=bool)
        if low is not None:
            mask &= x > low
        if high is not None:
            mask &= x <= high
        out.append([(mask & resolved).sum(), (mask & bad).sum()])
    return np.array(out, dtype="int64")


def arrears_evidence(
    loans, *, legal_days: int, legal_missed: int, settlement_days: int, settlement_missed: int
) -> pd.DataFrame:
    """The rules-based fallback's own evidence: resolved loans and their rate of "not Fully
    Recovered" in each band the policy draws on arrears (its four limits, as ``rules_based``'s),
    from a frame or a Dask frame counted a partition at a time."""
    from loan_pipeline.core.partitions import summarise

    thresholds = dict(
        legal_days=legal_days,
        legal_missed=legal_missed,
        settlement_days=settlement_days,
        settlement_missed=settlement_missed,
    )
    counts = summarise(arrears_counts, sum, loans, thresholds)
    bands = _arrears_bands(**thresholds)
    return pd.DataFrame(
        {
            "column": [b[0] for b in bands],
            "band": [b[1] for b in bands],
            "resolved": counts[:, 0],
            "not_fully_recovered_rate": np.divide(
                counts[:, 1], counts[:, 0], out=np.full(len(bands), np.nan), where=counts[:, 0] > 0
            ),
        }
    )
