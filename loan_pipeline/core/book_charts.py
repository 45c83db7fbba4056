"""The loan book's charts: loan amounts, recovery by payment history and by missed payments,
income against amount by outcome, the borrower segments and the correlations, each a Figure
drawn from summaries of the book and its sample rows (``core.chart_summaries``).

``core.charts`` draws them (its ``draw_*`` functions, one per chart of ``core.chart_registry``)
and states the conventions every chart keeps. No Dagster here.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable

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

from loan_pipeline.core.chart_style import (  # noqa: E402
    CORRELATION_COLOURMAP,
    DENSITY_COLOUR,
    DOUBLE_FIGSIZE,
    EDGE_COLOUR,
    HEXBIN_COLOURMAP,
    HIGHLIGHT_COLOUR,
    INK_COLOUR,
    MONEY,
    MONEY_FORMAT,
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
    UNASSIGNED_SEGMENT,
    AmountBins,
    PlotSample,
    hexagon_centres,
    missed_outcome_table,
    segment_summaries,
    wilson_interval,
)
from loan_pipeline.core.summaries import CoMoments, label_codes, pearson  # noqa: E402

__all__ = [
    "PAYMENT_HISTORY_ORDER",
    "borrower_segments_figure",
    "correlation_heatmap_figure",
    "income_loan_recovery_figure",
    "loan_amount_distribution_figure",
    "missed_payments_recovery_figure",
    "payment_history_recovery_figure",
    "with_verdict",
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


def with_verdict(title: str, segmentation: str | None) -> str:
    """A title with the verdict on the segmentation under it, when there is one (so a chart of a
    convenient split never passes for one of groups the data insist on)."""
    if not segmentation:
        return title
    return f"{title}\n{segmentation[0].upper()}{segmentation[1:]}"


# --------------------------------------------------------------------------------------------
# 1. Loan amount distribution
# --------------------------------------------------------------------------------------------


@styled
def loan_amount_distribution_figure(
    extents: dict, plan: AmountBins, binned: dict, kde: PlotSample
) -> Figure:
    """The loan-amount chart from the amounts' extents (``amount_extents``), the plan of
    their bins, the counts on it and the density curve's sample
    (``chart_summaries.loan_amount_summaries``)."""
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
def payment_history_recovery_figure(cells: dict[tuple[str, str], int]) -> Figure:
    """The payment-history chart from the loans per (payment history, outcome)
    (``history_outcomes``)."""
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
def missed_payments_recovery_figure(cells: dict) -> Figure:
    """The missed-payments chart from the loans per (number of missed payments, outcome)
    (``missed_outcomes``)."""
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
def income_loan_recovery_figure(outcomes: dict[tuple[str], int], sample: pd.DataFrame) -> Figure:
    """The income / loan-amount chart from the loans per outcome (``outcomes``) and the
    sample rows it draws."""
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


# --------------------------------------------------------------------------------------------
# 5. Borrower segments
# --------------------------------------------------------------------------------------------


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
    fig.suptitle(with_verdict("Borrower segments", segmentation))
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


def borrower_segments_figure(loans, segments, segmentation: str | None = None) -> Figure:
    """The segments chart of ``loans`` and ``segments`` (whole, or partitioned alike);
    ``segmentation``: the verdict line for the title (``KSelection.summary``)."""
    seg_order, sizes, sample = segment_summaries(loans, segments)
    return _draw_borrower_segments(seg_order, sizes, sample, segmentation)


# --------------------------------------------------------------------------------------------
# 6. Correlation heatmap
# --------------------------------------------------------------------------------------------


@styled
def correlation_heatmap_figure(moments: CoMoments) -> Figure:
    """The correlation heatmap from the numeric columns' co-moments (``numeric``)."""
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
