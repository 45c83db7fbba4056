"""The analyst charts as pure functions: tables in, matplotlib Figure out.

No Dagster here: the chart assets call ``draw`` and store ``figure_to_png(fig)``. Which charts
there are, and what each is drawn from, is ``core.chart_registry.CHARTS``; each chart's draw
function (``Chart.draw``, a ``draw_*`` function below) is here, and its figure in
``core.book_charts`` (the loan book's charts) or ``core.evidence_charts`` (the model evidence).

Every chart is drawn in three steps, so that a book of any size, whole in this process or in
partitions on a Dask cluster, gives the same picture (``draw``): summaries of the tables,
computed per partition and merged, and a reproducible sample of at most ``SAMPLE_LIMIT`` rows
(both ``core.chart_summaries``); then the drawing, in those two modules, from those summaries
and that sample only.

Conventions shared by every chart:

* Colours, fonts and sizes are ``core.chart_style``'s: recovery outcomes always in
  ``STATUS_ORDER`` and ``STATUS_PALETTE``, so a colour means the same outcome on every chart.
  Loans with no outcome yet (missing ``Recovery_Status``) are drawn as the grey ``OPEN_LABEL``
  category, never dropped.
* Aggregates (counts, shares, correlations, histograms, hexbins, calibration deciles) use every
  row. Point plots and kernel density estimates use the sample, and say so on the chart.
* Figures are created through pyplot, so callers must close them: ``figure_to_png`` does.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Iterable, Iterator, Mapping
from typing import NamedTuple

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from loan_pipeline.core import (  # noqa: E402
    book_charts,
    chart_registry,
    chart_style,
    evidence_charts,
    fingerprint,
    history_charts,
)
from loan_pipeline.core.chart_summaries import (  # noqa: E402
    book_summaries,
    loan_amount_summaries,
    sample_rows,
)

__all__ = [
    "Drawing",
    "borrower_segments",
    "calibration_curve",
    "correlation_heatmap",
    "digests_of",
    "draw",
    "drawing_version",
    "figure_to_png",
    "income_loan_recovery",
    "loan_amount_distribution",
    "missed_payments_recovery",
    "payment_history_recovery",
]


# --------------------------------------------------------------------------------------------
# Drawing the charts of a book, whole or in partitions
# --------------------------------------------------------------------------------------------


class Drawing(NamedTuple):
    """What a chart's draw function (``Chart.draw``) is given: its inputs by asset name (pandas
    frames, Dask frames in partitions, a model), the merged summaries of the loan book that the
    charts drawn asked for (``chart_summaries.SUMMARIES``), and the loan book's sample rows
    (``Chart.sample``'s columns; None when no chart drawn asked for any)."""

    inputs: Mapping[str, object]
    book: dict
    sample: pd.DataFrame | None


def draw(keys: Iterable[str], inputs: Mapping[str, object]) -> Iterator[tuple[str, Figure]]:
    """Draw the charts ``keys`` (of ``chart_registry.CHARTS``), one at a time, in that order,
    from ``inputs``, the assets they are drawn from by name: pandas frames, or Dask frames in
    partitions (the segments partitioned like the loans), and the models. Only summaries and
    samples reach this process: one pass over the loans for all their charts' summaries, the
    sample rows, and what a chart computes itself (the loan-amount chart's bins, the
    calibration's score bins, the segment sizes)."""
    entries = [chart_registry.chart(key) for key in keys]
    loans = inputs.get("validated_loans")
    book = book_summaries(loans, (name for entry in entries for name in entry.summaries))
    columns = list(dict.fromkeys(c for entry in entries for c in entry.sample))
    sample = sample_rows(loans, book["rows"], columns) if columns else None
    drawing = Drawing(inputs, book, sample)
    for entry in entries:
        yield entry.key, globals()[entry.draw](drawing)


# What a chart's picture depends on besides its inputs: the project's code (which draws it), the
# libraries that compute and render it, and the font files its text is set in on this machine.
_DRAWING_LIBRARIES = ("matplotlib", "seaborn", "numpy", "pandas", "scipy", "pillow")


@functools.cache
def drawing_version() -> str:
    """The digest of everything but the inputs that a chart's PNG depends on (once a process)."""
    return fingerprint.digest_of_parts(
        fingerprint.code_version(*_DRAWING_LIBRARIES), *chart_style.font_files()
    )


# The largest table a chart's digest is taken of. Digesting costs about 0.6 s per million rows
# of the loan book's columns (measured), drawing a chart about 0.25 s whatever the book: above
# this a kept PNG would save less than its digest costs on a run with a new book.
DIGEST_MAX_ROWS = 200_000


def digests_of(keys: Iterable[str], inputs: Mapping[str, object]) -> dict[str, str | None]:
    """Per chart of ``keys``, the digest of what its PNG is drawn from: the chart, the
    ``drawing_version``, and each input it is drawn from as this step holds it (every column
    the step loads). Equal digests, identical PNGs: a PNG drawn before can be used again.
    None (drawn, not kept) for a chart with an input held elsewhere (a Dask frame in
    partitions) or a table of more than ``DIGEST_MAX_ROWS`` rows."""
    if any(isinstance(v, pd.DataFrame) and len(v) > DIGEST_MAX_ROWS for v in inputs.values()):
        return dict.fromkeys(keys)
    of_input: dict[str, str | None] = {}
    out: dict[str, str | None] = {}
    for key in keys:
        names = chart_registry.chart(key).inputs
        for name in names:
            if name not in of_input:
                of_input[name] = fingerprint.value_digest(inputs.get(name))
        parts = [of_input[name] for name in names]
        out[key] = (
            None
            if any(part is None for part in parts)
            else fingerprint.digest_of_parts(key, drawing_version(), *parts)
        )
    return out


def draw_loan_amount_distribution(drawing: Drawing) -> Figure:
    extents = drawing.book["amount_extents"]
    kde, plan, binned = loan_amount_summaries(
        drawing.inputs["validated_loans"], extents, drawing.sample
    )
    return book_charts.loan_amount_distribution_figure(extents, plan, binned, kde)


def draw_payment_history_recovery(drawing: Drawing) -> Figure:
    return book_charts.payment_history_recovery_figure(drawing.book["history_outcomes"])


def draw_missed_payments_recovery(drawing: Drawing) -> Figure:
    return book_charts.missed_payments_recovery_figure(drawing.book["missed_outcomes"])


def draw_income_loan_recovery(drawing: Drawing) -> Figure:
    return book_charts.income_loan_recovery_figure(drawing.book["outcomes"], drawing.sample)


def draw_correlation_heatmap(drawing: Drawing) -> Figure:
    return book_charts.correlation_heatmap_figure(drawing.book["numeric"])


def draw_borrower_segments(drawing: Drawing) -> Figure:
    model = drawing.inputs.get("cluster_model")  # for the verdict in the title, when given
    return book_charts.borrower_segments_figure(
        drawing.inputs["validated_loans"],
        drawing.inputs["borrower_segments"],
        None if model is None else model.segmentation,
    )


def draw_k_selection(drawing: Drawing) -> Figure:
    return evidence_charts.k_selection(drawing.inputs["cluster_model"].selection)


def draw_calibration(drawing: Drawing) -> Figure:
    return evidence_charts.calibration_figure(drawing.inputs["risk_scores"], bins=10)


def draw_capacity_gains(drawing: Drawing) -> Figure:
    return evidence_charts.capacity_gains(drawing.inputs["capacity_gains"])


def draw_roll_rates(drawing: Drawing) -> Figure:
    return history_charts.roll_rates_figure(drawing.inputs["roll_rates"])


def draw_strategy_backtest(drawing: Drawing) -> Figure:
    return history_charts.strategy_backtest_figure(drawing.inputs["strategy_backtest"])


# Shorthands for one chart of pandas frames (analysts, tests): not needed to add a chart.


def _one(key: str, inputs: Mapping[str, object]) -> Figure:
    ((_, fig),) = draw([key], inputs)
    return fig


def loan_amount_distribution(loans: pd.DataFrame) -> Figure:
    """Left: density histogram of Loan_Amount (all rows) with a Gaussian kernel density
    estimate (on a sample when large). Right: Loan_Amount against Monthly_Income, scatter up
    to SAMPLE_LIMIT rows, hexbin of every row beyond, with the Pearson correlation."""
    return _one("chart_loan_amount_distribution", {"validated_loans": loans})


def payment_history_recovery(loans: pd.DataFrame) -> Figure:
    """Grouped bars: number of loans per recovery outcome within each Payment_History class
    (On-Time, Delayed, Missed), counted over every row."""
    return _one("chart_payment_history_recovery", {"validated_loans": loans})


def missed_payments_recovery(loans: pd.DataFrame) -> Figure:
    """Stacked bars: share of each recovery outcome per number of missed payments, every
    row, with the number of loans noted above each bar."""
    return _one("chart_missed_payments_recovery", {"validated_loans": loans})


def income_loan_recovery(loans: pd.DataFrame) -> Figure:
    """Scatter of Monthly_Income (x) vs Loan_Amount (y) coloured by recovery outcome, drawn
    from a sample of at most SAMPLE_LIMIT borrowers."""
    return _one("chart_income_loan_recovery", {"validated_loans": loans})


def borrower_segments(
    loans: pd.DataFrame, segments: pd.DataFrame, segmentation: str | None = None
) -> Figure:
    """Left: borrowers in the Monthly_Income vs Loan_Amount plane coloured by segment_name
    (sample when large). Right: borrowers per segment, every row. Borrowers with no segment
    are shown as 'Unassigned'. ``segmentation``: the verdict under the title, e.g. "no stable
    segmentation: k=2 shown as a convenient split"."""
    return book_charts.borrower_segments_figure(loans, segments, segmentation)


def correlation_heatmap(loans: pd.DataFrame) -> Figure:
    """Pearson correlation of every numeric column (pairwise complete rows), annotated to 2
    decimals, diverging palette centred on 0 over [-1, 1]."""
    return _one("chart_correlation_heatmap", {"validated_loans": loans})


def calibration_curve(scores: pd.DataFrame, bins: int = 10) -> Figure:
    """Observed outcome rate against predicted probability, by decile of the score, for the
    scores that were made without seeing the borrower (out-of-fold, or the held-out test set)."""
    return evidence_charts.calibration_figure(scores, bins)


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------


def figure_to_png(fig: Figure, dpi: int = 100) -> bytes:
    """Render ``fig`` to PNG bytes and close it.

    A figure laid out by its own engine (constrained or tight layout) is drawn once; only one
    without a layout engine gets the tight bounding box, which costs a second draw."""
    try:
        buffer = io.BytesIO()
        tight = None if fig.get_layout_engine() is not None else "tight"
        fig.savefig(buffer, format="png", dpi=dpi, bbox_inches=tight)
        return buffer.getvalue()
    finally:
        plt.close(fig)
