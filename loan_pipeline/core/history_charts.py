"""Charts of the book over time (two consecutive snapshots): the roll-rate matrix, the strategy
back-test.

Each drawn from its table (``roll_rates``: ``core.roll_rates.roll_rate_matrix``;
``strategy_backtest``: ``core.backtest.strategy_backtest``; with the snapshots' names), so the
chart shows exactly what the table holds; with no rows (the first snapshot, or a previous
snapshot without arrears) a figure that says so.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import PercentFormatter  # noqa: E402

from loan_pipeline.core.chart_style import (  # noqa: E402
    EDGE_COLOUR,
    GUIDE_COLOUR,
    SHARE_COLOURMAP,
    SINGLE_FIGSIZE,
    STRATEGY_COLOURS,
    styled,
)
from loan_pipeline.domain import FROM_BUCKETS, TO_BUCKETS  # noqa: E402

__all__ = ["roll_rates_figure", "strategy_backtest_figure"]

NOTHING_TO_COMPARE = (
    "No roll rates yet: this is the first snapshot (or the previous one was recorded without "
    "arrears).\nThe matrix appears once a later snapshot of the same book is loaded."
)
# a cell's text is dark on the colour map's light (high) end, light on its dark end
_LIGHT_CELL = 0.55


@styled
def roll_rates_figure(table: pd.DataFrame) -> Figure:
    """The roll-rate matrix as a heatmap: rows the bucket at t (with their n), columns the
    bucket at t+1, each cell the share of its row's borrowers (colour and %) and their count."""
    if table.empty:
        fig, ax = plt.subplots(figsize=SINGLE_FIGSIZE, layout="constrained")
        ax.axis("off")
        ax.text(
            0.5, 0.5, NOTHING_TO_COMPARE, ha="center", va="center", wrap=True, color=GUIDE_COLOUR
        )
        fig.suptitle("Roll rates between snapshots")
        return fig
    rows = [b for b in FROM_BUCKETS if b in set(table["from_bucket"])]
    share = table.pivot(index="from_bucket", columns="to_bucket", values="share")
    count = table.pivot(index="from_bucket", columns="to_bucket", values="borrowers")
    share = share.reindex(index=rows, columns=TO_BUCKETS)
    count = count.reindex(index=rows, columns=TO_BUCKETS).fillna(0).astype(int)
    n = count.sum(axis=1)
    fig, ax = plt.subplots(figsize=(10, 6.5), layout="constrained")
    image = ax.imshow(
        share.to_numpy(dtype=float), cmap=SHARE_COLOURMAP, vmin=0, vmax=1, aspect="auto"
    )
    for i in range(len(rows)):
        for j in range(len(TO_BUCKETS)):
            value = share.iat[i, j]
            # an empty cell is a dash: the moves that happened stand out from those that did not
            label = "–" if count.iat[i, j] == 0 else f"{value:.0%}\n({count.iat[i, j]:,})"
            ax.text(
                j,
                i,
                label,
                ha="center",
                va="center",
                fontsize=8,
                color="black" if value >= _LIGHT_CELL else "white",
            )
    ax.set_xticks(np.arange(len(TO_BUCKETS)), TO_BUCKETS, rotation=20, ha="right")
    ax.set_yticks(np.arange(len(rows)), [f"{r}  (n={v:,})" for r, v in zip(rows, n, strict=True)])
    ax.set_xticks(np.arange(len(TO_BUCKETS) + 1) - 0.5, minor=True)
    ax.set_yticks(np.arange(len(rows) + 1) - 0.5, minor=True)
    ax.grid(which="minor", color=EDGE_COLOUR, linewidth=1.5)
    ax.grid(which="major", visible=False)
    ax.tick_params(which="minor", length=0)
    previous, current = _snapshots(table)
    ax.set_xlabel(f"Arrears bucket at t+1 (days past due), {current}")
    ax.set_ylabel(f"Arrears bucket at t (days past due), {previous}; n = borrowers")
    bar = fig.colorbar(image, ax=ax, format=PercentFormatter(1.0))
    bar.set_label("Share of the row's borrowers (each row sums to 100%)")
    fig.suptitle(
        f"Roll rates: where each bucket's borrowers were one snapshot later "
        f"({int(n.sum()):,} borrowers)"
    )
    return fig


def _snapshots(table: pd.DataFrame) -> tuple[str, str]:
    if {"previous_snapshot", "snapshot"} <= set(table.columns):
        return str(table["previous_snapshot"].iloc[0]), str(table["snapshot"].iloc[0])
    return "snapshot t", "snapshot t+1"


NO_BACKTEST = (
    "No strategy back-test yet: this is the first snapshot (or the previous one was recorded "
    "without arrears),\nor no borrower with a strategy at the previous snapshot was resolved "
    "since."
)


@styled
def strategy_backtest_figure(table: pd.DataFrame) -> Figure:
    """Left: the Fully Recovered share of each strategy's resolved loans within each score band
    at t, with its 95 % Wilson interval and n. Right: each strategy's difference from the
    configured reference strategy in the bands holding both, and pooled over them (standardised) for every
    pair of strategies sharing a band (legal action against settlement too), with 95 %
    intervals; a note where no band holds both."""
    from loan_pipeline.domain import STRATEGIES, STRATEGY_SHORT

    if table.empty:
        fig, ax = plt.subplots(figsize=SINGLE_FIGSIZE, layout="constrained")
        ax.axis("off")
        ax.text(0.5, 0.5, NO_BACKTEST, ha="center", va="center", wrap=True, color=GUIDE_COLOUR)
        fig.suptitle("Strategy back-test")
        return fig
    bands = table[table["group_by"] == "score_band"]
    order = sorted(bands["group"].unique())
    strategies = [s for s in STRATEGIES if s in set(bands["recovery_strategy"])]
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(13, 5.5), layout="constrained", gridspec_kw={"width_ratios": [3, 2]}
    )
    step = 0.8 / max(len(strategies), 1)
    for i, strategy in enumerate(strategies):
        rows = bands[bands["recovery_strategy"] == strategy].set_index("group")
        x = np.array([order.index(g) for g in rows.index]) + (i - (len(strategies) - 1) / 2) * step
        share = rows["share_fully_recovered"].to_numpy()
        err = [share - rows["ci_low"].to_numpy(), rows["ci_high"].to_numpy() - share]
        left.errorbar(
            x, share, yerr=err, fmt="o", capsize=3, color=STRATEGY_COLOURS[strategy],
            label=STRATEGY_SHORT[strategy],
        )  # fmt: skip
        for xi, hi, n in zip(x, rows["ci_high"], rows["resolved"], strict=True):
            left.text(xi, hi + 0.02, f"n={n}", ha="center", va="bottom", fontsize=7)
    left.set_xticks(np.arange(len(order)), order)
    left.set_ylim(0, 1.12)
    left.yaxis.set_major_formatter(PercentFormatter(1.0))
    left.set_xlabel("Risk score band at t (P(not fully recovered), the model's)")
    left.set_ylabel("Fully Recovered, share of the loans resolved in the cycle")
    left.legend(title="Strategy at t", loc="upper right")
    left.set_title("Outcome by strategy for the same risk (95% Wilson intervals)")

    compared = table[table["difference"].notna() & table["group_by"].isin(["score_band"])]
    pooled = table[table["group_by"] == "band_adjusted"]
    if pooled.empty:  # no band holds two strategies, so none holds one and the reference
        right.axis("off")
        right.text(
            0.5, 0.5,
            "No score band holds two strategies:\nthe strategies were assigned by score, so "
            "no comparison\nfor the same risk is possible (a randomised challenger is).",
            ha="center", va="center", color=GUIDE_COLOUR, transform=right.transAxes,
        )  # fmt: skip
    else:
        right.axvline(0, color=GUIDE_COLOUR, linewidth=1)
        labels = []
        for _, row in pd.concat([compared, pooled]).iterrows():
            y = len(labels)
            strategy = row["recovery_strategy"]
            pooled_row = row["group_by"] == "band_adjusted"
            right.errorbar(
                row["difference"], y,
                xerr=[[row["difference"] - row["difference_low"]],
                      [row["difference_high"] - row["difference"]]],
                fmt="D" if pooled_row else "o", capsize=3, color=STRATEGY_COLOURS[strategy],
            )  # fmt: skip
            where = "all bands with both" if pooled_row else f"band {row['group']}"
            versus = STRATEGY_SHORT[row["reference_strategy"]]
            labels.append(
                f"{STRATEGY_SHORT[strategy]} vs {versus}, {where} (n={row['resolved']} vs "
                f"{row['reference_resolved']})"
            )
        right.set_yticks(np.arange(len(labels)), labels)
        right.invert_yaxis()
        right.xaxis.set_major_formatter(PercentFormatter(1.0))
        right.set_xlabel("Fully Recovered share minus the other's\n(points, 95% interval)")
        right.set_title("Strategy against strategy,\nsame score band")
    previous, current = _snapshots(table)
    fig.suptitle(f"Strategy back-test: loans open at {previous}, resolved by {current}")
    return fig
