"""The analyst charts as pure functions: tables in, matplotlib Figure out.

No Dagster here: the chart assets call ``draw`` and store ``figure_to_png(fig)``. Which charts
there are, and what each is drawn from, is ``core.chart_registry.CHARTS``; each chart's draw
function (``Chart.draw``, a ``draw_*`` function below) is here.

Every chart is drawn in three steps, so that a book of any size, whole in this process or in
partitions on a Dask cluster, gives the same picture (``draw``):

1. summaries of the table, each a pure function of one pandas frame (a partition, or the whole
   table as its one part) and a merge of the per-partition results (``partitions.summarise``):
   counts per outcome, histogram counts on fixed edges, moments for the correlations, binned
   scores for the calibration. Edges that depend on the data (the loan amounts' range, the
   hexagon grid) come from a first pass of extents;
2. for the point plots and the density curve, a reproducible sample of at most
   ``SAMPLE_LIMIT`` rows drawn by global position (``sample_positions``, fetched with
   ``partitions.take_positions``): the same rows in both modes;
3. the drawing, from the merged summaries and the sample only.

Conventions shared by every chart:

* Recovery outcomes always use ``STATUS_ORDER`` and ``STATUS_PALETTE`` (passed to seaborn as
  ``hue_order`` and ``palette``), so a colour means the same outcome on every chart. Loans with
  no outcome yet (missing ``Recovery_Status``) are drawn as the grey ``OPEN_LABEL`` category,
  never dropped.
* Aggregates (counts, shares, correlations, histograms, hexbins, calibration deciles) use every
  row. Point plots and kernel density estimates use the sample, and say so on the chart.
* Figures are created through pyplot, so callers must close them: ``figure_to_png`` does.
"""

from __future__ import annotations

import functools
import io
import math
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import NamedTuple

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.transforms as mtransforms  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogFormatter, PercentFormatter  # noqa: E402
from scipy.stats import gaussian_kde  # noqa: E402

from loan_pipeline.core import chart_registry  # noqa: E402
from loan_pipeline.core.partitions import per_partition, summarise, take_positions  # noqa: E402
from loan_pipeline.core.summaries import (  # noqa: E402
    CoMoments,
    Extent,
    add_counts,
    add_elementwise,
    co_moments,
    extent,
    finite,
    label_codes,
    label_counts,
    merge_co_moments,
    merge_extents,
    pearson,
)
from loan_pipeline.domain import HELD_OUT_SOURCES  # noqa: E402

__all__ = [
    "OPEN_LABEL",
    "SAMPLE_LIMIT",
    "SAMPLE_SEED",
    "STATUS_ORDER",
    "STATUS_PALETTE",
    "SUMMARIES",
    "Drawing",
    "PlotSample",
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
    "plot_sample",
    "sample_positions",
]

STATUS_ORDER = ["Fully Recovered", "Partially Recovered", "Written Off"]
OPEN_LABEL = "Open (no outcome)"
# Okabe-Ito colour-blind-safe shades: bluish green, orange (amber), vermillion (red), grey.
STATUS_PALETTE = {
    "Fully Recovered": "#009E73",
    "Partially Recovered": "#E69F00",
    "Written Off": "#D55E00",
    OPEN_LABEL: "#999999",
}
# Colours for unexpected status values (typos, new outcomes): shown, never dropped.
_EXTRA_STATUS_COLOURS = ["#56B4E9", "#CC79A7", "#0072B2", "#F0E442"]

SAMPLE_LIMIT = 20_000
SAMPLE_SEED = 20_240_601

PAYMENT_HISTORY_ORDER = ["On-Time", "Delayed", "Missed"]
NOT_RECORDED = "Not recorded"
UNASSIGNED_SEGMENT = "Unassigned"

SINGLE_FIGSIZE = (8, 6)
DOUBLE_FIGSIZE = (12, 5)

_RC = {
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 9,
    "legend.title_fontsize": 9,
    "figure.titlesize": 14,
    "figure.titleweight": "bold",
}

MONEY = "(currency units)"


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


class PlotSample(NamedTuple):
    """A frame to draw points from, with how many rows it holds out of how many there were."""

    frame: pd.DataFrame
    n_shown: int
    n_total: int

    @property
    def is_sample(self) -> bool:
        return self.n_shown < self.n_total

    @property
    def note(self) -> str:
        """'sample of 20,000 of 10,000,000 borrowers' or 'all 500 borrowers'."""
        if self.is_sample:
            return f"sample of {self.n_shown:,} of {self.n_total:,} borrowers"
        return f"all {self.n_total:,} borrowers"


def sample_positions(
    n_total: int, limit: int = SAMPLE_LIMIT, random_state: int = SAMPLE_SEED
) -> np.ndarray:
    """The sorted positions of the rows to draw points from: every row up to ``limit`` rows,
    else ``limit`` positions drawn at random with a fixed seed. Positions count over the whole
    table, so the rows are the same whether it is whole or in partitions."""
    if n_total <= limit:
        return np.arange(n_total)
    rng = np.random.default_rng(random_state)
    return np.sort(rng.choice(n_total, size=limit, replace=False))


def plot_sample(
    frame: pd.DataFrame, limit: int = SAMPLE_LIMIT, random_state: int = SAMPLE_SEED
) -> PlotSample:
    """Return ``frame`` itself when it has at most ``limit`` rows, else a reproducible random
    sample of ``limit`` rows (``sample_positions``; original row order kept), with the sizes."""
    n_total = len(frame)
    if n_total <= limit:
        return PlotSample(frame, n_total, n_total)
    positions = sample_positions(n_total, limit, random_state)
    return PlotSample(frame.iloc[positions], limit, n_total)


def _styled(func: Callable[..., Figure]) -> Callable[..., Figure]:
    """Draw inside a fixed style (no global rcParams change) and never leak a half-made
    figure when drawing fails."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        before = set(plt.get_fignums())
        with sns.axes_style("whitegrid"), plt.rc_context(_RC):
            try:
                return func(*args, **kwargs)
            except BaseException:
                for num in set(plt.get_fignums()) - before:
                    plt.close(num)
                raise

    return wrapper


def _compact(value: float, _pos: object = None, digits: int = 3) -> str:
    """Round to ``digits`` significant figures and abbreviate: 1_500_000 -> '1.5M',
    239_792 -> '240k' (digits=3) or 8_841 -> '8.8k' (digits=2); 12 -> '12'."""
    if not np.isfinite(value) or value == 0:
        return f"{value:g}"
    rounded = float(f"{value:.{digits}g}")
    for threshold, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k"), (1.0, "")):
        if abs(rounded) >= threshold:
            return f"{rounded / threshold:.3f}".rstrip("0").rstrip(".") + suffix
    return f"{rounded:.6f}".rstrip("0").rstrip(".")


_MONEY_FORMAT = FuncFormatter(_compact)


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


def _status_palette(levels: list[str]) -> dict[str, str]:
    extras = iter(_EXTRA_STATUS_COLOURS * (len(levels) // len(_EXTRA_STATUS_COLOURS) + 1))
    return {level: STATUS_PALETTE.get(level) or next(extras) for level in levels}


def _status_legend(ax, **kwargs) -> None:
    legend = ax.get_legend()
    handles, labels = ax.get_legend_handles_labels()
    if legend is not None:
        legend.remove()
    ax.legend(handles, labels, title="Recovery status", **kwargs)


def _each(frame: pd.DataFrame, partials: tuple) -> dict:
    """Every summary ``name -> partial(frame, *args)`` of one part."""
    return {name: partial(frame, *args) for name, partial, args in partials}


def _merge_each(merges: dict, parts: list[dict]) -> dict:
    return {name: merge([part[name] for part in parts]) for name, merge in merges.items()}


def _summarise(frame, wanted: dict[str, tuple]) -> dict:
    """``name -> (partial, merge, args)``: every summary of ``frame`` from one pass over its
    partitions (``partitions.summarise``)."""
    partials = tuple((name, partial, args) for name, (partial, _, args) in wanted.items())
    merges = {name: merge for name, (_, merge, _) in wanted.items()}
    return summarise(_each, functools.partial(_merge_each, merges), frame, partials)


def _rows_sample(frame, n_total: int, columns: list[str]) -> pd.DataFrame:
    """``columns`` of the sample rows (``sample_positions``), as one small pandas frame."""
    return take_positions(frame[columns], sample_positions(n_total)).reset_index(drop=True)


# --------------------------------------------------------------------------------------------
# 1. Loan amount distribution
# --------------------------------------------------------------------------------------------

HEX_GRIDSIZE = 45


def amount_extents(loans: pd.DataFrame) -> dict:
    """First pass of the loan-amount chart: the extent of the finite loan amounts, and of the
    complete (income, amount) pairs, with the pairs' moments for their Pearson correlation."""
    amounts = finite(loans["Loan_Amount"])
    income = finite(loans["Monthly_Income"])
    pairs = np.isfinite(amounts) & np.isfinite(income)
    return {
        "amounts": extent(amounts),
        "income": extent(income[pairs]),
        "pair_amounts": extent(amounts[pairs]),
        "moments": co_moments(loans, ["Monthly_Income", "Loan_Amount"]),
    }


def merge_amount_extents(parts: list[dict]) -> dict:
    merges = dict.fromkeys(["amounts", "income", "pair_amounts"], merge_extents)
    return _merge_each(merges | {"moments": merge_co_moments}, parts)


class AmountBins(NamedTuple):
    """The second pass of the loan-amount chart: ``bins`` equal histogram bins over ``range``;
    beyond SAMPLE_LIMIT complete pairs, the pairs counted per hexagon of the grid of
    ``hexagons`` (matplotlib's hexbin extent), else the pairs themselves (few) collected."""

    bins: int
    range: tuple[float, float]
    hexagons: tuple[float, float, float, float] | None


def _amount_bins_plan(extents: dict, kde_values: np.ndarray) -> AmountBins:
    # as many bins as numpy's 'auto' rule gives the sample, within [10, 50]
    n_bins = int(np.clip(len(np.histogram_bin_edges(kde_values, bins="auto")) - 1, 10, 50))
    amounts: Extent = extents["amounts"]
    value_range = (amounts.lo, amounts.hi) if amounts.n else (0.0, 1.0)  # numpy's for no value
    hexagons = None
    if extents["moments"].n[0, 1] > SAMPLE_LIMIT:
        hexagons = _hexagon_extent(extents["income"], extents["pair_amounts"])
    return AmountBins(n_bins, value_range, hexagons)


def amount_bins(loans: pd.DataFrame, plan: AmountBins) -> dict:
    """Histogram counts of the finite loan amounts on the plan's edges, and the complete
    (income, amount) pairs counted per hexagon, or listed (in row order) when they are few."""
    amounts = finite(loans["Loan_Amount"])
    histogram = np.histogram(amounts[np.isfinite(amounts)], bins=plan.bins, range=plan.range)[0]
    income = finite(loans["Monthly_Income"])
    pairs = np.isfinite(amounts) & np.isfinite(income)
    if plan.hexagons is not None:
        return {
            "histogram": histogram,
            "hexagons": hexagon_counts(income[pairs], amounts[pairs], plan.hexagons),
        }
    return {"histogram": histogram, "pairs": np.column_stack([income[pairs], amounts[pairs]])}


def merge_amount_bins(parts: list[dict]) -> dict:
    merged = {"histogram": add_elementwise([p["histogram"] for p in parts])}
    if "hexagons" in parts[0]:
        merged["hexagons"] = add_elementwise([p["hexagons"] for p in parts])
    else:
        merged["pairs"] = np.concatenate([p["pairs"] for p in parts])
    return merged


def _hexagon_extent(x: Extent, y: Extent) -> tuple[float, float, float, float]:
    """The extent ``Axes.hexbin`` gives points of these extents: their range, widened when
    singular (matplotlib's own rule)."""
    nonsingular = getattr(mtransforms, "_nonsingular", None) or mtransforms.nonsingular
    xmin, xmax = nonsingular(*((x.lo, x.hi) if x.n else (0, 1)), expander=0.1)
    ymin, ymax = nonsingular(*((y.lo, y.hi) if y.n else (0, 1)), expander=0.1)
    return (float(xmin), float(xmax), float(ymin), float(ymax))


def _hexagon_grid(hex_extent: tuple[float, float, float, float]):
    """``Axes.hexbin``'s grid for ``gridsize=HEX_GRIDSIZE``: columns, rows, origin and steps."""
    nx = HEX_GRIDSIZE
    ny = int(nx / math.sqrt(3))
    xmin, xmax, ymin, ymax = hex_extent
    padding = 1.0e-9 * (xmax - xmin)
    xmin -= padding
    xmax += padding
    return nx, ny, xmin, ymin, (xmax - xmin) / nx, (ymax - ymin) / ny


def hexagon_counts(
    x: np.ndarray, y: np.ndarray, hex_extent: tuple[float, float, float, float]
) -> np.ndarray:
    """Points per hexagon, in the order of the cells ``Axes.hexbin(x, y, gridsize=HEX_GRIDSIZE,
    extent=hex_extent)`` draws (matplotlib's arithmetic, step for step), so counts of
    partitions add up to the counts of the whole."""
    nx, ny, xmin, ymin, sx, sy = _hexagon_grid(hex_extent)
    nx1, ny1 = nx + 1, ny + 1
    ix = (x - xmin) / sx
    iy = (y - ymin) / sy
    ix1 = np.round(ix).astype(int)
    iy1 = np.round(iy).astype(int)
    ix2 = np.floor(ix).astype(int)
    iy2 = np.floor(iy).astype(int)
    i1 = np.where((0 <= ix1) & (ix1 < nx1) & (0 <= iy1) & (iy1 < ny1), ix1 * ny1 + iy1 + 1, 0)
    i2 = np.where((0 <= ix2) & (ix2 < nx) & (0 <= iy2) & (iy2 < ny), ix2 * ny + iy2 + 1, 0)
    nearer_first = (ix - ix1) ** 2 + 3.0 * (iy - iy1) ** 2 < (ix - ix2 - 0.5) ** 2 + 3.0 * (
        iy - iy2 - 0.5
    ) ** 2
    first = np.bincount(i1[nearer_first], minlength=1 + nx1 * ny1)[1:]
    second = np.bincount(i2[~nearer_first], minlength=1 + nx * ny)[1:]
    return np.concatenate([first, second])


def _hexagon_centres(hex_extent: tuple[float, float, float, float]) -> np.ndarray:
    """The centre of every cell of ``hexagon_counts``, as ``Axes.hexbin`` places them."""
    nx, ny, xmin, ymin, sx, sy = _hexagon_grid(hex_extent)
    nx1, ny1 = nx + 1, ny + 1
    centres = np.zeros((nx1 * ny1 + nx * ny, 2))
    centres[: nx1 * ny1, 0] = np.repeat(np.arange(nx1), ny1)
    centres[: nx1 * ny1, 1] = np.tile(np.arange(ny1), nx1)
    centres[nx1 * ny1 :, 0] = np.repeat(np.arange(nx) + 0.5, ny)
    centres[nx1 * ny1 :, 1] = np.tile(np.arange(ny), nx) + 0.5
    centres[:, 0] *= sx
    centres[:, 1] *= sy
    centres[:, 0] += xmin
    centres[:, 1] += ymin
    return centres


@_styled
def _draw_loan_amount_distribution(
    extents: dict, plan: AmountBins, binned: dict, kde: PlotSample
) -> Figure:
    kde_values = kde.frame["Loan_Amount"].to_numpy()
    n_amounts = extents["amounts"].n

    fig, (ax_hist, ax_xy) = plt.subplots(1, 2, figsize=DOUBLE_FIGSIZE, layout="constrained")
    fig.suptitle("How large are the loans, and do they scale with income?")

    # Histogram on every row, binned per partition on fixed edges, drawn by seaborn from the
    # bin counts (weights); stat="density" makes the bars integrate to 1.
    counts = binned["histogram"]
    edges = np.histogram_bin_edges(np.empty(0), bins=plan.bins, range=plan.range)
    centres = (edges[:-1] + edges[1:]) / 2
    sns.histplot(
        data=pd.DataFrame({"Loan_Amount": centres, "loans": counts}),
        x="Loan_Amount",
        weights="loans",
        bins=edges.tolist(),  # a list: seaborn compares `bins == "auto"`
        stat="density",
        color="#0072B2",
        alpha=0.45,
        edgecolor="white",
        label=f"Histogram (all {n_amounts:,} loans)",
        ax=ax_hist,
    )

    kde_note = ""
    if len(np.unique(kde_values)) >= 2:
        density = gaussian_kde(kde_values)
        bandwidth = float(np.sqrt(density.covariance[0, 0]))
        low = kde_values.min() - 3 * bandwidth
        if kde_values.min() >= 0:  # loan amounts cannot be negative
            low = max(low, 0.0)
        grid = np.linspace(low, kde_values.max() + 3 * bandwidth, 512)
        ax_hist.plot(grid, density(grid), color="#0B3C5D", lw=2, label="Kernel density estimate")
        if kde.is_sample:
            kde_note = f"\ndensity curve from a {kde.note.replace('borrowers', 'loans')}"
    else:
        kde_note = "\n(too few distinct amounts for a density curve)"

    ax_hist.set_title(f"Distribution of loan amounts{kde_note}")
    ax_hist.set_xlabel(f"Loan amount {MONEY}")
    ax_hist.set_ylabel("Density (share of loans per currency unit)")
    ax_hist.xaxis.set_major_formatter(_MONEY_FORMAT)
    ax_hist.set_ylim(0, ax_hist.get_ylim()[1] * 1.25)  # headroom for the legend
    ax_hist.legend(loc="upper center", ncols=2)

    moments: CoMoments = extents["moments"]
    n_pairs = int(moments.n[0, 1])
    r = float(pearson(moments).iloc[0, 1])
    if plan.hexagons is None:
        x, y = binned["pairs"][:, 0], binned["pairs"][:, 1]
        sns.scatterplot(
            x=x, y=y, s=18, alpha=0.6, color="#0072B2", linewidth=0, label="Loan", ax=ax_xy
        )
        if n_pairs >= 2 and np.ptp(x) > 0:
            slope, intercept = np.polyfit(x, y, 1)
            line_x = np.array([x.min(), x.max()])
            ax_xy.plot(
                line_x,
                intercept + slope * line_x,
                color="#D55E00",
                lw=2,
                label="Least-squares line",
            )
        ax_xy.set_ylim(top=ax_xy.get_ylim()[1] + 0.18 * np.ptp(ax_xy.get_ylim()))
        ax_xy.legend(loc="upper center", ncols=2)
        shown = f"all {n_pairs:,} loans"
    else:
        # every pair, counted per hexagon on the workers: drawn as one point per hexagon
        # weighted by its count, the picture hexbin makes of the points themselves
        cells = binned["hexagons"]
        used = cells > 0
        centres_xy = _hexagon_centres(plan.hexagons)[used]
        hexes = ax_xy.hexbin(
            centres_xy[:, 0],
            centres_xy[:, 1],
            C=cells[used],
            reduce_C_function=np.sum,
            gridsize=HEX_GRIDSIZE,
            extent=plan.hexagons,
            bins="log",
            mincnt=1,
            cmap="viridis",
        )
        colorbar = fig.colorbar(hexes, ax=ax_xy, label="Loans per hexagon (log scale)")
        colorbar.ax.yaxis.set_major_formatter(LogFormatter())
        colorbar.ax.yaxis.set_minor_formatter(LogFormatter(minor_thresholds=(1, 0.4)))
        shown = f"hexbin of all {n_pairs:,} loans"
    r_text = f"{round(r, 2) + 0.0:.2f}"  # no '-0.00'
    ax_xy.set_title(f"Loan amount vs monthly income\nPearson r = {r_text} ({shown})")
    ax_xy.set_xlabel(f"Monthly income {MONEY}")
    ax_xy.set_ylabel(f"Loan amount {MONEY}")
    ax_xy.xaxis.set_major_formatter(_MONEY_FORMAT)
    ax_xy.yaxis.set_major_formatter(_MONEY_FORMAT)
    return fig


def _kde_sample(sample: pd.DataFrame, extents: dict) -> PlotSample:
    """The finite loan amounts of the sample rows, out of every finite amount."""
    values = finite(sample["Loan_Amount"])
    values = values[np.isfinite(values)]
    return PlotSample(pd.DataFrame({"Loan_Amount": values}), len(values), extents["amounts"].n)


# --------------------------------------------------------------------------------------------
# 2. Recovery outcome by payment history
# --------------------------------------------------------------------------------------------


def outcome_counts(loans: pd.DataFrame) -> dict[tuple[str], int]:
    """Loans per recovery outcome (missing: OPEN_LABEL)."""
    return label_counts(loans, {"Recovery_Status": OPEN_LABEL})


def history_outcome_counts(loans: pd.DataFrame) -> dict[tuple[str, str], int]:
    """Loans per (payment history, recovery outcome); missing ones labelled NOT_RECORDED and
    OPEN_LABEL."""
    return label_counts(loans, {"Payment_History": NOT_RECORDED, "Recovery_Status": OPEN_LABEL})


@_styled
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
        palette=_status_palette(levels),
        saturation=1.0,  # keep the exact STATUS_PALETTE colours
        ax=ax,
    )
    for container in ax.containers:
        ax.bar_label(container, labels=[_compact(v) for v in container.datavalues], fontsize=8)
    ax.set_xticks(range(len(hist_levels)))
    ax.set_xticklabels([f"{h}\n(n = {int(totals.get(h, 0)):,})" for h in hist_levels])
    ax.set_title(
        "Loans counted per outcome within each payment-history class "
        f"(all {sum(cells.values()):,} loans)"
    )
    ax.set_xlabel("Payment history")
    ax.set_ylabel("Loans (count)")
    ax.yaxis.set_major_formatter(_MONEY_FORMAT)
    ax.margins(y=0.1)
    _status_legend(ax, loc="upper right")
    return fig


# --------------------------------------------------------------------------------------------
# 3. Recovery outcome mix by number of missed payments
# --------------------------------------------------------------------------------------------


def missed_outcome_counts(loans: pd.DataFrame) -> dict[tuple[float | None, str], int]:
    """Loans per (number of missed payments, recovery outcome label), the number as a float,
    None for a missing one; counted with one ``np.bincount`` over integer codes."""
    codes, labels = label_codes(loans["Recovery_Status"], OPEN_LABEL)
    missed = loans["Num_Missed_Payments"]
    known = missed.notna().to_numpy()
    row_codes, values = pd.factorize(missed[known], sort=True)
    width = len(labels)
    cells = np.bincount(
        row_codes.astype(np.intp) * width + codes[known], minlength=len(values) * width
    )
    counts: dict[tuple[float | None, str], int] = {
        (float(values[cell // width]), labels[cell % width]): int(cells[cell])
        for cell in np.flatnonzero(cells)
    }
    unrecorded = np.bincount(codes[~known], minlength=width)
    counts |= {(None, labels[j]): int(unrecorded[j]) for j in np.flatnonzero(unrecorded)}
    return counts


def missed_outcome_table(cells: dict, levels: list[str]) -> pd.DataFrame:
    """Loans per number of missed payments (rows, sorted; loans without a count left out) and
    outcome (columns, ``levels``): the table

        DataFrame({"missed": missed, "status": status}).dropna(subset=["missed"])
        .groupby(["missed", "status"], observed=True).size().unstack("status", fill_value=0)
        .reindex(columns=levels, fill_value=0).sort_index()

    from ``missed_outcome_counts`` (the counts as floats)."""
    missed = sorted({m for m, _ in cells if m is not None})
    row = {m: i for i, m in enumerate(missed)}
    column = {level: j for j, level in enumerate(levels)}
    table = np.zeros((len(missed), len(levels)), dtype=np.int64)
    for (m, status), n in cells.items():
        if m is not None:
            table[row[m], column[status]] += n
    return pd.DataFrame(
        table,
        index=pd.Index(missed, dtype=float, name="missed"),
        columns=pd.Index(levels, name="status"),
    )


@_styled
def _draw_missed_payments_recovery(cells: dict) -> Figure:
    levels = _levels({status for _, status in cells}, STATUS_ORDER, OPEN_LABEL)
    palette = _status_palette(levels)
    n_unrecorded = sum(n for (m, _), n in cells.items() if m is None)

    counts = missed_outcome_table(cells, levels)
    totals = counts.sum(axis=1)
    shares = counts.div(totals, axis=0)
    labels = [_compact(v) if float(v).is_integer() else f"{v:g}" for v in counts.index]
    positions = np.arange(len(counts))

    fig, ax = plt.subplots(figsize=(9, 6), layout="constrained")
    fig.suptitle("Recovery outcome mix by number of missed payments")
    bottom = np.zeros(len(counts))
    for level in levels:
        ax.bar(
            positions,
            shares[level].to_numpy(),
            bottom=bottom,
            width=0.8,
            color=palette[level],
            edgecolor="white",
            linewidth=0.5,
            label=level,
        )
        bottom += shares[level].to_numpy()
    crowded = len(counts) > 14
    for pos, total in zip(positions, totals, strict=True):
        ax.text(
            pos,
            1.01,
            f"n={total:,}" if total < 1_000 else f"n={_compact(total, digits=2)}",
            ha="center",
            va="bottom",
            fontsize=7 if crowded else 8,
            rotation=90 if crowded else 0,
        )

    subtitle = (
        "Share of loans per outcome; n = loans with that many missed payments "
        f"(all {sum(cells.values()):,} loans)"
    )
    if n_unrecorded:
        subtitle += f"\n{n_unrecorded:,} loans without a missed-payment count are not shown"
    ax.set_title(subtitle, pad=14)
    ax.set_xticks(positions)
    ax.set_xticklabels(labels, rotation=90 if len(labels) > 25 else 0)
    ax.set_xlim(-0.6, len(counts) - 0.4)
    ax.set_ylim(0, 1.12 if crowded else 1.06)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_xlabel("Missed payments (count of instalments)")
    ax.set_ylabel("Share of loans (%)")
    ax.grid(axis="x", visible=False)
    ax.legend(title="Recovery status", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


# --------------------------------------------------------------------------------------------
# 4. Income vs loan amount by recovery outcome
# --------------------------------------------------------------------------------------------


@_styled
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
    sns.scatterplot(
        data=points,
        x="Monthly_Income",
        y="Loan_Amount",
        hue="Recovery_Status",
        hue_order=levels,
        palette=_status_palette(levels),
        s=22 if shown.n_shown <= 2_000 else 8,
        alpha=0.75 if shown.n_shown <= 2_000 else 0.4,
        linewidth=0,
        ax=ax,
    )
    ax.set_title(shown.note[0].upper() + shown.note[1:])
    ax.set_xlabel(f"Monthly income {MONEY}")
    ax.set_ylabel(f"Loan amount {MONEY}")
    ax.xaxis.set_major_formatter(_MONEY_FORMAT)
    ax.yaxis.set_major_formatter(_MONEY_FORMAT)
    _status_legend(ax, loc="upper left", bbox_to_anchor=(1.01, 1.0), markerscale=1.5)
    for handle in ax.get_legend().legend_handles:
        handle.set_alpha(1.0)
    return fig


def _segment_palette(names: list[str]) -> dict[str, object]:
    base = [c for i, c in enumerate(sns.color_palette("colorblind", 10)) if i != 7]  # no grey
    named = [n for n in names if n != UNASSIGNED_SEGMENT]
    colours = base if len(named) <= len(base) else sns.color_palette("husl", len(named))
    palette: dict[str, object] = dict(zip(named, colours, strict=False))
    if UNASSIGNED_SEGMENT in names:
        palette[UNASSIGNED_SEGMENT] = "#999999"
    return palette


def _segment_per_loan(loan_ids: pd.Series, segment_ids: pd.Series, names: pd.Series) -> pd.Series:
    """Left join of loans to segments on Borrower_ID, returning each loan's segment name
    ('Unassigned' when the borrower has none). The same result as a many-to-one
    DataFrame.merge, done as a hash lookup (3x faster at 10M rows), with a fast path when
    segments lists the same borrowers in the same order as loans (how the pipeline builds
    it): then only an element-wise comparison is needed, and the uniqueness of Borrower_ID
    is the schemas' guarantee rather than re-checked here."""
    from loan_pipeline.core.joins import same_ids

    if not isinstance(loan_ids.dtype, pd.CategoricalDtype) and same_ids(loan_ids, segment_ids):
        positions = np.arange(len(loan_ids))  # compared as Arrow strings: no Python objects
    else:
        loan_values = np.asarray(loan_ids, dtype=object)
        segment_values = np.asarray(segment_ids, dtype=object)
        index = pd.Index(segment_values)
        if not index.is_unique:
            duplicated = index[index.duplicated()].unique()[:5].tolist()
            raise ValueError(f"segments has more than one row for Borrower_ID(s) {duplicated}")
        if isinstance(loan_ids.dtype, pd.CategoricalDtype):
            per_category = index.get_indexer(loan_ids.cat.categories)
            codes = loan_ids.cat.codes.to_numpy()
            positions = np.where(codes >= 0, per_category[codes], -1)
        else:
            positions = index.get_indexer(loan_values)
    labels = pd.Categorical(names).add_categories([UNASSIGNED_SEGMENT])
    # One extra trailing entry so that position -1 (borrower not found) maps to Unassigned.
    label_codes = np.append(labels.codes, labels.categories.get_loc(UNASSIGNED_SEGMENT))
    segment = pd.Categorical.from_codes(label_codes[positions], categories=labels.categories)
    return pd.Series(segment, index=loan_ids.index, name="segment_name")


def _segment_names(segments: pd.DataFrame) -> pd.Series:
    names = segments["segment_name"]
    return names if pd.api.types.is_string_dtype(names) else names.astype(str)


def segment_rows(loans: pd.DataFrame, segments: pd.DataFrame) -> pd.DataFrame:
    """Each loan's income, amount and segment name ('Unassigned' when its borrower has none),
    from the loans and the segments (whole tables, or aligned partitions of them)."""
    segment = _segment_per_loan(
        loans["Borrower_ID"], segments["Borrower_ID"], _segment_names(segments)
    )
    return pd.DataFrame(
        {
            "Monthly_Income": loans["Monthly_Income"].to_numpy(),
            "Loan_Amount": loans["Loan_Amount"].to_numpy(),
            "segment_name": segment.array,
        }
    )


def segment_sizes(rows: pd.DataFrame) -> dict[str, int]:
    """Loans per segment name (``segment_rows``), only the names that occur."""
    sizes = rows["segment_name"].value_counts(sort=False)
    return {str(name): int(n) for name, n in sizes.items() if n > 0}


def segment_labels(segments: pd.DataFrame) -> pd.DataFrame:
    """The distinct (segment_id, segment_name) pairs."""
    return pd.DataFrame(
        {
            "segment_id": segments["segment_id"].to_numpy(),
            "segment_name": _segment_names(segments).array,
        }
    ).drop_duplicates()


def segment_order(parts: list[pd.DataFrame]) -> list[str]:
    """Segment names by segment id (then name), each once."""
    return (
        pd.concat(parts, ignore_index=True)
        .drop_duplicates()
        .sort_values(["segment_id", "segment_name"])["segment_name"]
        .drop_duplicates()
        .tolist()
    )


def _with_verdict(title: str, segmentation: str | None) -> str:
    """A title with the verdict on the segmentation under it, when there is one (so a chart of a
    convenient split never passes for one of groups the data insist on)."""
    if not segmentation:
        return title
    return f"{title}\n{segmentation[0].upper()}{segmentation[1:]}"


@_styled
def _draw_borrower_segments(
    seg_order: list[str], sizes: dict[str, int], sample: pd.DataFrame, segmentation: str | None
) -> Figure:
    order = [s for s in seg_order if s in sizes]
    if UNASSIGNED_SEGMENT in sizes:
        order.append(UNASSIGNED_SEGMENT)
    counts = np.array([sizes[s] for s in order], dtype=np.int64)
    n_loans = int(counts.sum())
    palette = _segment_palette(order)
    points = sample.assign(
        segment_name=_as_levels(sample["segment_name"], order, UNASSIGNED_SEGMENT)
    )
    shown = PlotSample(points, len(points), n_loans)

    fig, (ax_xy, ax_size) = plt.subplots(
        1, 2, figsize=DOUBLE_FIGSIZE, layout="constrained", width_ratios=[1.5, 1]
    )
    fig.suptitle(_with_verdict("Borrower segments", segmentation))
    sns.scatterplot(
        data=points,
        x="Monthly_Income",
        y="Loan_Amount",
        hue="segment_name",
        hue_order=order,
        palette=palette,
        s=20 if shown.n_shown <= 2_000 else 8,
        alpha=0.75 if shown.n_shown <= 2_000 else 0.4,
        linewidth=0,
        ax=ax_xy,
    )
    ax_xy.set_title(f"Segments in the income / loan-amount plane\n{shown.note}")
    ax_xy.set_xlabel(f"Monthly income {MONEY}")
    ax_xy.set_ylabel(f"Loan amount {MONEY}")
    ax_xy.xaxis.set_major_formatter(_MONEY_FORMAT)
    ax_xy.yaxis.set_major_formatter(_MONEY_FORMAT)
    handles, labels = ax_xy.get_legend_handles_labels()
    ax_xy.get_legend().remove()
    legend = ax_xy.legend(
        handles,
        labels,
        title="Segment",
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        markerscale=1.5,
    )
    for handle in legend.legend_handles:
        handle.set_alpha(1.0)

    positions = np.arange(len(order))
    ax_size.barh(positions, counts, color=[palette[s] for s in order])
    ax_size.set_yticks(positions)
    ax_size.set_yticklabels(order)
    ax_size.invert_yaxis()
    ax_size.bar_label(
        ax_size.containers[0],
        labels=[f"{int(v):,} ({v / n_loans:.0%})" for v in counts],
        padding=3,
        fontsize=8,
    )
    ax_size.margins(x=0.25)
    ax_size.xaxis.set_major_formatter(_MONEY_FORMAT)
    ax_size.set_title(f"Segment sizes (all {n_loans:,} borrowers)")
    ax_size.set_xlabel("Borrowers (count)")
    ax_size.set_ylabel("Segment")
    ax_size.grid(axis="y", visible=False)
    return fig


def _segments_figure(loans, segments, segmentation: str | None = None) -> Figure:
    """Segment sizes over every loan (each partition of the loans joined to its own partition
    of the segments), the names in segment-id order, and the sample rows; ``segmentation``: the
    verdict line for the title (``KSelection.summary``)."""
    rows = per_partition(
        segment_rows,
        loans[["Borrower_ID", "Monthly_Income", "Loan_Amount"]],
        segments[["Borrower_ID", "segment_id", "segment_name"]],
    )
    sizes = summarise(segment_sizes, add_counts, rows)
    seg_order = summarise(segment_labels, segment_order, segments[["segment_id", "segment_name"]])
    sample = take_positions(rows, sample_positions(sum(sizes.values())))
    return _draw_borrower_segments(seg_order, sizes, sample.reset_index(drop=True), segmentation)


# --------------------------------------------------------------------------------------------
# 6. Correlation heatmap
# --------------------------------------------------------------------------------------------


def _numeric_columns(loans: pd.DataFrame) -> list[str]:
    """Every int/float column except identifiers (text columns are not numeric anyway)."""
    # select_dtypes on the empty head: the same dtype rules without copying every row.
    return [
        c
        for c in loans.iloc[:0].select_dtypes("number").columns
        if not str(c).lower().endswith("_id") and str(c).lower() != "id"
    ]


def numeric_moments(loans: pd.DataFrame) -> CoMoments:
    """The moments of every numeric column (``_numeric_columns``), pairwise complete."""
    return co_moments(loans, _numeric_columns(loans))


@_styled
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
            cmap="vlag",
            center=0,
            vmin=-1,
            vmax=1,
            square=True,
            linewidths=0.5,
            linecolor="white",
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


@_styled
def k_selection(selection) -> Figure:
    """The evidence behind k (a ``segmentation.KSelection``): per candidate k, its prediction
    strength against the stability threshold, and, at the stable k, the gap statistic's gain
    over k-1 against the gain's standard error. The title says the verdict."""
    table = selection.table
    chosen = selection.chosen
    ks = table["k"].to_numpy()
    used = table["k"] == chosen
    fig, (ax_ps, ax_gain) = plt.subplots(1, 2, figsize=DOUBLE_FIGSIZE, layout="constrained")

    ax_ps.plot(ks, table["prediction_strength"], marker="o", color="#0072B2", label="mean")
    ax_ps.fill_between(
        ks,
        table["prediction_strength_min"],
        table["prediction_strength"],
        color="#0072B2",
        alpha=0.15,
        label="min to mean",
    )
    ax_ps.axhline(
        selection.stability_threshold,
        color="#555555",
        linestyle="--",
        linewidth=1,
        label=f"stable from {selection.stability_threshold:g}",
    )
    ax_ps.scatter(
        ks[used],
        table.loc[used, "prediction_strength"],
        s=140,
        facecolors="none",
        edgecolors="#D55E00",
        linewidths=2,
        zorder=5,
        label=f"k = {chosen} (used)",
    )
    ax_ps.set_ylim(0, 1.05)
    ax_ps.set_title("Reproducible? Prediction strength on halves of the book")
    ax_ps.set_ylabel("Prediction strength (share of pairs kept together)")

    computed = table[table["gap_gain"].notna()]
    ax_gain.bar(
        computed["k"],
        computed["gap_gain"],
        color=np.where(computed["k"] == chosen, "#D55E00", "#0072B2"),
        alpha=0.7,
        label="gain: gap(k) - gap(k-1)",
    )
    ax_gain.scatter(
        computed["k"],
        computed["gap_sd"],
        marker="_",
        s=400,
        linewidths=2,
        color="#000000",
        zorder=5,
        label="gain needed (standard error)",
    )
    ax_gain.axhline(0, color="#555555", linewidth=0.8)
    if computed.empty:
        ax_gain.text(
            0.5,
            0.5,
            "no stable k: nothing to test",
            transform=ax_gain.transAxes,
            ha="center",
            va="center",
            color="#555555",
        )
    ax_gain.set_title("Beyond a structureless book? Gap statistic, at the stable k")
    ax_gain.set_ylabel("Gain in gap over k-1 (log W)")
    for ax in (ax_ps, ax_gain):
        ax.set_xlabel("Number of segments k")
        ax.set_xticks(ks)
        ax.set_xlim(ks.min() - 0.5, ks.max() + 0.5)
        ax.legend(loc="best", fontsize=8)
    fig.suptitle(
        _with_verdict("Choosing the number of segments", selection.summary),
        fontweight="bold",
        color="#000000" if selection.supported else "#D55E00",
    )
    return fig


@_styled
def capacity_gains(table: pd.DataFrame) -> Figure:
    """The capacity gain curve (``core.gains``): for a worklist of each size, the share of the
    bad balance it would have caught, ranked by expected loss (solid) and by the score alone
    (dashed), against a random order (the diagonal); left the not fully recovered balance,
    right the written-off balance; the current policy's worklist sizes marked."""
    fig, axes = plt.subplots(1, 2, figsize=DOUBLE_FIGSIZE, layout="tight")
    curves = table[table["mark"].isna()]
    marks = table[table["mark"].notna()]
    share = curves["capacity_share"].to_numpy()
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
    for ax, (title, (loss, loss_label), (score, score_label)) in zip(axes, panels, strict=True):
        ax.plot([0, 1], [0, 1], linestyle=":", color="#999999", label="random order")
        ax.plot(share, curves[loss].to_numpy(), color="#D55E00", label=loss_label)
        ax.plot(share, curves[score].to_numpy(), color="#0072B2", linestyle="--", label=score_label)
        for row in marks.itertuples():
            # the line names the worklist size; a dot on each curve gives what it catches
            ax.axvline(row.capacity_share, color="#555555", linewidth=0.8)
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
                (loss, "#D55E00", (-4, 4, "right")),
                (score, "#0072B2", (4, -11, "left")),
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
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.xaxis.set_major_formatter(PercentFormatter(1.0))
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
        ax.set_xlabel("Worklist size (share of the book, largest first)")
        ax.set_ylabel(f"{title} caught (share)")
        ax.set_title(f"{title}, held-out resolved loans")
        ax.legend(loc="lower right", title="ranked by")
    fig.suptitle("How much bad balance does a worklist of each size catch?", fontweight="bold")
    return fig


# Scores are binned on [0, 1] into this many bins (a power of two: the bin of a score is exact)
# to find the deciles; the rows of the few bins a decile boundary falls in are fetched to place
# them exactly, unless there are more than BOUNDARY_ROW_LIMIT of them (heavily tied scores in a
# very large book): then those bins are split between the deciles in proportion.
SCORE_BINS = 2**14
BOUNDARY_ROW_LIMIT = 200_000
SCORE_HISTOGRAM_BINS = 20


class ScoreBins(NamedTuple):
    """The held-out scores (with an observed outcome) binned: how many rows, and per fine bin
    of the finite scores their number, score sum and outcome sum; and the 20-bin histogram of
    the scores on [0, 1]."""

    held_out: int
    counts: np.ndarray
    score_sums: np.ndarray
    observed_sums: np.ndarray
    histogram: np.ndarray


def _held_out_scores(scores: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, int]:
    """The finite scores of the held-out rows with an outcome, their outcomes, and how many
    such rows there are (finite score or not)."""
    held = (scores["score_source"].isin(HELD_OUT_SOURCES) & scores["observed"].notna()).to_numpy(
        dtype=bool
    )
    score = finite(scores["risk_score"])[held]
    observed = finite(scores["observed"])[held]
    scored = np.isfinite(score)
    return score[scored], observed[scored], int(held.sum())


def _score_bin(score: np.ndarray) -> np.ndarray:
    return np.clip(np.floor(score * SCORE_BINS), 0, SCORE_BINS - 1).astype(np.intp)


def score_bins(scores: pd.DataFrame) -> ScoreBins:
    score, observed, held_out = _held_out_scores(scores)
    where = _score_bin(score)
    return ScoreBins(
        held_out,
        np.bincount(where, minlength=SCORE_BINS),
        np.bincount(where, weights=score, minlength=SCORE_BINS),
        np.bincount(where, weights=observed, minlength=SCORE_BINS),
        np.histogram(score, bins=SCORE_HISTOGRAM_BINS, range=(0, 1))[0],
    )


def merge_score_bins(parts: list[ScoreBins]) -> ScoreBins:
    return ScoreBins(
        sum(p.held_out for p in parts),
        *(add_elementwise([p[i] for p in parts]) for i in range(1, len(ScoreBins._fields))),
    )


def score_rows(scores: pd.DataFrame, wanted: np.ndarray) -> np.ndarray:
    """(bin, score, outcome) of the held-out rows whose score falls in the ``wanted`` bins, in
    row order."""
    score, observed, _ = _held_out_scores(scores)
    where = _score_bin(score)
    keep = np.isin(where, wanted)
    return np.column_stack([where[keep], score[keep], observed[keep]])


def decile_ends(m: int, q: int) -> np.ndarray:
    """Where each of the ``q`` groups of ``pd.qcut(ranks, q)`` of ``m`` ranks ends (exclusive,
    0-based in score order): rank r (1-based) is in group k when
    (m - 1) k / q < r - 1 <= (m - 1) (k + 1) / q, rank 1 in the first. Exact integer arithmetic:
    pandas' floating-point quantiles put a rank that falls exactly on a group boundary into
    the next group instead (e.g. 4 ranks in 3 groups: 1, 1, 2 rows, here 2, 1, 1)."""
    return np.array([1 + ((m - 1) * (k + 1)) // q for k in range(q)], dtype=np.int64)


def _split_bins(counts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """The bins a boundary between two deciles falls inside (rows of the bin on both sides)."""
    stop = np.cumsum(counts)
    start = stop - counts
    inner = ends[:-1]
    where = np.searchsorted(stop, inner, side="right")  # the bin holding row `inner`
    return np.unique(where[start[where] < inner])


def decile_means(binned: ScoreBins, q: int, rows: np.ndarray | None) -> pd.DataFrame:
    """Mean score, mean outcome and rows of each decile of the held-out scores by rank (ties in
    order of appearance), from the bins; ``rows``: the rows of the split bins, in row order
    (``score_rows``), or None to split those bins in proportion."""
    counts = binned.counts
    ends = decile_ends(int(counts.sum()), q)
    stop = np.cumsum(counts)
    start = stop - counts
    split = _split_bins(counts, ends)
    whole = np.setdiff1d(np.flatnonzero(counts), split)
    decile = np.searchsorted(ends, start[whole], side="right")
    # as floats: with no whole bin at all (every row in a split bin, e.g. a constant score)
    # numpy's bincount of nothing is integer, and the sums added below are fractions
    n, score, observed = (
        np.bincount(decile, weights=w[whole], minlength=q).astype("float64")
        for w in (counts, binned.score_sums, binned.observed_sums)
    )
    for b in split:
        if rows is None:
            first = np.r_[0, ends[:-1]]
            overlap = np.clip(np.minimum(stop[b], ends) - np.maximum(start[b], first), 0, None)
            share = overlap / counts[b]
            n += overlap
            score += share * binned.score_sums[b]
            observed += share * binned.observed_sums[b]
            continue
        inside = rows[rows[:, 0] == b]
        if len(inside) != counts[b]:
            raise ValueError(f"score bin {b}: {len(inside)} rows fetched, {counts[b]} counted")
        inside = inside[np.argsort(inside[:, 1], kind="stable")]  # ties in row order
        where = np.searchsorted(ends, start[b] + np.arange(len(inside)), side="right")
        n += np.bincount(where, minlength=q)
        score += np.bincount(where, weights=inside[:, 1], minlength=q)
        observed += np.bincount(where, weights=inside[:, 2], minlength=q)
    used = n > 0
    return pd.DataFrame(
        {"predicted": score[used] / n[used], "observed": observed[used] / n[used], "n": n[used]}
    )


def _calibration_figure(scores, bins: int) -> Figure:
    binned = summarise(score_bins, merge_score_bins, scores)
    q = min(bins, binned.held_out)
    deciles = None
    if binned.counts.sum():
        split = _split_bins(binned.counts, decile_ends(int(binned.counts.sum()), q))
        rows = None
        if len(split) and binned.counts[split].sum() <= BOUNDARY_ROW_LIMIT:
            rows = summarise(score_rows, np.concatenate, scores, split)
        deciles = decile_means(binned, q, rows)
    return _draw_calibration(binned, deciles, q)


@_styled
def _draw_calibration(binned: ScoreBins, deciles: pd.DataFrame | None, q: int) -> Figure:
    fig, (ax, hist) = plt.subplots(
        1, 2, figsize=(12, 5), gridspec_kw={"width_ratios": [1.2, 1]}, layout="tight"
    )
    ax.plot([0, 1], [0, 1], linestyle="--", color="#999999", label="perfect calibration")
    if binned.held_out:
        if deciles is not None:
            ax.plot(
                deciles["predicted"].to_numpy(),
                deciles["observed"].to_numpy(),
                marker="o",
                color="#0072B2",
                label=f"held-out scores ({binned.held_out:,} borrowers, {q} bins)",
            )
        edges = np.linspace(0, 1, SCORE_HISTOGRAM_BINS + 1)
        hist.hist(
            edges[:-1],
            bins=edges,
            weights=binned.histogram,
            color="#0072B2",
            alpha=0.8,
            label="held-out scores",
        )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("Mean predicted probability (share)")
    ax.set_ylabel("Observed rate (share)")
    ax.set_title("Calibration: predicted vs observed")
    ax.legend(loc="upper left")
    hist.set_xlabel("Risk score (probability)")
    hist.set_ylabel("Borrowers (count)")
    hist.set_title("Distribution of held-out scores")
    hist.legend(loc="upper right")
    fig.suptitle("Is a 0.7 score a 70% chance?", fontweight="bold")
    return fig


# --------------------------------------------------------------------------------------------
# Drawing the charts of a book, whole or in partitions
# --------------------------------------------------------------------------------------------

# The summaries of the loan book the charts are drawn from (a chart names those it needs:
# ``Chart.summaries``), computed in one pass for every chart drawn:
# name -> (partial, merge, extra arguments).
SUMMARIES: dict[str, tuple] = {
    "amount_extents": (amount_extents, merge_amount_extents, ()),
    "history_outcomes": (history_outcome_counts, add_counts, ()),
    "missed_outcomes": (missed_outcome_counts, add_counts, ()),
    "outcomes": (outcome_counts, add_counts, ()),
    "numeric": (numeric_moments, merge_co_moments, ()),
}


class Drawing(NamedTuple):
    """What a chart's draw function (``Chart.draw``) is given: its inputs by asset name (pandas
    frames, Dask frames in partitions, a model), the merged summaries of the loan book that the
    charts drawn asked for (``SUMMARIES``), and the loan book's sample rows (``Chart.sample``'s
    columns; None when no chart drawn asked for any)."""

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
    wanted: dict[str, tuple] = {"rows": (len, sum, ())}
    for entry in entries:
        wanted |= {name: SUMMARIES[name] for name in entry.summaries}
    book = _summarise(loans, wanted) if len(wanted) > 1 else {}
    columns = list(dict.fromkeys(c for entry in entries for c in entry.sample))
    sample = _rows_sample(loans, book["rows"], columns) if columns else None
    drawing = Drawing(inputs, book, sample)
    for entry in entries:
        yield entry.key, globals()[entry.draw](drawing)


def draw_loan_amount_distribution(drawing: Drawing) -> Figure:
    extents = drawing.book["amount_extents"]
    kde = _kde_sample(drawing.sample, extents)
    plan = _amount_bins_plan(extents, kde.frame["Loan_Amount"].to_numpy())
    binned = summarise(amount_bins, merge_amount_bins, drawing.inputs["validated_loans"], plan)
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


def _one(key: str, **inputs) -> Figure:
    ((_, fig),) = draw([key], inputs)
    return fig


def loan_amount_distribution(loans: pd.DataFrame) -> Figure:
    """Left: density histogram of Loan_Amount (all rows) with a Gaussian kernel density
    estimate (on a sample when large). Right: Loan_Amount against Monthly_Income, scatter up
    to SAMPLE_LIMIT rows, hexbin of every row beyond, with the Pearson correlation."""
    return _one("chart_loan_amount_distribution", validated_loans=loans)


def payment_history_recovery(loans: pd.DataFrame) -> Figure:
    """Grouped bars: number of loans per recovery outcome within each Payment_History class
    (On-Time, Delayed, Missed), counted over every row."""
    return _one("chart_payment_history_recovery", validated_loans=loans)


def missed_payments_recovery(loans: pd.DataFrame) -> Figure:
    """Stacked bars: share of each recovery outcome per number of missed payments, every
    row, with the number of loans noted above each bar."""
    return _one("chart_missed_payments_recovery", validated_loans=loans)


def income_loan_recovery(loans: pd.DataFrame) -> Figure:
    """Scatter of Monthly_Income (x) vs Loan_Amount (y) coloured by recovery outcome, drawn
    from a sample of at most SAMPLE_LIMIT borrowers."""
    return _one("chart_income_loan_recovery", validated_loans=loans)


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
    return _one("chart_correlation_heatmap", validated_loans=loans)


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
