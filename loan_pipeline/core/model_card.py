"""The model card: what the risk model is, what it was trained on, how well it does, and for whom."""

from __future__ import annotations

import pandas as pd

from loan_pipeline.core.model_inputs import BASELINE_FEATURE
from loan_pipeline.core.risk import RiskModel
from loan_pipeline.core.rounding import markdown, transposed_markdown

# The card's last section: what the model and its reasons cannot tell.
LIMITS = [
    "",
    "## Limits",
    "- The outcome is observed once per loan; the model says how this book's past loans "
    "ended, not what a collection action would change (no causal claim).",
    "- Reason codes are the inputs that moved the score most from an average training "
    "borrower's: for a borrower scored at or above the book's base rate, those raising it; "
    'below it, those lowering it ("lowers risk"). They explain the score, not the outcome.',
]


SECONDARY_PREFIX = "written_off_"


def metrics_table(metrics: dict[str, float]) -> pd.DataFrame:
    """Every figure of the risk model, one row each, as text rounded to what it means: for the
    recommended method a column per target (the written-off model's figures carry the prefix
    ``written_off_`` in ``metrics``), for the notebook's one column of values."""
    from loan_pipeline.core.rounding import as_text

    secondary = {
        k.removeprefix(SECONDARY_PREFIX): v
        for k, v in metrics.items()
        if k.startswith(SECONDARY_PREFIX)
    }
    primary = {k: v for k, v in metrics.items() if not k.startswith(SECONDARY_PREFIX)}
    if not secondary:
        return pd.DataFrame(
            {"figure": list(primary), "value": [as_text(k, v) for k, v in primary.items()]}
        )
    return pd.DataFrame(
        {
            "figure": list(primary),
            "not fully recovered": [as_text(k, v) for k, v in primary.items()],
            "written off": [as_text(k, secondary.get(k)) for k in primary],
        }
    )


def _metric_table(metrics: dict[str, float], prefix: str = "") -> str:
    rows = []
    for name, label in (
        ("model", "logistic regression"),
        ("days_past_due_only", f"one feature ({BASELINE_FEATURE})"),
        ("base_rate", "base rate (constant)"),
    ):
        row = {"model": label}
        for metric in ("roc_auc", "pr_auc", "brier"):
            value = metrics.get(f"{prefix}{name}_{metric}")
            sd = metrics.get(f"{prefix}{name}_{metric}_fold_sd")
            row[metric] = (
                "n/a"
                if value is None
                else (f"{value:.3f} ± {sd:.3f}" if sd is not None else f"{value:.3f}")
            )
        rows.append(row)
    return pd.DataFrame(rows).to_markdown(index=False)


def fairness_markdown(fairness: pd.DataFrame) -> str:
    """The fairness report on its side (a column per group, a row per figure), rounded: its
    seventeen columns side by side would run off the page."""
    return transposed_markdown(fairness, "group")


def model_card_markdown(
    model: RiskModel,
    fairness: pd.DataFrame | None = None,
    calibration_image: str | None = None,
) -> str:
    """The model card as markdown (for the UI and for docs/model_card.md)."""
    primary = model.primary
    lines = [
        "# Model card: recovery risk",
        *_data_and_target(model.metrics),
        *_method(model),
        *_inputs(model),
        *_held_out_metrics(model),
    ]
    if "ks" in model.metrics:
        lines += _validation_report(model.metrics)
    if primary is not None and primary.gains is not None:
        lines += _gains(primary.gains)
    if primary is not None:
        lines += _calibration_and_coefficients(primary, calibration_image)
    if model.fallback_evidence is not None:
        lines += _fallback_evidence(model.fallback_evidence)
    if fairness is not None:
        lines += ["", "## Fairness", "", fairness_markdown(fairness)]
    return "\n".join(lines + LIMITS)


def _data_and_target(m: dict[str, float]) -> list[str]:
    return [
        "",
        "## Data",
        f"- Resolved loans (with an outcome) used for training and evaluation: {int(m['resolved_loans']):,}",
        f"- Share not fully recovered: {m['positive_rate']:.1%}",
        "- Open loans (blank Recovery_Status) are scored, never trained on.",
        "",
        "## Target",
        "- Primary: **not Fully Recovered** (Partially Recovered or Written Off).",
        "- Secondary: **Written Off**.",
    ]


def _method(model: RiskModel) -> list[str]:
    m = model.metrics
    return [
        "",
        "## Method",
        "- Logistic regression (amounts as log(1 + x), numbers standardised, each category as "
        "its weight of evidence), fitted by maximum likelihood with each coefficient's sign "
        "fixed to its input's own relation to the outcome (an input with no clear relation "
        "gets 0); its calibration is checked out-of-fold below.",
        f"- Evaluated by {int(m['folds'])}-fold cross-validation (a borrower's fold from a "
        "hash of its Borrower_ID): every resolved borrower's score comes from a model that "
        "never saw that borrower (out-of-fold). Each model is fitted on at most "
        f"{int(m.get('fitting_sample', 0)):,} loans.",
        f"- Strategies use the model only if its out-of-fold Brier score beats the base rate's by "
        f"a skill of at least {model.min_skill:.2f} and every coefficient agrees in sign with its "
        "input's own relation to the outcome; otherwise a rules-based policy on arrears.",
    ]


def _inputs(model: RiskModel) -> list[str]:
    return [
        "",
        "## Features",
        ", ".join(f"`{f}`" for f in model.features),
        "",
        "## Excluded columns, and why",
        pd.DataFrame(
            {"column": list(model.excluded), "why": list(model.excluded.values())}
        ).to_markdown(index=False),
    ]


def _held_out_metrics(model: RiskModel) -> list[str]:
    m = model.metrics
    lines = [
        "",
        "## Metrics on held-out folds (pooled out-of-fold scores; ± is the sd across folds)",
        "",
        "Not fully recovered:",
        "",
        _metric_table(m),
        "",
        f"Brier skill over the base rate: **{m['brier_skill_vs_base_rate']:.3f}** → "
        + (
            "the model is used."
            if model.beats_baseline
            else "**below the bar: the strategies fall back to the rules-based policy.**"
        ),
    ]
    if model.secondary is not None:
        lines += ["", "Written off:", "", _metric_table(m, prefix="written_off_")]
    return lines


def _validation_report(m: dict[str, float]) -> list[str]:
    figures = [
        (
            "ROC AUC (95 % bootstrap interval)",
            f"{m['model_roc_auc']:.3f} "
            f"({m['roc_auc_ci_low']:.3f}-{m['roc_auc_ci_high']:.3f}, "
            f"{int(m['bootstrap_replicates'])} resamples)",
        ),
        ("Gini (2 AUC - 1)", f"{m['gini']:.3f}"),
        ("KS", f"{m['ks']:.3f}"),
        ("Calibration slope (1 = calibrated)", f"{m['calibration_slope']:.3f}"),
        ("Calibration intercept (0 = calibrated)", f"{m['calibration_intercept']:.3f}"),
        (
            "Hosmer-Lemeshow (10 groups, 8 df)",
            f"{m['hosmer_lemeshow']:.1f} (p = {m['hosmer_lemeshow_p']:.3f})",
        ),
    ]
    return [
        "",
        "## Validation report (not fully recovered, out-of-fold)",
        "",
        pd.DataFrame(figures, columns=["figure", "value"]).to_markdown(index=False),
    ]


def _gains(gains: pd.DataFrame) -> list[str]:
    return [
        "",
        "Gains by decile of the score (1 = highest scores):",
        "",
        markdown(gains),
    ]


def _calibration_and_coefficients(primary, calibration_image: str | None) -> list[str]:
    lines = [
        "",
        "## Calibration (out-of-fold, by decile of predicted probability)",
        "",
        markdown(primary.calibration),
    ]
    if calibration_image:
        lines += ["", calibration_image]
    return lines + [
        "",
        "## Coefficients against the data",
        "",
        "Each input's coefficient (numbers standardised; a category's weight of evidence is "
        "in log-odds) next to its own correlation with the outcome. A coefficient that "
        "contradicts its input's direction fails the check `coefficient_signs_agree_with_data`"
        " and the strategies fall back to the rules-based policy.",
        "",
        markdown(primary.signs if primary.signs is not None else primary.coefficients),
    ]


def _fallback_evidence(evidence: pd.DataFrame) -> list[str]:
    return [
        "",
        "## The fallback policy's evidence",
        "",
        "Rate of not fully recovered among resolved loans in each arrears band the "
        "rules-based fallback draws (at its thresholds):",
        "",
        markdown(evidence),
    ]
