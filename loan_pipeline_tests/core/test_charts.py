"""Behavioural tests for loan_pipeline.core.charts and the figures it draws with
(core.book_charts, core.evidence_charts): pure DataFrame -> Figure functions."""

from __future__ import annotations

import ast
import io
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_rgb
from matplotlib.container import BarContainer, ErrorbarContainer
from matplotlib.figure import Figure
from PIL import Image

from loan_pipeline.core import (
    book_charts,
    chart_registry,
    chart_summaries,
    charts,
    evidence_charts,
)
from loan_pipeline.core.chart_style import (
    NO_GROUP_COLOUR,
    SEGMENT_COLOURS,
    STATUS_ORDER,
    STATUS_PALETTE,
    compact,
    segment_palette,
)
from loan_pipeline.core.chart_summaries import OPEN_LABEL, SAMPLE_LIMIT, UNASSIGNED_SEGMENT
from loan_pipeline.core.charts import figure_to_png
from loan_pipeline_tests.colour_vision import delta_e, deuteranope, deuteranope_image
from loan_pipeline_tests.conftest import PROJECT_ROOT, REFERENCE_CSV, SAMPLE_CSV

ARTIFACTS = PROJECT_ROOT / "test-artifacts" / "charts"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TEXT_COLUMNS = [
    "Gender",
    "Employment_Type",
    "Loan_Type",
    "Payment_History",
    "Recovery_Status",
    "Collection_Method",
    "Legal_Action_Taken",
]
SEGMENT_NAMES = {0: "Low income", 1: "Middle income", 2: "High income"}
# The registered charts drawn from the loan book (the segments chart also from the segments)
CHARTS = [c.key for c in chart_registry.CHARTS if "validated_loans" in c.inputs]


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


def synthetic_loans(n: int, seed: int = 7, open_share: float = 0.1) -> pd.DataFrame:
    """A loans frame with the 21 reference columns and plausible value ranges; a share of
    Recovery_Status left blank (open loans); text columns as pandas ``category``."""
    rng = np.random.default_rng(seed)
    loan_amount = rng.integers(50_000, 2_000_000, n)
    loan_type = rng.choice(["Personal", "Home", "Auto", "Business"], n)
    collateral = np.where(loan_type == "Personal", 0.0, loan_amount * rng.uniform(0.5, 1.5, n))
    tenure = rng.choice([12, 24, 36, 48, 60, 72], n)
    missed = rng.choice(np.arange(13), n, p=[0.24, 0.24, 0.22, 0.22] + [0.08 / 9] * 9)
    history = np.where(
        missed == 0, "On-Time", np.where(rng.random(n) < 0.7, "Delayed", "Missed")
    ).astype(object)
    p_written = np.clip(0.05 + 0.03 * missed, 0, 0.6)
    u = rng.random(n)
    status = np.where(
        u < p_written, "Written Off", np.where(u < 0.5, "Partially Recovered", "Fully Recovered")
    ).astype(object)
    status[rng.random(n) < open_share] = None
    ids = np.arange(1, n + 1).astype(str)
    frame = pd.DataFrame(
        {
            "Borrower_ID": np.char.add("BRW_", ids),
            "Age": rng.integers(21, 65, n),
            "Gender": rng.choice(["Male", "Female"], n),
            "Employment_Type": rng.choice(["Salaried", "Self-Employed", "Business Owner"], n),
            "Monthly_Income": rng.integers(15_000, 250_000, n),
            "Num_Dependents": rng.integers(0, 4, n),
            "Loan_ID": np.char.add("LN_", ids),
            "Loan_Amount": loan_amount,
            "Loan_Tenure": tenure,
            "Interest_Rate": rng.uniform(5, 18, n).round(2),
            "Loan_Type": loan_type,
            "Collateral_Value": collateral,
            "Outstanding_Loan_Amount": loan_amount * rng.uniform(0.1, 1.0, n),
            "Monthly_EMI": (loan_amount / tenure * rng.uniform(0.8, 1.3, n)).round(2),
            "Payment_History": history,
            "Num_Missed_Payments": missed,
            "Days_Past_Due": np.minimum(missed * rng.integers(0, 30, n), 180),
            "Recovery_Status": status,
            "Collection_Attempts": rng.integers(0, 11, n),
            "Collection_Method": rng.choice(
                ["Calls", "Legal Notice", "Debt Collectors", "Settlement Offer"], n
            ),
            "Legal_Action_Taken": rng.choice(["No", "Yes"], n, p=[0.95, 0.05]),
        }
    )
    frame[TEXT_COLUMNS] = frame[TEXT_COLUMNS].astype("category")
    return frame


def income_segments(loans: pd.DataFrame) -> pd.DataFrame:
    tertile = pd.qcut(loans["Monthly_Income"], 3, labels=False)
    return pd.DataFrame(
        {
            "Borrower_ID": loans["Borrower_ID"].astype(str),
            "segment_id": tertile.astype(int),
            "segment_name": tertile.map(SEGMENT_NAMES).astype(str),
        }
    )


@pytest.fixture(scope="module")
def reference_loans() -> pd.DataFrame:
    if not REFERENCE_CSV.exists():
        pytest.skip(f"reference data set not found at {REFERENCE_CSV} (outside the shared setup)")
    return pd.read_csv(REFERENCE_CSV)


@pytest.fixture(scope="module")
def sample_loans() -> pd.DataFrame:
    return pd.read_csv(SAMPLE_CSV)


@pytest.fixture(scope="module")
def small_loans() -> pd.DataFrame:
    return synthetic_loans(800, seed=11, open_share=0.15)


@pytest.fixture(scope="module")
def large_loans() -> pd.DataFrame:
    return synthetic_loans(50_000, seed=3)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def draw(key: str, loans: pd.DataFrame) -> Figure:
    inputs = {"validated_loans": loans}
    if "borrower_segments" in chart_registry.chart(key).inputs:
        inputs["borrower_segments"] = income_segments(loans)
    ((drawn, fig),) = charts.draw([key], inputs)
    assert drawn == key
    return fig


def main_axes(fig: Figure) -> list:
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]


def all_text(fig: Figure) -> str:
    return "\n".join(t.get_text() for t in fig.findobj(lambda a: hasattr(a, "get_text")))


def expected_levels(loans: pd.DataFrame) -> list[str]:
    present = set(loans["Recovery_Status"].dropna().astype(str))
    levels = [s for s in STATUS_ORDER if s in present]
    if loans["Recovery_Status"].isna().any():
        levels.append(OPEN_LABEL)
    return levels


def legend_colours(legend) -> dict[str, tuple[float, float, float]]:
    colours = {}
    for handle, text in zip(legend.legend_handles, legend.get_texts(), strict=True):
        if hasattr(handle, "get_facecolor"):
            colour = handle.get_facecolor()
            colour = colour[0] if np.ndim(colour) == 2 else colour
        else:
            colour = handle.get_color()
        colours[text.get_text()] = to_rgb(colour)
    return colours


STATUS_CHARTS = [
    "chart_payment_history_recovery",
    "chart_missed_payments_recovery",
    "chart_income_loan_recovery",
]


# --------------------------------------------------------------------------------------------
# Structure
# --------------------------------------------------------------------------------------------


def test_registry_and_constants():
    assert list(CHARTS) == [
        "chart_loan_amount_distribution",
        "chart_payment_history_recovery",
        "chart_missed_payments_recovery",
        "chart_income_loan_recovery",
        "chart_correlation_heatmap",
        "chart_borrower_segments",
    ]
    assert STATUS_ORDER == ["Fully Recovered", "Partially Recovered", "Written Off"]
    assert set(STATUS_PALETTE) == {*STATUS_ORDER, OPEN_LABEL}
    assert len({to_rgb(c) for c in STATUS_PALETTE.values()}) == 4
    assert SAMPLE_LIMIT == 20_000


@pytest.mark.parametrize("module", [charts, book_charts, evidence_charts])
def test_module_does_not_import_dagster(module):
    tree = ast.parse(Path(module.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert "dagster" not in imported
    assert "matplotlib" in imported


@pytest.mark.parametrize("key", list(CHARTS))
def test_every_chart_is_titled_and_labelled(key, reference_loans):
    fig = draw(key, reference_loans)
    assert isinstance(fig, Figure)
    assert fig._suptitle is not None and fig._suptitle.get_text()
    axes = main_axes(fig)
    assert axes
    for ax in axes:
        assert ax.get_title().strip(), f"{key}: axes without a title"
        assert ax.get_xlabel().strip(), f"{key}: axes without an x label"
        assert ax.get_ylabel().strip(), f"{key}: axes without a y label"
    text = all_text(fig)
    if key != "chart_correlation_heatmap":
        assert "(currency units)" in text or "(count" in text


def test_plot_sample_is_reproducible_and_bounded(large_loans, small_loans):
    first = chart_summaries.plot_sample(large_loans)
    second = chart_summaries.plot_sample(large_loans)
    assert first.n_shown == SAMPLE_LIMIT == len(first.frame)
    assert first.n_total == len(large_loans)
    assert first.frame.index.equals(second.frame.index)
    assert first.frame.index.is_unique
    assert first.note == f"sample of {SAMPLE_LIMIT:,} of {len(large_loans):,} borrowers"
    whole = chart_summaries.plot_sample(small_loans)
    assert whole.frame is small_loans and not whole.is_sample


# --------------------------------------------------------------------------------------------
# Status colours and order
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", STATUS_CHARTS)
@pytest.mark.parametrize("dataset", ["reference_loans", "small_loans"])
def test_status_legend_order_and_colours(key, dataset, request):
    loans = request.getfixturevalue(dataset)
    fig = draw(key, loans)
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    assert len(legends) == 1
    labels = [t.get_text() for t in legends[0].get_texts()]
    assert labels == expected_levels(loans)
    for label, colour in legend_colours(legends[0]).items():
        assert colour == pytest.approx(to_rgb(STATUS_PALETTE[label]), abs=1e-6), label


def _closest_pair(colours: list, seen=lambda c: c) -> tuple[float, object, object]:
    """The smallest CIELAB difference between two of ``colours`` as ``seen`` maps them."""
    pairs = [(delta_e(seen(a), seen(b)), a, b) for i, a in enumerate(colours) for b in colours[:i]]
    return min(pairs, key=lambda pair: pair[0])


def test_the_deuteranopia_simulation_is_machados():
    # greys stay greys (each row of the matrix sums to 1); red and green collapse together
    assert deuteranope("#777777") == pytest.approx(to_rgb("#777777"), abs=1e-6)
    assert delta_e("#CC0000", "#00AA00") > 80
    assert delta_e(deuteranope("#CC0000"), deuteranope("#008800")) < 15
    # the outcome colours before issue 17: Okabe-Ito's orange and vermilion, and its green
    # against the open-loan grey, fall below the bar for a deuteranope (not for others)
    assert delta_e("#E69F00", "#D55E00") > 30
    assert delta_e(deuteranope("#E69F00"), deuteranope("#D55E00")) < 20
    assert delta_e(deuteranope("#009E73"), deuteranope("#999999")) < 20


def test_status_and_segment_colours_stay_apart_for_a_deuteranope():
    statuses = list(STATUS_PALETTE.values())
    from loan_pipeline.settings import ClusterConfig

    assert len(SEGMENT_COLOURS) >= ClusterConfig().k_max  # every k tried gets a safe colour
    names = [f"Segment {i}" for i in range(len(SEGMENT_COLOURS))] + [UNASSIGNED_SEGMENT]
    segment_colours = list(segment_palette(names).values())
    assert segment_colours == [*SEGMENT_COLOURS, NO_GROUP_COLOUR]
    for colours in (statuses, segment_colours):
        for seen in (lambda c: c, deuteranope):
            distance, a, b = _closest_pair(colours, seen)
            assert distance >= 20, f"{a} and {b}: {distance:.1f} CIELAB units apart"


def test_the_income_scatter_seen_by_a_deuteranope(sample_loans):
    """The chart as a deuteranope sees it (test-artifacts/charts/, for a reviewer to look at):
    its points fall in as many colour groups as there are outcomes, each near its colour."""
    fig = charts.income_loan_recovery(sample_loans)
    with Image.open(io.BytesIO(figure_to_png(fig))) as image:
        seen = deuteranope_image(np.asarray(image.convert("RGB")))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    Image.fromarray(seen).save(ARTIFACTS / "chart_income_loan_recovery-deuteranopia.png")
    pixels = seen.reshape(-1, 3) / 255.0
    for status in expected_levels(sample_loans):
        target = deuteranope(STATUS_PALETTE[status])
        # the legend's opaque marker: pixels within 3 units of the simulated colour
        near = np.linalg.norm(pixels - target, axis=1) < 3 / 255
        assert near.sum() > 20, status


def test_open_loans_are_counted_not_dropped(small_loans):
    fig = charts.payment_history_recovery(small_loans)
    ax = main_axes(fig)[0]
    heights = [bar.get_height() for c in ax.containers for bar in c]
    assert np.nansum(heights) == len(small_loans)
    open_n = int(small_loans["Recovery_Status"].isna().sum())
    open_bars = ax.containers[[t.get_text() for t in ax.get_legend().get_texts()].index(OPEN_LABEL)]
    assert sum(bar.get_height() for bar in open_bars) == open_n


def test_string_and_category_status_give_the_same_chart(small_loans):
    as_text = small_loans.astype({c: object for c in TEXT_COLUMNS})
    shares = []
    for frame in (small_loans, as_text):
        ax = main_axes(charts.missed_payments_recovery(frame))[0]
        shares.append([bar.get_height() for bar in ax.patches])
    assert shares[0] == pytest.approx(shares[1])


def bar_containers(ax) -> list:
    return [c for c in ax.containers if isinstance(c, BarContainer)]


def test_missed_payment_shares_match_groupby(small_loans):
    fig = charts.missed_payments_recovery(small_loans)
    ax = main_axes(fig)[0]
    status = small_loans["Recovery_Status"].astype(object).fillna(OPEN_LABEL)
    expected = pd.crosstab(small_loans["Num_Missed_Payments"], status, normalize="index")
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    for level, container in zip(labels, bar_containers(ax), strict=True):
        assert [b.get_height() for b in container] == pytest.approx(expected[level].tolist())
    stacked_top = np.sum([[b.get_height() for b in c] for c in bar_containers(ax)], axis=0)
    assert stacked_top == pytest.approx(np.ones(len(expected)))


@pytest.mark.parametrize("dataset", ["sample_loans", "small_loans"])
def test_missed_payment_bars_show_n_and_wilson_intervals(dataset, request):
    """n under each bar, and at each boundary between stacked outcomes the 95% Wilson interval
    of the share below it: scipy's, wide on a bar of 1-3 loans, narrow on one of 100+."""
    from scipy.stats import binomtest

    loans = request.getfixturevalue(dataset)
    ax = main_axes(charts.missed_payments_recovery(loans))[0]
    status = loans["Recovery_Status"].astype(object).fillna(OPEN_LABEL)
    counts = pd.crosstab(loans["Num_Missed_Payments"], status)[expected_levels(loans)]
    n = counts.sum(axis=1)
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert ticks == [f"{int(m)}\nn={total:,}" for m, total in n.items()]
    whiskers = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert len(whiskers) == counts.shape[1] - 1  # one per inner boundary
    below = counts.cumsum(axis=1)
    for j, container in enumerate(whiskers):
        (segments,) = container.lines[2]
        spans = np.array([seg[:, 1] for seg in segments.get_segments()])  # (lo, hi) per bar
        expected = np.array(
            [
                tuple(binomtest(int(k), int(total)).proportion_ci(method="wilson"))
                for k, total in zip(below.iloc[:, j], n, strict=True)
            ]
        )
        np.testing.assert_allclose(spans, expected, atol=1e-6)
    half_width = np.array([seg[1, 1] - seg[0, 1] for seg in whiskers[0].lines[2][0].get_segments()])
    if dataset == "sample_loans":  # 130 loans at 1 missed payment, 1 to 3 from 9 on
        assert half_width[n.index.get_loc(1)] < 0.2
        assert (half_width[n.to_numpy() <= 3] > 0.5).all()
    assert "95% Wilson interval" in ax.get_title() and "n under each bar" in ax.get_title()
    assert "n=" not in "".join(t.get_text() for t in ax.texts)  # no longer above the bars


# --------------------------------------------------------------------------------------------
# Loan amount distribution
# --------------------------------------------------------------------------------------------


def kde_line(fig: Figure):
    lines = [
        line
        for ax in fig.axes
        for line in ax.get_lines()
        if line.get_label() == "Kernel density estimate"
    ]
    assert len(lines) == 1
    return lines[0]


@pytest.mark.parametrize("dataset", ["sample_loans", "reference_loans", "large_loans"])
def test_amount_histogram_reads_as_shares_per_stated_bin(dataset, request):
    """Bars: the share of loans per bin of a round width the y axis states (no 1e-7 offset);
    the density curve on the same scale; the x axis ends within one bin of the largest loan."""
    loans = request.getfixturevalue(dataset)
    fig = charts.loan_amount_distribution(loans)
    line = kde_line(fig)
    ax = line.axes
    bars = ax.patches
    widths = {round(b.get_width(), 6) for b in bars}
    assert len(widths) == 1
    (width,) = widths
    mantissa = width / 10 ** np.floor(np.log10(width))
    assert mantissa in (1, 2, 2.5, 5)
    assert ax.get_ylabel() == f"Share of loans per {compact(width)} bin (%)"
    assert sum(b.get_height() for b in bars) == pytest.approx(1.0, abs=1e-9)
    heights, _ = np.histogram(
        loans["Loan_Amount"], bins=[b.get_x() for b in bars] + [bars[-1].get_x() + width]
    )
    assert [b.get_height() for b in bars] == pytest.approx(heights / len(loans))
    # the curve is density x width: its area over the bins' range is one bin width, less the
    # tails a kernel estimate puts beyond the smallest and largest loan
    x, y = line.get_xdata(), line.get_ydata()
    assert 0.85 < np.trapezoid(y, x) / width <= 1.0
    lo, hi = ax.get_xlim()
    smallest, largest = loans["Loan_Amount"].min(), loans["Loan_Amount"].max()
    assert lo <= smallest < lo + width and largest <= hi < largest + width
    assert (x.min(), x.max()) == (lo, hi)
    assert ax.yaxis.get_offset_text().get_text() == ""  # no "1e-7" over the axis
    tick_labels = [ax.yaxis.get_major_formatter()(v) for v in ax.get_yticks()]
    assert all(label.endswith("%") for label in tick_labels)
    assert "Kernel density estimate" in [t.get_text() for t in ax.get_legend().get_texts()]


def test_distribution_states_pearson_and_switches_to_hexbin(reference_loans, large_loans):
    small = charts.loan_amount_distribution(reference_loans)
    r = reference_loans["Loan_Amount"].corr(reference_loans["Monthly_Income"])
    assert f"Pearson r = {round(r, 2) + 0.0:.2f}" in all_text(small)
    assert not any(type(c).__name__ == "PolyCollection" for c in small.axes[1].collections)

    big = charts.loan_amount_distribution(large_loans)
    hexes = [c for c in big.axes[1].collections if type(c).__name__ == "PolyCollection"]
    assert len(hexes) == 1
    assert hexes[0].get_array().sum() == len(large_loans)  # every row, not a sample


# --------------------------------------------------------------------------------------------
# Sampling notes
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    ["chart_loan_amount_distribution", "chart_income_loan_recovery", "chart_borrower_segments"],
)
def test_large_frames_say_they_are_sampled(key, large_loans, reference_loans):
    note = f"sample of {SAMPLE_LIMIT:,} of {len(large_loans):,} "
    assert note in all_text(draw(key, large_loans)).lower()
    assert "sample of" not in all_text(draw(key, reference_loans)).lower()


def test_scatter_draws_at_most_sample_limit_points(large_loans):
    fig = charts.income_loan_recovery(large_loans)
    offsets = main_axes(fig)[0].collections[0].get_offsets()
    assert len(offsets) == SAMPLE_LIMIT


# --------------------------------------------------------------------------------------------
# Segments
# --------------------------------------------------------------------------------------------


def test_segments_legend_and_sizes(reference_loans):
    segments = income_segments(reference_loans)
    fig = charts.borrower_segments(reference_loans, segments)
    ax_xy, ax_size = main_axes(fig)
    labels = [t.get_text() for t in ax_xy.get_legend().get_texts()]
    assert labels == list(SEGMENT_NAMES.values())
    widths = {
        tick.get_text(): bar.get_width()
        for tick, bar in zip(ax_size.get_yticklabels(), ax_size.patches, strict=True)
    }
    assert widths == segments["segment_name"].value_counts().to_dict()


def test_unsegmented_borrowers_are_shown(reference_loans):
    segments = income_segments(reference_loans).iloc[10:]
    fig = charts.borrower_segments(reference_loans, segments)
    ax_xy, ax_size = main_axes(fig)
    assert [t.get_text() for t in ax_xy.get_legend().get_texts()][-1] == "Unassigned"
    assert sum(b.get_width() for b in ax_size.patches) == len(reference_loans)


def test_segments_chart_title_says_the_verdict(small_loans):
    segments = income_segments(small_loans)
    plain = charts.borrower_segments(small_loans, segments)
    assert plain._suptitle.get_text() == "Borrower segments"
    verdict = "no stable segmentation: k=3 shown as a convenient split"
    fig = charts.borrower_segments(small_loans, segments, segmentation=verdict)
    assert fig._suptitle.get_text() == (
        "Borrower segments\nNo stable segmentation: k=3 shown as a convenient split"
    )


def _selection(prediction_strength: list[float], gap_gain: list[float | None], chosen: int):
    from loan_pipeline.core.segmentation import KSelection

    table = pd.DataFrame(
        {
            "k": [2, 3, 4],
            "prediction_strength": prediction_strength,
            "prediction_strength_min": [p - 0.05 for p in prediction_strength],
            "gap": [np.nan if g is None else 1.0 + g for g in gap_gain],
            "gap_sd": [np.nan if g is None else 0.01 for g in gap_gain],
            "gap_gain": [np.nan if g is None else g for g in gap_gain],
        }
    )
    table["stable"] = table["prediction_strength"] >= 0.8
    table["gap_significant"] = table["gap_gain"] > table["gap_sd"]
    table["supported"] = table["stable"] & table["gap_significant"]
    return KSelection(table, chosen, sample_size=500, resamples=5, stability_threshold=0.8)


def stability_bar(ax) -> list:
    return [line for line in ax.get_lines() if line.get_label().startswith("stability bar")]


def test_k_selection_chart_shows_the_evidence_and_the_verdict():
    stable = evidence_charts.k_selection(_selection([0.6, 1.0, 0.5], [None, 0.09, None], chosen=3))
    ax_ps, ax_gain = main_axes(stable)
    assert stable._suptitle.get_text().splitlines()[1:] == [
        "Stable segmentation: k=3",
        "k=3 clears the stability bar of 0.8 (prediction strength 1.00) and the gap test "
        "(gain 0.090 > 0.010 needed)",
    ]
    assert [p.get_height() for p in ax_gain.patches] == pytest.approx([0.09])
    assert [t.get_text() for t in ax_gain.texts] == ["passes"]
    unstable = evidence_charts.k_selection(
        _selection([0.7, 0.4, 0.3], [None, None, None], chosen=2)
    )
    assert unstable._suptitle.get_text().splitlines()[1:] == [
        "No stable segmentation: k=2 shown as a convenient split",
        "Every k falls below the stability bar of 0.8 (best: k=2 at 0.70): no k passes",
    ]
    assert "no k clears the stability bar (0.8):\nnothing to test" in all_text(unstable)
    for fig in (stable, unstable):
        for ax in main_axes(fig):
            assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel()


def test_k_selection_marks_the_stability_bar_every_k_fails():
    """As on the sample: k=2 clears the bar (0.82 >= 0.8) but fails the gap test, the others fall
    below it. The bar is drawn at ClusterConfig.stability_threshold, the region below shaded,
    every k below it hollow, and the title says why no k passes."""
    from loan_pipeline.settings import ClusterConfig

    threshold = ClusterConfig().stability_threshold
    selection = _selection([0.82, 0.46, 0.41], [-0.028, None, None], chosen=2)
    fig = evidence_charts.k_selection(selection)
    ax_ps, ax_gain = main_axes(fig)
    (bar,) = stability_bar(ax_ps)
    assert list(bar.get_ydata()) == [threshold, threshold] and threshold == 0.8
    assert bar.get_label() == "stability bar: 0.8"
    legend = [t.get_text() for t in ax_ps.get_legend().get_texts()]
    assert {"stability bar: 0.8", "below the bar", "k clears the bar", "k below the bar"} <= set(
        legend
    )
    (shade,) = [p for p in ax_ps.patches if p.get_label() == "below the bar"]
    assert shade.get_extents().y1 == pytest.approx(ax_ps.transData.transform((0, threshold))[1])
    hollow = next(c for c in ax_ps.collections if c.get_label() == "k below the bar")
    assert [tuple(o) for o in hollow.get_offsets()] == [(3, 0.46), (4, 0.41)]
    assert [t.get_text() for t in ax_gain.texts] == ["fails"]
    assert fig._suptitle.get_text().splitlines()[-1] == (
        "k=2 clears the stability bar of 0.8 but fails the gap test; every other k falls below it"
    )


def test_segment_lookup_is_a_left_join_in_any_order(small_loans):
    segments = income_segments(small_loans)
    expected = small_loans[["Borrower_ID"]].merge(segments, on="Borrower_ID", how="left")
    shuffled = segments.sample(frac=1.0, random_state=1).iloc[5:]  # 5 borrowers unassigned
    for ids in (small_loans["Borrower_ID"], small_loans["Borrower_ID"].astype("category")):
        aligned = chart_summaries._segment_per_loan(
            ids, segments["Borrower_ID"], segments["segment_name"]
        )
        assert aligned.astype(str).tolist() == expected["segment_name"].tolist()
        looked_up = chart_summaries._segment_per_loan(
            ids, shuffled["Borrower_ID"], shuffled["segment_name"]
        ).astype(str)
        missing = ~small_loans["Borrower_ID"].isin(shuffled["Borrower_ID"])
        assert (looked_up[missing] == "Unassigned").all() and missing.sum() == 5
        assert looked_up[~missing].tolist() == expected["segment_name"][~missing].tolist()


def test_segments_accept_category_ids_and_reject_duplicates(small_loans):
    segments = income_segments(small_loans)
    as_category = small_loans.astype({"Borrower_ID": "category"})
    fig = charts.borrower_segments(as_category, segments)
    widths = [b.get_width() for b in main_axes(fig)[1].patches]
    assert (
        widths == segments["segment_name"].value_counts().reindex(SEGMENT_NAMES.values()).tolist()
    )
    with pytest.raises(ValueError, match="more than one row"):
        charts.borrower_segments(small_loans, pd.concat([segments, segments.head(3)]))


def test_calibration_says_what_the_probability_is_of():
    rng = np.random.default_rng(5)
    score = rng.uniform(0, 1, 400)
    scores = pd.DataFrame(
        {
            "risk_score": score,
            "not_fully_recovered": rng.uniform(0, 1, 400) < score,
            "score_source": "out_of_fold",
        }
    )
    fig = charts.calibration_curve(scores)
    ax, hist = main_axes(fig)
    assert ax.get_xlabel() == ("Predicted probability of not being fully recovered (mean per bin)")
    assert ax.get_ylabel() == "Observed share not fully recovered"
    assert "not being fully recovered" in ax.get_title()
    assert hist.get_xlabel() == "Risk score: predicted probability of not being fully recovered"
    assert fig._suptitle.get_text() == "Is a 0.7 score a 70% chance of not being fully recovered?"
    assert (ax.get_xlim(), ax.get_ylim()) == ((0, 1), (0, 1))


# --------------------------------------------------------------------------------------------
# Correlation heatmap
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dataset", ["reference_loans", "small_loans"])
def test_heatmap_matches_pandas_corr(dataset, request):
    loans = request.getfixturevalue(dataset)
    expected = loans.select_dtypes("number").corr()
    fig = charts.correlation_heatmap(loans)
    ax = main_axes(fig)[0]
    mesh = ax.collections[0]
    assert mesh.norm.vmin == -1 and mesh.norm.vmax == 1
    values = np.asarray(mesh.get_array()).reshape(expected.shape)
    np.testing.assert_allclose(values, expected.to_numpy(), atol=1e-12)
    annotations = [t.get_text() for t in ax.texts]
    assert len(annotations) == expected.size
    np.testing.assert_allclose(
        np.array(annotations, dtype=float).reshape(expected.shape),
        expected.to_numpy().round(2),
        atol=0.0051,
    )
    tick_names = [t.get_text() for t in ax.get_xticklabels()]
    assert tick_names == [c.replace("_", " ") for c in expected.columns]
    assert all(t.get_rotation() != 0 for t in ax.get_xticklabels())


def test_chunked_pearson_equals_pandas(large_loans):
    from loan_pipeline.core.summaries import co_moments, pearson

    numeric = large_loans.select_dtypes("number")
    numeric = numeric.assign(Constant=1.0)

    def chunked(frame):
        return pearson(co_moments(frame, list(frame.columns), chunk_rows=7_000))

    pd.testing.assert_frame_equal(chunked(numeric), numeric.corr(), atol=1e-12, rtol=0)
    with_gaps = numeric.mask(np.random.default_rng(0).random(numeric.shape) < 0.05)
    pd.testing.assert_frame_equal(chunked(with_gaps), with_gaps.corr(), atol=1e-12, rtol=0)


# --------------------------------------------------------------------------------------------
# PNG output and memory hygiene
# --------------------------------------------------------------------------------------------


def test_figure_to_png_and_memory_hygiene(reference_loans):
    plt.close("all")
    pngs = {}
    for key in CHARTS:
        fig = draw(key, reference_loans)
        width_in, height_in = fig.get_size_inches()
        png = figure_to_png(fig, dpi=100)
        assert plt.get_fignums() == [], f"{key} left a figure open"
        assert png.startswith(PNG_SIGNATURE)
        with Image.open(io.BytesIO(png)) as image:
            image.load()
            width, height = image.size
        assert width > 300 and height > 300
        # bbox_inches="tight" trims margins or grows for outside legends: allow 25 %.
        assert width == pytest.approx(width_in * 100, rel=0.25)
        assert height == pytest.approx(height_in * 100, rel=0.25)
        pngs[key] = png
    assert len(set(pngs.values())) == len(CHARTS)


def test_failed_chart_leaves_no_figure_behind(reference_loans):
    plt.close("all")
    with pytest.raises(KeyError):
        charts.borrower_segments(
            reference_loans, income_segments(reference_loans).drop(columns="segment_name")
        )
    broken = reference_loans.drop(columns="Monthly_Income")
    with pytest.raises(KeyError):
        charts.income_loan_recovery(broken)
    assert plt.get_fignums() == []


def test_a_chart_of_a_big_book_has_no_digest_and_a_small_one_a_stable_digest(monkeypatch):
    """Digesting costs about 0.6 s per million rows: above DIGEST_MAX_ROWS a chart is drawn and
    not kept. Below, the digest is the same for equal inputs and another for a changed one."""
    from loan_pipeline.core import charts as module
    from loan_pipeline.core.generator import generate_loan_book

    loans = generate_loan_book(300, seed=5)
    key = "chart_loan_amount_distribution"
    first = module.digests_of([key], {"validated_loans": loans})[key]
    assert first == module.digests_of([key], {"validated_loans": loans.copy()})[key]
    changed = loans.assign(Loan_Amount=loans["Loan_Amount"] + 1)
    assert module.digests_of([key], {"validated_loans": changed})[key] != first
    monkeypatch.setattr(module, "DIGEST_MAX_ROWS", 299)
    assert module.digests_of([key], {"validated_loans": loans}) == {key: None}
