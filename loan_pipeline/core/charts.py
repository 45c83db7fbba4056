"""The analyst charts as pure functions: tables in, matplotlib Figure out.

No Dagster here: the chart assets call ``draw`` and store ``figure_to_png(fig)``. Which charts
there are, and what each is drawn from, is ``core.chart_registry.CHARTS``; each chart's draw
function (``Chart.draw``, a ``draw_*`` function below) is here.

Every chart is drawn in three steps, so that a book of any size, whole in this process or in
partitions on a Dask cluster, gives the same picture (``draw``): summaries of the tables,
computed per partition and merged, and a reproducible sample of at most ``SAMPLE_LIMIT`` rows
(both ``core.chart_summaries``); then the drawing, here, from those summaries and that sample
only.

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

import io
import warnings
from collections.abc import Iterable, Iterator, Mapping
from typing import NamedTuple

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.legend import Legend  # noqa: E402
from matplotlib.ticker import LogFormatter, PercentFormatter  # noqa: E402
from scipy.stats import gaussian_kde  # noqa: E402

from loan_pipeline.core import chart_registry  # noqa: E402
from loan_pipeline.core.chart_style import (  # noqa: E402
    CORRELATION_COLOURMAP,
    DENSITY_COLOUR,
    DOUBLE_FIGSIZE,
    EDGE_COLOUR,
    GUIDE_COLOUR,
    HEXBIN_COLOURMAP,
    HIGHLIGHT_COLOUR,
    INK_COLOUR,
    MONEY,
    MONEY_FORMAT,
    REFERENCE_COLOUR,
    SERIES_COLOUR,
    SINGLE_FIGSIZE,
    STATUS_ORDER,
    compact,
    segment_palette,
    status_palette,
    styled,
)
from loan_pipeline.core.chart_summaries import (  # noqa: E402
    HEX_GRIDSIZE,
    NOT_RECORDED,
    OPEN_LABEL,
    SCORE_HISTOGRAM_BINS,
    UNASSIGNED_SEGMENT,
    AmountBins,
    PlotSample,
    ScoreBins,
    book_summaries,
    calibration_summaries,
    hexagon_centres,
    loan_amount_summaries,
    missed_outcome_table,
    sample_rows,
    segment_summaries,
    wilson_interval,
)
from loan_pipeline.core.summaries import CoMoments, label_codes, pearson  # noqa: E402

__all__ = [
    "Drawing",
    "borrower_segments",
    "calibration_curve",
    "capacity_gains",
    "correlation_heatmap",
    "draw",
    "figure_to_png",
    "income_loan_recovery",
    "k_selection",
    "loan_amount_distribution",
    "missed_payments_recovery",
    "payment_history_recovery",
]

PAYMENT_HISTORY_ORDER = ["On-Time", "Delayed", "Missed"]


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _levels(present: Iterable[str], preferred: list[str], missing_label: str) -> list[str]:
    """The labels present in display order: ``preferred`` first, then unexpected ones (sorted),
    then ``missing_label`` (standing in for missing values) last."""
    present = set(present)
    levels = [p for p in preferred if p in present and p != missing_label]
    levels += sorted(present - set(preferred) - {missing_label})
    if missing_label in present:
        levels.append(missing_label)
    return levels


def _as_levels(values: pd.Series, levels: list[str], missing_label: str) -> pd.Categorical:
    """A sample's text column as a categorical of ``levels`` (the whole table's), missing values
    as ``missing_label``."""
    codes, labels = label_codes(values, missing_label)
    position = {level: i for i, level in enumerate(levels)}
    # (``labels`` always lists ``missing_label``, present in the sample or not)
    where = np.array([position.get(label, -1) for label in labels], dtype=np.intp)
    return pd.Categorical.from_codes(where[codes], categories=levels)


def _retitled_legend(
    ax: Axes,
    title: str,
    loc: str,
    bbox_to_anchor: tuple[float, float] | None = None,
    markerscale: float | None = None,
) -> Legend:
    """The legend seaborn drew (if any) drawn again, titled ``title``, at ``loc`` (outside the
    axes with ``bbox_to_anchor``); None is matplotlib's default for the last two."""
    legend = ax.get_legend()
    handles, labels = ax.get_legend_handles_labels()
    if legend is not None:
        legend.remove()
    return ax.legend(
        handles,
        labels,
        title=title,
        loc=loc,
        bbox_to_anchor=bbox_to_anchor,
        markerscale=markerscale,
    )


def _points_in_plane(
    ax: Axes,
    points: pd.DataFrame,
    hue: str,
    order: list[str],
    palette: dict,
    size: int,
    title: str,
    legend_title: str,
) -> None:
    """The sample's points in the income / loan-amount plane, coloured by the column ``hue``
    (``order``, ``palette``): of ``size`` up to 2,000 points, smaller and fainter beyond; the
    legend beside the axes, its markers opaque."""
    few = len(points) <= 2_000
    sns.scatterplot(
        data=points,
        x="Monthly_Income",
        y="Loan_Amount",
        hue=hue,
        hue_order=order,
        palette=palette,
        s=size if few else 8,
        alpha=0.75 if few else 0.4,
        linewidth=0,
        ax=ax,
    )
    ax.set_title(title)
    ax.set_xlabel(f"Monthly income {MONEY}")
    ax.set_ylabel(f"Loan amount {MONEY}")
    ax.xaxis.set_major_formatter(MONEY_FORMAT)
    ax.yaxis.set_major_formatter(MONEY_FORMAT)
    legend = _retitled_legend(ax, legend_title, "upper left", (1.01, 1.0), markerscale=1.5)
    for handle in legend.legend_handles:
        handle.set_alpha(1.0)


# --------------------------------------------------------------------------------------------
# 1. Loan amount distribution
# --------------------------------------------------------------------------------------------


@styled
def _draw_loan_amount_distribution(
    extents: dict, plan: AmountBins, binned: dict, kde: PlotSample
) -> Figure:
    fig, (ax_hist, ax_xy) = plt.subplots(1, 2, figsize=DOUBLE_FIGSIZE, layout="constrained")
    fig.suptitle("How large are the loans, and do they scale with income?")
    _amount_histogram(ax_hist, plan, binned["histogram"], extents["amounts"].n, kde)
    _amount_against_income(fig, ax_xy, plan, binned, extents["moments"])
    return fig


def _amount_histogram(
    ax: Axes, plan: AmountBins, counts: np.ndarray, n_amounts: int, kde: PlotSample
) -> None:
    """The left panel: the share of every loan amount in each bin of a round width, with the
    density curve over it on the same scale; the x axis ends where the bins do."""
    # Histogram on every row, binned per partition on fixed edges, drawn by seaborn from the
    # bin counts (weights); stat="probability": each bar the share of loans in its bin.
    edges = np.histogram_bin_edges(np.empty(0), bins=plan.bins, range=plan.range)
    centres = (edges[:-1] + edges[1:]) / 2
    width = compact(plan.width)
    sns.histplot(
        data=pd.DataFrame({"Loan_Amount": centres, "loans": counts}),
        x="Loan_Amount",
        weights="loans",
        bins=edges.tolist(),  # a list: seaborn compares `bins == "auto"`
        stat="probability",
        color=SERIES_COLOUR,
        alpha=0.45,
        edgecolor=EDGE_COLOUR,
        label=f"Histogram (all {n_amounts:,} loans)",
        ax=ax,
    )
    kde_note = _density_curve(ax, kde, plan)
    ax.set_title(f"Distribution of loan amounts{kde_note}")
    ax.set_xlabel(f"Loan amount {MONEY}")
    ax.set_ylabel(f"Share of loans per {width} bin (%)")
    ax.xaxis.set_major_formatter(MONEY_FORMAT)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_xlim(edges[0], edges[-1])
    ax.set_ylim(0, ax.get_ylim()[1] * 1.25)  # headroom for the legend
    ax.legend(loc="upper center", ncols=2)


def _density_curve(ax: Axes, kde: PlotSample, plan: AmountBins) -> str:
    """A Gaussian kernel density curve of the sample's amounts over the bins' range, scaled to
    the share of loans per bin (density times the bin width); returns the note for the title
    (the sample it is drawn from, or why there is none)."""
    kde_values = kde.frame["Loan_Amount"].to_numpy()
    if len(np.unique(kde_values)) < 2:
        return "\n(too few distinct amounts for a density curve)"
    density = gaussian_kde(kde_values)
    # not beyond the bins (the smallest and largest loans): no curve where no loan can be
    grid = np.linspace(*plan.range, 512)
    share = density(grid) * plan.width
    ax.plot(grid, share, color=DENSITY_COLOUR, lw=2, label="Kernel density estimate")
    if kde.is_sample:
        return f"\ndensity curve from a {kde.note.replace('borrowers', 'loans')}"
    return ""


def _amount_against_income(
    fig: Figure, ax: Axes, plan: AmountBins, binned: dict, moments: CoMoments
) -> None:
    """The right panel: every complete (income, amount) pair, as points when they are few,
    else as hexagons, with their Pearson correlation."""
    n_pairs = int(moments.n[0, 1])
    r = float(pearson(moments).iloc[0, 1])
    if plan.hexagons is None:
        _pairs_scatter(ax, binned["pairs"], n_pairs)
        shown = f"all {n_pairs:,} loans"
    else:
        _pairs_hexbin(fig, ax, binned["hexagons"], plan.hexagons)
        shown = f"hexbin of all {n_pairs:,} loans"
    r_text = f"{round(r, 2) + 0.0:.2f}"  # no '-0.00'
    ax.set_title(f"Loan amount vs monthly income\nPearson r = {r_text} ({shown})")
    ax.set_xlabel(f"Monthly income {MONEY}")
    ax.set_ylabel(f"Loan amount {MONEY}")
    ax.xaxis.set_major_formatter(MONEY_FORMAT)
    ax.yaxis.set_major_formatter(MONEY_FORMAT)


def _pairs_scatter(ax: Axes, pairs: np.ndarray, n_pairs: int) -> None:
    """The pairs as points, with their least-squares line when it is defined."""
    x, y = pairs[:, 0], pairs[:, 1]
    sns.scatterplot(
        x=x, y=y, s=18, alpha=0.6, color=SERIES_COLOUR, linewidth=0, label="Loan", ax=ax
    )
    if n_pairs >= 2 and np.ptp(x) > 0:
        slope, intercept = np.polyfit(x, y, 1)
        line_x = np.array([x.min(), x.max()])
        ax.plot(
            line_x,
            intercept + slope * line_x,
            color=HIGHLIGHT_COLOUR,
            lw=2,
            label="Least-squares line",
        )
    ax.set_ylim(top=ax.get_ylim()[1] + 0.18 * np.ptp(ax.get_ylim()))
    ax.legend(loc="upper center", ncols=2)


def _pairs_hexbin(
    fig: Figure, ax: Axes, cells: np.ndarray, hex_extent: tuple[float, float, float, float]
) -> None:
    """The pairs counted per hexagon (``chart_summaries.hexagon_counts``), on a log colour
    scale."""
    # every pair, counted per hexagon on the workers: drawn as one point per hexagon
    # weighted by its count, the picture hexbin makes of the points themselves
    used = cells > 0
    centres_xy = hexagon_centres(hex_extent)[used]
    hexes = ax.hexbin(
        centres_xy[:, 0],
        centres_xy[:, 1],
        C=cells[used],
        reduce_C_function=np.sum,
        gridsize=HEX_GRIDSIZE,
        extent=hex_extent,
        bins="log",
        mincnt=1,
        cmap=HEXBIN_COLOURMAP,
    )
    colorbar = fig.colorbar(hexes, ax=ax, label="Loans per hexagon (log scale)")
    colorbar.ax.yaxis.set_major_formatter(LogFormatter())
    colorbar.ax.yaxis.set_minor_formatter(LogFormatter(minor_thresholds=(1, 0.4)))


# --------------------------------------------------------------------------------------------
# 2. Recovery outcome by payment history
# --------------------------------------------------------------------------------------------


@styled
def _draw_payment_history_recovery(cells: dict[tuple[str, str], int]) -> Figure:
    levels = _levels({status for _, status in cells}, STATUS_ORDER, OPEN_LABEL)
    hist_levels = _levels({history for history, _ in cells}, PAYMENT_HISTORY_ORDER, NOT_RECORDED)
    keys = sorted(cells, key=lambda k: (hist_levels.index(k[0]), levels.index(k[1])))
    counts = pd.DataFrame(
        {
            "Payment_History": pd.Categorical([h for h, _ in keys], categories=hist_levels),
            "Recovery_Status": pd.Categorical([s for _, s in keys], categories=levels),
            "Loans": np.array([cells[k] for k in keys], dtype=np.int64),
        }
    )
    totals = counts.groupby("Payment_History", observed=True)["Loans"].sum()

    fig, ax = plt.subplots(figsize=SINGLE_FIGSIZE, layout="constrained")
    fig.suptitle("Recovery outcome by payment history")
    sns.barplot(
        data=counts,
        x="Payment_History",
        y="Loans",
        hue="Recovery_Status",
        order=hist_levels,
        hue_order=levels,
        palette=status_palette(levels),
        saturation=1.0,  # keep the exact STATUS_PALETTE colours
        ax=ax,
    )
    for container in ax.containers:
        ax.bar_label(container, labels=[compact(v) for v in container.datavalues], fontsize=8)
    ax.set_xticks(range(len(hist_levels)))
    ax.set_xticklabels([f"{h}\n(n = {int(totals.get(h, 0)):,})" for h in hist_levels])
    ax.set_title(
        "Loans counted per outcome within each payment-history class "
        f"(all {sum(cells.values()):,} loans)"
    )
    ax.set_xlabel("Payment history")
    ax.set_ylabel("Loans (count)")
    ax.yaxis.set_major_formatter(MONEY_FORMAT)
    ax.margins(y=0.1)
    _retitled_legend(ax, "Recovery status", "upper right")
    return fig


# --------------------------------------------------------------------------------------------
# 3. Recovery outcome mix by number of missed payments
# --------------------------------------------------------------------------------------------


@styled
def _draw_missed_payments_recovery(cells: dict) -> Figure:
    levels = _levels({status for _, status in cells}, STATUS_ORDER, OPEN_LABEL)
    palette = status_palette(levels)
    n_unrecorded = sum(n for (m, _), n in cells.items() if m is None)

    counts = missed_outcome_table(cells, levels)
    totals = counts.sum(axis=1)
    shares = counts.div(totals, axis=0)
    positions = np.arange(len(counts))
    crowded = len(counts) > 25

    fig, ax = plt.subplots(figsize=(9, 6), layout="constrained")
    fig.suptitle("Recovery outcome mix by number of missed payments")
    _stacked_shares(ax, positions, shares, levels, palette)
    _boundary_intervals(ax, positions, counts, crowded)

    subtitle = (
        f"Share of loans per outcome (all {sum(cells.values()):,} loans), n under each bar;\n"
        "whiskers: 95% Wilson interval of each boundary between outcomes"
    )
    if n_unrecorded:
        subtitle += f"\n{n_unrecorded:,} loans without a missed-payment count are not shown"
    ax.set_title(subtitle)
    ax.set_xticks(positions)
    ax.set_xticklabels(_count_labels(counts.index, totals, crowded), rotation=90 if crowded else 0)
    ax.tick_params(axis="x", labelsize=7 if len(counts) > 14 else 9)
    ax.set_xlim(-0.6, len(counts) - 0.4)
    ax.set_ylim(0, 1.03)  # room for the caps of an interval that reaches 100%
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_xlabel("Missed payments (count of instalments); n = loans with that many")
    ax.set_ylabel("Share of loans (%)")
    ax.grid(axis="x", visible=False)
    ax.legend(title="Recovery status", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def _count_labels(missed: pd.Index, totals: pd.Series, crowded: bool) -> list[str]:
    """Each bar's number of missed payments with its number of loans under it ("3\nn=113"; on
    one line when the labels are turned upright)."""
    labels = []
    for value, total in zip(missed, totals, strict=True):
        count = compact(value) if float(value).is_integer() else f"{value:g}"
        n = f"{total:,}" if total < 1_000 else compact(total, digits=2)
        labels.append(f"{count} (n={n})" if crowded else f"{count}\nn={n}")
    return labels


def _boundary_intervals(
    ax: Axes, positions: np.ndarray, counts: pd.DataFrame, crowded: bool
) -> None:
    """On each bar, at each boundary between two stacked outcomes, the 95% Wilson interval of
    the share below it (a binomial share of the bar's loans): a bar of 3 loans carries whiskers
    most of the bar long, one of 130 short ones."""
    totals = counts.sum(axis=1).to_numpy()
    below = counts.cumsum(axis=1).to_numpy()[:, :-1]  # loans below each inner boundary
    for j in range(below.shape[1]):
        share = below[:, j] / totals
        lo, hi = wilson_interval(below[:, j], totals)
        ax.errorbar(
            positions,
            share,
            yerr=np.vstack([share - lo, hi - share]),
            fmt="none",
            ecolor=INK_COLOUR,
            elinewidth=0.9,
            capsize=1.5 if crowded else 3,
        )


def _stacked_shares(
    ax: Axes, positions: np.ndarray, shares: pd.DataFrame, levels: list[str], palette: dict
) -> None:
    """One bar per number of missed payments: the outcomes' shares stacked in ``levels``
    order."""
    bottom = np.zeros(len(shares))
    for level in levels:
        ax.bar(
            positions,
            shares[level].to_numpy(),
            bottom=bottom,
            width=0.8,
            color=palette[level],
            edgecolor=EDGE_COLOUR,
            linewidth=0.5,
            label=level,
        )
        bottom += shares[level].to_numpy()


# --------------------------------------------------------------------------------------------
# 4. Income vs loan amount by recovery outcome
# --------------------------------------------------------------------------------------------


@styled
def _draw_income_loan_recovery(outcomes: dict[tuple[str], int], sample: pd.DataFrame) -> Figure:
    levels = _levels({status for (status,) in outcomes}, STATUS_ORDER, OPEN_LABEL)
    points = pd.DataFrame(
        {
            "Monthly_Income": sample["Monthly_Income"].to_numpy(),
            "Loan_Amount": sample["Loan_Amount"].to_numpy(),
            "Recovery_Status": _as_levels(sample["Recovery_Status"], levels, OPEN_LABEL),
        }
    )
    shown = PlotSample(points, len(points), sum(outcomes.values()))

    fig, ax = plt.subplots(figsize=SINGLE_FIGSIZE, layout="constrained")
    fig.suptitle("Monthly income vs loan amount, by recovery outcome")
    title = shown.note[0].upper() + shown.note[1:]
    palette = status_palette(levels)
    _points_in_plane(ax, points, "Recovery_Status", levels, palette, 22, title, "Recovery status")
    return fig


def _with_verdict(title: str, segmentation: str | None) -> str:
    """A title with the verdict on the segmentation under it, when there is one (so a chart of a
    convenient split never passes for one of groups the data insist on)."""
    if not segmentation:
        return title
    return f"{title}\n{segmentation[0].upper()}{segmentation[1:]}"


@styled
def _draw_borrower_segments(
    seg_order: list[str], sizes: dict[str, int], sample: pd.DataFrame, segmentation: str | None
) -> Figure:
    order = [s for s in seg_order if s in sizes]
    if UNASSIGNED_SEGMENT in sizes:
        order.append(UNASSIGNED_SEGMENT)
    counts = np.array([sizes[s] for s in order], dtype=np.int64)
    n_loans = int(counts.sum())
    palette = segment_palette(order)
    points = sample.assign(
        segment_name=_as_levels(sample["segment_name"], order, UNASSIGNED_SEGMENT)
    )
    shown = PlotSample(points, len(points), n_loans)

    fig, (ax_xy, ax_size) = plt.subplots(
        1, 2, figsize=DOUBLE_FIGSIZE, layout="constrained", width_ratios=[1.5, 1]
    )
    fig.suptitle(_with_verdict("Borrower segments", segmentation))
    title = f"Segments in the income / loan-amount plane\n{shown.note}"
    _points_in_plane(ax_xy, points, "segment_name", order, palette, 20, title, "Segment")
    _segment_size_bars(ax_size, order, counts, palette)
    return fig


def _segment_size_bars(ax: Axes, order: list[str], counts: np.ndarray, palette: dict) -> None:
    """Borrowers per segment (``order``), each bar labelled with its count and share."""
    n_loans = int(counts.sum())
    positions = np.arange(len(order))
    ax.barh(positions, counts, color=[palette[s] for s in order])
    ax.set_yticks(positions)
    ax.set_yticklabels(order)
    ax.invert_yaxis()
    ax.bar_label(
        ax.containers[0],
        labels=[f"{int(v):,} ({v / n_loans:.0%})" for v in counts],
        padding=3,
        fontsize=8,
    )
    ax.margins(x=0.25)
    ax.xaxis.set_major_formatter(MONEY_FORMAT)
    ax.set_title(f"Segment sizes (all {n_loans:,} borrowers)")
    ax.set_xlabel("Borrowers (count)")
    ax.set_ylabel("Segment")
    ax.grid(axis="y", visible=False)


def _segments_figure(loans, segments, segmentation: str | None = None) -> Figure:
    """The segments chart of ``loans`` and ``segments`` (whole, or partitioned alike);
    ``segmentation``: the verdict line for the title (``KSelection.summary``)."""
    seg_order, sizes, sample = segment_summaries(loans, segments)
    return _draw_borrower_segments(seg_order, sizes, sample, segmentation)


# --------------------------------------------------------------------------------------------
# 6. Correlation heatmap
# --------------------------------------------------------------------------------------------


@styled
def _draw_correlation_heatmap(moments: CoMoments) -> Figure:
    columns = list(moments.columns)
    corr = pearson(moments)
    labels = [str(c).replace("_", " ") for c in columns]
    # Two decimals, without the '-0.00' that tiny negative values would print as.
    annotations = np.vectorize(lambda v: "" if np.isnan(v) else f"{v + 0.0:.2f}")(
        corr.to_numpy().round(2)
    )

    size = max(8.0, 0.55 * len(columns) + 3.0)
    fig, ax = plt.subplots(figsize=(size, size * 0.8), layout="constrained")
    fig.suptitle("Correlation between numeric loan attributes")
    with warnings.catch_warnings():
        # seaborn 0.13 calls Colormap.set_bad, which matplotlib >= 3.11 flags as pending removal.
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        sns.heatmap(
            corr,
            annot=annotations,
            fmt="",
            annot_kws={"fontsize": 8},
            cmap=CORRELATION_COLOURMAP,
            center=0,
            vmin=-1,
            vmax=1,
            square=True,
            linewidths=0.5,
            linecolor=EDGE_COLOUR,
            xticklabels=labels,
            yticklabels=labels,
            cbar_kws={"label": "Pearson correlation coefficient", "shrink": 0.8},
            ax=ax,
        )
    ax.set_title(f"Pearson r over all {moments.rows:,} loans (pairwise complete rows)")
    ax.set_xlabel("Attribute")
    ax.set_ylabel("Attribute")
    ax.tick_params(axis="x", labelrotation=45)
    for tick in ax.get_xticklabels():
        tick.set_horizontalalignment("right")
        tick.set_rotation_mode("anchor")
    ax.tick_params(axis="y", labelrotation=0)
    return fig


# --------------------------------------------------------------------------------------------
# Model evidence
# --------------------------------------------------------------------------------------------


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
    title = _with_verdict("Choosing the number of segments", selection.summary)
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


def _calibration_figure(scores, bins: int) -> Figure:
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


def draw_loan_amount_distribution(drawing: Drawing) -> Figure:
    extents = drawing.book["amount_extents"]
    kde, plan, binned = loan_amount_summaries(
        drawing.inputs["validated_loans"], extents, drawing.sample
    )
    return _draw_loan_amount_distribution(extents, plan, binned, kde)


def draw_payment_history_recovery(drawing: Drawing) -> Figure:
    return _draw_payment_history_recovery(drawing.book["history_outcomes"])


def draw_missed_payments_recovery(drawing: Drawing) -> Figure:
    return _draw_missed_payments_recovery(drawing.book["missed_outcomes"])


def draw_income_loan_recovery(drawing: Drawing) -> Figure:
    return _draw_income_loan_recovery(drawing.book["outcomes"], drawing.sample)


def draw_correlation_heatmap(drawing: Drawing) -> Figure:
    return _draw_correlation_heatmap(drawing.book["numeric"])


def draw_borrower_segments(drawing: Drawing) -> Figure:
    model = drawing.inputs.get("cluster_model")  # for the verdict in the title, when given
    return _segments_figure(
        drawing.inputs["validated_loans"],
        drawing.inputs["borrower_segments"],
        None if model is None else model.segmentation,
    )


def draw_k_selection(drawing: Drawing) -> Figure:
    return k_selection(drawing.inputs["cluster_model"].selection)


def draw_calibration(drawing: Drawing) -> Figure:
    return _calibration_figure(drawing.inputs["risk_scores"], bins=10)


def draw_capacity_gains(drawing: Drawing) -> Figure:
    return capacity_gains(drawing.inputs["capacity_gains"])


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
    return _segments_figure(loans, segments, segmentation)


def correlation_heatmap(loans: pd.DataFrame) -> Figure:
    """Pearson correlation of every numeric column (pairwise complete rows), annotated to 2
    decimals, diverging palette centred on 0 over [-1, 1]."""
    return _one("chart_correlation_heatmap", {"validated_loans": loans})


def calibration_curve(scores: pd.DataFrame, bins: int = 10) -> Figure:
    """Observed outcome rate against predicted probability, by decile of the score, for the
    scores that were made without seeing the borrower (out-of-fold, or the held-out test set)."""
    return _calibration_figure(scores, bins)


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
