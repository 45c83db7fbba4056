"""Every chart, once: its asset key, what it shows, what it is drawn from, and its draw function.

The chart assets (``assets/charts.py``), the drawing (``core.charts.draw``) and the tests are
made from ``CHARTS``. Adding a chart is one ``Chart`` here, one draw function in
``core/charts.py`` and its figure in ``core/book_charts.py`` (the loan book) or
``core/evidence_charts.py`` (the model evidence).

This module imports no Dagster and no plotting library (loading the code location stays light):
a chart's draw function and its summaries of the loan book are named here and found in
``core.charts`` and ``core.chart_summaries`` when a chart is drawn.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from loan_pipeline.columns import LOAN_BOOK_COLUMNS, NUMERIC_COLUMNS

__all__ = ["CHARTS", "KEYS", "TABLE_CHARTS", "Chart", "chart", "columns_read", "inputs_read"]


# A step loads every input it declares, whether or not the chart that reads it is selected: the
# charts comparing two snapshots have a step of their own, so the loan book's charts redrawn
# alone never need a table that only a run comparing snapshots makes (nor the reverse).
BOOK_STEP = "draw_charts"
HISTORY_STEP = "draw_history_charts"
STEPS = [BOOK_STEP, HISTORY_STEP]


@dataclass(frozen=True)
class Chart:
    """One chart.

    ``key``: its asset key (and PNG name); ``description``: the asset's description;
    ``inputs``: the assets it is drawn from (its deps, in this order);
    ``columns``: per input table, the columns its drawing reads (those tables come in partitions
    on a Dask cluster; an input not listed comes whole, e.g. a model);
    ``summaries``: the summaries of the loan book it needs (names in
    ``core.chart_summaries.SUMMARIES``), computed in one pass for every chart drawn;
    ``sample``: the columns of the loan book's sample rows it draws points from;
    ``draw``: the name of its draw function in ``core.charts``, called with a
    ``core.charts.Drawing`` (the inputs, the merged summaries, the sample rows);
    ``step``: the step (multi-asset) that draws it, ``BOOK_STEP`` or ``HISTORY_STEP``."""

    key: str
    description: str
    inputs: tuple[str, ...]
    draw: str
    columns: dict[str, tuple[str, ...]] = field(default_factory=dict)
    summaries: tuple[str, ...] = ()
    sample: tuple[str, ...] = ()
    step: str = BOOK_STEP


_POINTS = ("Monthly_Income", "Loan_Amount")

CHARTS: tuple[Chart, ...] = (
    Chart(
        "chart_loan_amount_distribution",
        "Loan amount distribution: the share of loans in bins of a stated round width (e.g. "
        "200k), a kernel density curve on the same scale, the axis ending at the largest loan's "
        "bin; and loan amount against monthly income, with their Pearson r.",
        inputs=("validated_loans",),
        columns={"validated_loans": _POINTS},
        summaries=("amount_extents",),
        sample=_POINTS,
        draw="draw_loan_amount_distribution",
    ),
    Chart(
        "chart_payment_history_recovery",
        "Recovery outcome by payment history: loans counted per outcome in each "
        "payment-history class, n per class under its bars.",
        inputs=("validated_loans",),
        columns={"validated_loans": ("Payment_History", "Recovery_Status")},
        summaries=("history_outcomes",),
        draw="draw_payment_history_recovery",
    ),
    Chart(
        "chart_missed_payments_recovery",
        "Recovery outcome mix by number of missed payments: each outcome's share stacked per "
        "number of missed payments, n (loans) under each bar, and at each boundary between "
        "outcomes its 95% Wilson interval as whiskers, so a bar of 2 loans reads as the guess "
        "it is.",
        inputs=("validated_loans",),
        columns={"validated_loans": ("Num_Missed_Payments", "Recovery_Status")},
        summaries=("missed_outcomes",),
        draw="draw_missed_payments_recovery",
    ),
    Chart(
        "chart_income_loan_recovery",
        "Monthly income against loan amount, coloured by recovery outcome (colours a "
        "deuteranope tells apart).",
        inputs=("validated_loans",),
        columns={"validated_loans": (*_POINTS, "Recovery_Status")},
        summaries=("outcomes",),
        sample=(*_POINTS, "Recovery_Status"),
        draw="draw_income_loan_recovery",
    ),
    Chart(
        "chart_correlation_heatmap",
        "Pearson correlations between every numeric column.",
        inputs=("validated_loans",),
        columns={"validated_loans": tuple(NUMERIC_COLUMNS)},
        summaries=("numeric",),
        draw="draw_correlation_heatmap",
    ),
    Chart(
        "chart_borrower_segments",
        "Borrower segments in the income / loan-amount plane, and their sizes; the title says "
        "whether the segmentation is stable (from cluster_model).",
        inputs=("validated_loans", "borrower_segments", "cluster_model"),
        columns={
            "validated_loans": ("Borrower_ID", *_POINTS),
            "borrower_segments": ("Borrower_ID", "segment_id", "segment_name"),
        },
        draw="draw_borrower_segments",
    ),
    Chart(
        "chart_k_selection",
        "How k was chosen: prediction strength (reproducibility) for each candidate k against "
        "the stability bar (ClusterConfig.stability_threshold, drawn as a dashed line, below it "
        "shaded), and the gap statistic's gain over k-1 at the stable k against the gain "
        "needed; the k used ringed; the title gives the verdict and which test each k failed.",
        inputs=("cluster_model",),
        draw="draw_k_selection",
    ),
    Chart(
        "chart_calibration",
        "Calibration of the held-out risk scores: the observed share not fully recovered "
        "against the predicted probability of not being fully recovered, by decile of the "
        "score; and the scores' distribution.",
        inputs=("risk_scores",),
        columns={"risk_scores": ("risk_score", "not_fully_recovered", "score_source")},
        draw="draw_calibration",
    ),
    Chart(
        "chart_capacity_gains",
        "The capacity gain curve: for a worklist of each size, the share of the not fully "
        "recovered (and of the written-off) balance caught, ranked by expected loss against the "
        "score alone, on held-out resolved loans; the current worklist sizes marked.",
        inputs=("capacity_gains",),  # a small table: read whole, drawn as it is
        draw="draw_capacity_gains",
    ),
    Chart(
        "chart_roll_rates",
        "The roll-rate matrix between the previous snapshot and this one: a heatmap of the "
        "share of each arrears bucket's borrowers (rows, with their n) in each bucket one "
        "snapshot later (columns, 'left the book' included; 'new to the book' a row of its "
        "own), the count in every cell. A figure saying so on the first snapshot.",
        inputs=("roll_rates",),  # a small table: read whole, drawn as it is
        draw="draw_roll_rates",
        step=HISTORY_STEP,
    ),
    Chart(
        "chart_strategy_backtest",
        "The strategy back-test: the Fully Recovered share of the loans resolved during the "
        "cycle by strategy within each risk-score band at t (95% Wilson intervals, n above each "
        "point), and each strategy's difference from the reference strategy in the same band "
        "and pooled over the bands holding both (95% intervals). A figure saying so on the "
        "first snapshot.",
        inputs=("strategy_backtest",),  # a small table: read whole, drawn as it is
        draw="draw_strategy_backtest",
        step=HISTORY_STEP,
    ),
)

KEYS: list[str] = [c.key for c in CHARTS]
_BY_KEY = {c.key: c for c in CHARTS}
if len(_BY_KEY) != len(CHARTS):
    raise ValueError("two charts have the same key")
# The charts drawn from tables that may come in partitions (columns read, not a whole object).
TABLE_CHARTS: list[str] = [c.key for c in CHARTS if c.columns]

# A table's columns are read in its own order (the correlation heatmap lists them so).
_COLUMN_ORDER = {"validated_loans": LOAN_BOOK_COLUMNS}


def chart(key: str) -> Chart:
    """The chart ``key``; a KeyError names the registered ones."""
    try:
        return _BY_KEY[key]
    except KeyError:
        raise KeyError(f"not a registered chart: {key!r} (registered: {KEYS})") from None


def keys_of(step: str) -> list[str]:
    """The charts ``step`` draws, in registry order."""
    return [c.key for c in CHARTS if c.step == step]


def inputs_read(keys: list[str] | None = None) -> list[str]:
    """The assets the charts ``keys`` (default: all) are drawn from, each once, in order of
    first use."""
    names: dict[str, None] = {}
    for key in KEYS if keys is None else keys:
        names |= dict.fromkeys(chart(key).inputs)
    return list(names)


def columns_read(keys: list[str] | None = None) -> dict[str, list[str]]:
    """Per input table, the columns the charts ``keys`` (default: all) read: each once, in the
    table's column order when it has one, else in order of first use."""
    tables: dict[str, dict[str, None]] = {}
    for key in KEYS if keys is None else keys:
        for table, columns in chart(key).columns.items():
            tables.setdefault(table, {}).update(dict.fromkeys(columns))
    out = {}
    for table, columns in tables.items():
        order = _COLUMN_ORDER.get(table)
        out[table] = [c for c in order if c in columns] if order else list(columns)
    return out
