"""The model evidence charts: how the number of segments was chosen (``k_selection``), how much
bad balance a worklist of each size catches (``capacity_gains``), and whether the risk score is
calibrated (``calibration_figure``).

``core.charts`` draws them (its ``draw_*`` functions, one per chart of ``core.chart_registry``)
and states the conventions every chart keeps. No Dagster here.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import PercentFormatter  # noqa: E402

from loan_pipeline.core.book_charts import with_verdict  # noqa: E402
from loan_pipeline.core.chart_style import (  # noqa: E402
    DOUBLE_FIGSIZE,
    EDGE_COLOUR,
    GUIDE_COLOUR,
    HIGHLIGHT_COLOUR,
    INK_COLOUR,
    REFERENCE_COLOUR,
    SERIES_COLOUR,
    styled,
)
from loan_pipeline.core.chart_summaries import (  # noqa: E402
    SCORE_HISTOGRAM_BINS,
    ScoreBins,
    calibration_summaries,
)

__all__ = ["calibration_figure", "capacity_gains", "k_selection"]


@styled
def k_selection(selection) -> Figure:
    """The evidence behind k (a ``segmentation.KSelection``): per candidate k, its prediction
    strength against the stability bar (``ClusterConfig.stability_threshold``), and, at the
    stable k, the gap statistic's gain over k-1 against the gain's standard error. The title
    says the verdict and which test each k failed."""
    ks = selection.table["k"].to_numpy()
    fig, (ax_ps, ax_gain) = plt.subplots(1, 2, figsize=DOUBLE_FIGSIZE, layout="constrained")
    _prediction_strength_panel(ax_ps, selection, ks)
    _gap_gain_panel(ax_gain, selection)
    for ax in (ax_ps, ax_gain):
        ax.set_xlabel("Number of segments k")
        ax.set_xticks(ks)
        ax.set_xlim(ks.min() - 0.5, ks.max() + 0.5)
        ax.legend(loc="best", fontsize=8)
    title = with_verdict("Choosing the number of segments", selection.summary)
    fig.suptitle(
        f"{title}\n{_k_evidence(selection)}",
        fontweight="bold",
        color=INK_COLOUR if selection.supported else HIGHLIGHT_COLOUR,
    )
    return fig


def _k_list(ks) -> str:
    return ", ".join(str(int(k)) for k in ks)


def _k_evidence(selection) -> str:
    """Why the verdict, in one line: which k clear the stability bar and the gap test."""
    table = selection.table
    bar = f"the stability bar of {selection.stability_threshold:g}"
    if selection.supported:
        row = selection.chosen_row
        return (
            f"k={selection.chosen} clears {bar} (prediction strength "
            f"{row['prediction_strength']:.2f}) and the gap test (gain "
            f"{row['gap_gain']:.3f} > {row['gap_sd']:.3f} needed)"
        )
    if table["supported"].any():  # a configured k the data do not support, others they do
        passing = table.loc[table["supported"], "k"]
        return f"k={_k_list(passing)} {'passes' if len(passing) == 1 else 'pass'} both tests"
    stable = table.loc[table["stable"], "k"]
    if stable.empty:
        best = table.loc[table["prediction_strength"].idxmax()]
        return (
            f"Every k falls below {bar} (best: k={int(best['k'])} at "
            f"{best['prediction_strength']:.2f}): no k passes"
        )
    one = len(stable) == 1
    clear, fail = ("clears", "fails") if one else ("clear", "fail")
    rest = "; every other k falls below it" if len(stable) < len(table) else ""
    return f"k={_k_list(stable)} {clear} {bar} but {fail} the gap test{rest}"


def _prediction_strength_panel(ax: Axes, selection, ks: np.ndarray) -> None:
    """Reproducible? Each candidate k's mean (and minimum) prediction strength against the
    stability bar, the region below it shaded, each k filled when it clears the bar and hollow
    when not, the k used ringed."""
    table = selection.table
    chosen = selection.chosen
    used = (table["k"] == chosen).to_numpy()
    stable = table["stable"].to_numpy(dtype=bool)
    threshold = selection.stability_threshold
    ax.axhspan(0, threshold, color=GUIDE_COLOUR, alpha=0.08, lw=0, label="below the bar")
    ax.axhline(
        threshold,
        color=GUIDE_COLOUR,
        linestyle="--",
        linewidth=1.2,
        label=f"stability bar: {threshold:g}",
    )
    ps = table["prediction_strength"].to_numpy()
    ax.plot(ks, ps, color=SERIES_COLOUR, label="mean")
    ax.fill_between(
        ks,
        table["prediction_strength_min"],
        ps,
        color=SERIES_COLOUR,
        alpha=0.15,
        label="min to mean",
    )
    for passes, label in ((True, "clears the bar"), (False, "below the bar")):
        where = stable == passes
        if where.any():
            ax.scatter(
                ks[where],
                ps[where],
                s=36,
                facecolors=SERIES_COLOUR if passes else EDGE_COLOUR,
                edgecolors=SERIES_COLOUR,
                linewidths=1.5,
                zorder=4,
                label=f"k {label}",
            )
    ax.scatter(
        ks[used],
        ps[used],
        s=140,
        facecolors="none",
        edgecolors=HIGHLIGHT_COLOUR,
        linewidths=2,
        zorder=5,
        label=f"k = {chosen} (used)",
    )
    ax.set_ylim(0, 1.05)
    ax.set_title("Reproducible? Prediction strength on halves of the book")
    ax.set_ylabel("Prediction strength (share of pairs kept together)")


def _gap_gain_panel(ax: Axes, selection) -> None:
    """Beyond a structureless book? The gap statistic's gain over k-1 where it was computed
    (the stable k), against the gain needed, each bar saying whether it passes; a note when no
    k was stable."""
    table = selection.table
    computed = table[table["gap_gain"].notna()]
    bars = ax.bar(
        computed["k"],
        computed["gap_gain"],
        color=np.where(computed["k"] == selection.chosen, HIGHLIGHT_COLOUR, SERIES_COLOUR),
        alpha=0.7,
        label="gain: gap(k) - gap(k-1)",
    )
    ax.bar_label(
        bars,
        labels=["passes" if ok else "fails" for ok in computed["gap_significant"]],
        padding=3,
        fontsize=8,
    )
    ax.scatter(
        computed["k"],
        computed["gap_sd"],
        marker="_",
        s=400,
        linewidths=2,
        color=INK_COLOUR,
        zorder=5,
        label="gain needed (standard error)",
    )
    ax.axhline(0, color=GUIDE_COLOUR, linewidth=0.8)
    if computed.empty:
        ax.text(
            0.5,
            0.65,
            f"no k clears the stability bar ({selection.stability_threshold:g}):\nnothing to test",
            transform=ax.transAxes,
            ha="center",
            va="center",
            color=GUIDE_COLOUR,
            bbox={"facecolor": EDGE_COLOUR, "edgecolor": "none"},  # clear of the zero line
        )
    else:
        ax.margins(y=0.15)  # room for the bars' labels
    ax.set_title("Beyond a structureless book? Gap statistic, at the stable k")
    ax.set_ylabel("Gain in gap over k-1 (log W)")


@styled
def capacity_gains(table: pd.DataFrame) -> Figure:
    """The capacity gain curve (``core.gains``): for a worklist of each size, the share of the
    bad balance it would have caught, ranked by expected loss (solid) and by the score alone
    (dashed), against a random order (the diagonal); left the not fully recovered balance,
    right the written-off balance; the current policy's worklist sizes marked."""
    fig, axes = plt.subplots(1, 2, figsize=DOUBLE_FIGSIZE, layout="tight")
    curves = table[table["mark"].isna()]
    marks = table[table["mark"].notna()]
    panels = [
        (
            "Not fully recovered balance",
            ("shortfall_ranked", "expected shortfall"),
            ("score_ranked", "score alone (the bands' order)"),
        ),
        (
            "Written-off balance",
            ("write_off_ranked", "expected write-off"),
            ("write_off_score_ranked", "P(written off) alone"),
        ),
    ]
    for ax, (title, loss, score) in zip(axes, panels, strict=True):
        _gain_panel(ax, curves, marks, title, loss, score)
    fig.suptitle("How much bad balance does a worklist of each size catch?", fontweight="bold")
    return fig


def _gain_panel(
    ax: Axes,
    curves: pd.DataFrame,
    marks: pd.DataFrame,
    title: str,
    loss: tuple[str, str],
    score: tuple[str, str],
) -> None:
    """One balance's gain curves: ranked by expected loss and by the score alone (``loss`` and
    ``score``: the column of ``core.gains``' table and its label), against a random order."""
    (loss_column, loss_label), (score_column, score_label) = loss, score
    share = curves["capacity_share"].to_numpy()
    ax.plot([0, 1], [0, 1], linestyle=":", color=REFERENCE_COLOUR, label="random order")
    ax.plot(share, curves[loss_column].to_numpy(), color=HIGHLIGHT_COLOUR, label=loss_label)
    ax.plot(
        share,
        curves[score_column].to_numpy(),
        color=SERIES_COLOUR,
        linestyle="--",
        label=score_label,
    )
    for row in marks.itertuples():
        _worklist_mark(ax, row, loss_column, score_column)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_xlabel("Worklist size (share of the book, largest first)")
    ax.set_ylabel(f"{title} caught (share)")
    ax.set_title(f"{title}, held-out resolved loans")
    ax.legend(loc="lower right", title="ranked by")


def _worklist_mark(ax: Axes, row, loss_column: str, score_column: str) -> None:
    """One worklist size of the current policy (a row of ``core.gains``' table): the line names
    the size; a dot on each curve gives what it catches."""
    ax.axvline(row.capacity_share, color=GUIDE_COLOUR, linewidth=0.8)
    ax.text(
        row.capacity_share,
        0.02,
        f"{row.mark}: {row.borrowers:,} ",
        rotation=90,
        ha="right",
        va="bottom",
        fontsize=8,
    )
    for column, colour, (dx, dy, ha) in (
        (loss_column, HIGHLIGHT_COLOUR, (-4, 4, "right")),
        (score_column, SERIES_COLOUR, (4, -11, "left")),
    ):
        value = getattr(row, column)
        if np.isfinite(value):
            ax.scatter([row.capacity_share], [value], color=colour, s=18, zorder=5)
            ax.annotate(
                f"{value:.1%}",
                (row.capacity_share, value),
                xytext=(dx, dy),
                textcoords="offset points",
                ha=ha,
                fontsize=8,
                color=colour,
            )


def calibration_figure(scores, bins: int) -> Figure:
    """The calibration chart of ``scores`` (``risk_scores``, whole or in partitions): the
    held-out scores in ``bins`` bins of the score (``chart_summaries.calibration_summaries``)."""
    return _draw_calibration(*calibration_summaries(scores, bins))


# What the risk score is the probability of (``schemas.RISK_SCORE``: the pipeline's target).
_NOT_RECOVERED = "not being fully recovered"


@styled
def _draw_calibration(binned: ScoreBins, deciles: pd.DataFrame | None, q: int) -> Figure:
    fig, (ax, hist) = plt.subplots(
        1, 2, figsize=(12, 5), gridspec_kw={"width_ratios": [1.2, 1]}, layout="tight"
    )
    ax.plot([0, 1], [0, 1], linestyle="--", color=REFERENCE_COLOUR, label="perfect calibration")
    if binned.held_out:
        if deciles is not None:
            ax.plot(
                deciles["predicted"].to_numpy(),
                deciles["observed"].to_numpy(),
                marker="o",
                color=SERIES_COLOUR,
                label=f"held-out scores ({binned.held_out:,} borrowers, {q} bins)",
            )
        edges = np.linspace(0, 1, SCORE_HISTOGRAM_BINS + 1)
        hist.hist(
            edges[:-1],
            bins=edges,
            weights=binned.histogram,
            color=SERIES_COLOUR,
            alpha=0.8,
            label="held-out scores",
        )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel(f"Predicted probability of {_NOT_RECOVERED} (mean per bin)")
    ax.set_ylabel("Observed share not fully recovered")
    ax.set_title(f"Calibration: predicted vs observed probability of\n{_NOT_RECOVERED}")
    ax.legend(loc="upper left")
    hist.set_xlabel(f"Risk score: predicted probability of {_NOT_RECOVERED}")
    hist.set_ylabel("Borrowers (count)")
    hist.set_title("Distribution of the held-out scores")
    hist.legend(loc="upper right")
    fig.suptitle(f"Is a 0.7 score a 70% chance of {_NOT_RECOVERED}?", fontweight="bold")
    return fig
