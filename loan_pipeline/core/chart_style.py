"""How every chart looks: its colours, fonts and figure sizes, and how it writes amounts.

Changing a chart's colours is an edit here only:

* Recovery outcomes always use ``STATUS_ORDER`` and ``STATUS_PALETTE`` (passed to seaborn as
  ``hue_order`` and ``palette``), so a colour means the same outcome on every chart; an
  unexpected outcome gets one of ``_EXTRA_STATUS_COLOURS`` (``status_palette``), never dropped.
* Segments get ``segment_palette`` (``SEGMENT_COLOURS`` in segment order, "Unassigned" grey).
* The charts coloured by neither use the fixed colours below, one per role.

The status and segment colours are chosen so that a reader with deuteranopia (the commonest
colour-vision deficiency) can tell every pair apart: simulated (Machado et al. 2009), each pair
stays at least 20 CIELAB units apart (``loan_pipeline_tests/core/test_charts.py`` checks it
with ``loan_pipeline_tests/colour_vision.py``). Okabe-Ito's set alone does not do it: its orange
and vermilion come within 18 units of each other, its green within 12 of a mid grey.

Every draw function runs inside ``styled`` (seaborn's white grid and the fonts of ``_RC``).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import ParamSpec

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

from loan_pipeline.core.chart_summaries import OPEN_LABEL, UNASSIGNED_SEGMENT  # noqa: E402
from loan_pipeline.domain import (  # noqa: E402
    STRATEGY_LEGAL,
    STRATEGY_REMINDERS,
    STRATEGY_SETTLEMENT,
)

__all__ = [
    "CORRELATION_COLOURMAP",
    "DENSITY_COLOUR",
    "DOUBLE_FIGSIZE",
    "EDGE_COLOUR",
    "GUIDE_COLOUR",
    "HEXBIN_COLOURMAP",
    "HIGHLIGHT_COLOUR",
    "INK_COLOUR",
    "MONEY",
    "MONEY_FORMAT",
    "NO_GROUP_COLOUR",
    "REFERENCE_COLOUR",
    "SEGMENT_COLOURS",
    "SERIES_COLOUR",
    "SINGLE_FIGSIZE",
    "STATUS_ORDER",
    "STRATEGY_COLOURS",
    "STATUS_PALETTE",
    "compact",
    "segment_palette",
    "status_palette",
    "styled",
]

# --------------------------------------------------------------------------------------------
# Colours
# --------------------------------------------------------------------------------------------

# Light grey for what belongs to no group: loans with no outcome yet, borrowers with no segment
# (a mid grey such as REFERENCE_COLOUR's comes within 12 units of a mid green for a deuteranope).
NO_GROUP_COLOUR = "#BBBBBB"

STATUS_ORDER = ["Fully Recovered", "Partially Recovered", "Written Off"]
# Blue, orange and a dark wine (the worst outcome darkest), then light grey for open loans:
# apart in hue for most readers and in lightness for all (Okabe-Ito's blue and orange, Paul
# Tol's wine). Simulated deuteranopia keeps every pair at least 41 CIELAB units apart.
STATUS_PALETTE = {
    "Fully Recovered": "#0072B2",
    "Partially Recovered": "#E69F00",
    "Written Off": "#882255",
    OPEN_LABEL: NO_GROUP_COLOUR,
}
# Colours for unexpected status values (typos, new outcomes): shown, never dropped.
_EXTRA_STATUS_COLOURS = ["#66CCEE", "#228833", "#332288", "#DDCC77"]

# The segments' colours, in segment order: the first k are used. Picked (from Okabe-Ito's and
# Paul Tol's palettes) so that any two of them, and each with NO_GROUP_COLOUR, stay at least 28
# CIELAB units apart for a normal and for a simulated deuteranope reader; at least as many as
# ClusterConfig's default k_max (the tests check both). Beyond them, husl (not safe).
SEGMENT_COLOURS = [
    "#4477AA",  # blue
    "#E69F00",  # orange
    "#228833",  # green
    "#882255",  # wine
    "#332288",  # indigo
    "#DDCC77",  # sand
    "#66CCEE",  # cyan
    "#000000",  # black
]

# The recovery strategies' colours (the back-test), from SEGMENT_COLOURS (so they keep its
# distances for a deuteranope reader): legal action the darkest, reminders the lightest blue.
STRATEGY_COLOURS = {
    STRATEGY_LEGAL: "#882255",  # wine
    STRATEGY_SETTLEMENT: "#E69F00",  # orange
    STRATEGY_REMINDERS: "#4477AA",  # blue
}

# The fixed colours of the charts coloured by neither outcome nor segment (Okabe-Ito too), one
# per role, so that a colour reads the same way on each of them.
SERIES_COLOUR = "#0072B2"  # a chart's own data: bars, points, curves
HIGHLIGHT_COLOUR = "#D55E00"  # singled out against it: a fitted line, the k used, the loss curve
DENSITY_COLOUR = "#0B3C5D"  # the density curve, darker than the bars it is drawn over
REFERENCE_COLOUR = "#999999"  # what a curve is read against: random order, perfect calibration
GUIDE_COLOUR = "#555555"  # thresholds, zero lines, the worklist sizes marked, notes
INK_COLOUR = "#000000"  # the gain needed, and the title of a supported verdict
EDGE_COLOUR = "white"  # between bars, and between the heatmap's cells
HEXBIN_COLOURMAP = "viridis"
CORRELATION_COLOURMAP = "vlag"  # diverging: blue below 0, red above
# sequential, 0 to 1: cividis is built to read the same to a deuteranope (Nuñez et al. 2018) and
# in grey, dark blue (0) to yellow (1)
SHARE_COLOURMAP = "cividis"


def status_palette(levels: list[str]) -> dict[str, str]:
    """A colour for every outcome in ``levels``: its ``STATUS_PALETTE`` colour, else the next
    of ``_EXTRA_STATUS_COLOURS`` (round again when there are more unexpected ones)."""
    extras = iter(_EXTRA_STATUS_COLOURS * (len(levels) // len(_EXTRA_STATUS_COLOURS) + 1))
    return {level: STATUS_PALETTE.get(level) or next(extras) for level in levels}


def segment_palette(names: list[str]) -> dict[str, object]:
    """A colour for every segment name: ``SEGMENT_COLOURS`` in order (husl beyond them), and
    ``NO_GROUP_COLOUR`` for ``UNASSIGNED_SEGMENT``."""
    named = [n for n in names if n != UNASSIGNED_SEGMENT]
    fits = len(named) <= len(SEGMENT_COLOURS)
    colours = SEGMENT_COLOURS if fits else sns.color_palette("husl", len(named))
    palette: dict[str, object] = dict(zip(named, colours, strict=False))
    if UNASSIGNED_SEGMENT in names:
        palette[UNASSIGNED_SEGMENT] = NO_GROUP_COLOUR
    return palette


# --------------------------------------------------------------------------------------------
# Fonts, sizes and amounts
# --------------------------------------------------------------------------------------------

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

_DrawArgs = ParamSpec("_DrawArgs")


def styled(func: Callable[_DrawArgs, Figure]) -> Callable[_DrawArgs, Figure]:
    """Draw inside a fixed style (no global rcParams change) and never leak a half-made
    figure when drawing fails. The wrapper takes exactly the draw function's arguments."""

    @functools.wraps(func)
    def wrapper(*args: _DrawArgs.args, **kwargs: _DrawArgs.kwargs) -> Figure:
        before = set(plt.get_fignums())
        with sns.axes_style("whitegrid"), plt.rc_context(_RC):
            try:
                return func(*args, **kwargs)
            except BaseException:
                for num in set(plt.get_fignums()) - before:
                    plt.close(num)
                raise

    return wrapper


def font_files() -> list[str]:
    """The font files the charts' text (regular and bold) is set in on this machine, each as
    ``name:size in bytes``."""
    from matplotlib import font_manager

    with sns.axes_style("whitegrid"), plt.rc_context(_RC):
        found = [
            Path(os.fspath(font_manager.findfont(font_manager.FontProperties(weight=weight))))
            for weight in ("normal", "bold")
        ]
    return [f"{path.name}:{path.stat().st_size}" for path in found]


def compact(value: float, _pos: object = None, digits: int = 3) -> str:
    """Round to ``digits`` significant figures and abbreviate: 1_500_000 -> '1.5M',
    239_792 -> '240k' (digits=3) or 8_841 -> '8.8k' (digits=2); 12 -> '12'."""
    if not np.isfinite(value) or value == 0:
        return f"{value:g}"
    rounded = float(f"{value:.{digits}g}")
    for threshold, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k"), (1.0, "")):
        if abs(rounded) >= threshold:
            return f"{rounded / threshold:.3f}".rstrip("0").rstrip(".") + suffix
    return f"{rounded:.6f}".rstrip("0").rstrip(".")


# Amounts on an axis, as ``compact`` writes them.
MONEY_FORMAT = FuncFormatter(compact)
