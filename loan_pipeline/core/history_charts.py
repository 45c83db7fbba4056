"""Charts of the book over time (two consecutive snapshots): the roll-rate matrix.

Drawn from the ``roll_rates`` table (``core.roll_rates.roll_rate_matrix`` with the snapshots'
names), so the chart shows exactly what the table holds; with no rows (the first snapshot, or a
previous snapshot without arrears) a figure that says so.
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
    styled,
)
from loan_pipeline.domain import FROM_BUCKETS, TO_BUCKETS  # noqa: E402

__all__ = ["roll_rates_figure"]

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
