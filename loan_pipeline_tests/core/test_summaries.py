"""The charts' aggregates give what the straightforward pandas computation gives.

Each summary below replaced a pandas one-liner on the drawing path (see
core/chart_summaries.py): it is computed per partition and merged, so that a book in partitions
on a Dask cluster is charted without collecting it. These tests pin the result to that one-liner, on the awkward inputs too
(ties, gaps, nullable integers, unused categories), so a chart cannot change because an
aggregate got faster or moved to the cluster. (Merging partitions: test_dask_charts.py.)
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from loan_pipeline.core import book_charts, chart_style, chart_summaries, charts
from loan_pipeline.core.scoring import outcome_flags
from loan_pipeline.core.summaries import co_moments, label_codes, pearson
from loan_pipeline_tests.core.test_charts import synthetic_loans


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def loans() -> pd.DataFrame:
    return synthetic_loans(6_000, seed=5, open_share=0.1)


# --------------------------------------------------------------------------------------------
# Correlation heatmap
# --------------------------------------------------------------------------------------------


def test_numeric_columns_follow_select_dtypes():
    frame = pd.DataFrame(
        {
            "Borrower_ID": ["a", "b"],
            "flag": [True, False],
            "count": pd.array([1, None], dtype="Int64"),
            "ratio": [0.5, 1.5],
            "small": np.array([1, 2], dtype=np.int8),
            "kind": pd.Categorical(["x", "y"]),
            "text": pd.array(["u", "v"], dtype="string[pyarrow]"),
            "when": pd.to_datetime(["2024-01-01", "2024-01-02"]),
            "wait": pd.to_timedelta([1, 2], unit="D"),
            "segment_id": [1, 2],
            "id": [3, 4],
        }
    )
    expected = [
        c
        for c in frame.select_dtypes("number").columns
        if not c.lower().endswith("_id") and c.lower() != "id"
    ]
    assert chart_summaries._numeric_columns(frame) == expected


def _pearson(frame: pd.DataFrame, columns: list[str], chunk_rows: int = 1_000_000):
    return pearson(co_moments(frame, columns, chunk_rows=chunk_rows))


def test_co_moment_pearson_equals_pandas(loans):
    columns = chart_summaries._numeric_columns(loans)
    frame = loans.assign(Constant=1.0, Count=loans["Age"].astype("Int64"))
    columns = [*columns, "Constant", "Count"]
    expected = frame[columns].corr()
    for chunk_rows in (1_000_000, 2_500):  # one chunk, and several with a short last one
        fast = _pearson(frame, columns, chunk_rows=chunk_rows)
        pd.testing.assert_frame_equal(fast, expected, atol=1e-12, rtol=0)
    # With gaps pairwise-complete rows differ per pair; a column constant over the rows of
    # one pair only (Flag, wherever Age is present) has no correlation with it: NaN there.
    rng = np.random.default_rng(2)
    gappy = frame.assign(
        Age=frame["Age"].astype(float).mask(np.arange(len(frame)) % 7 == 0),
        Interest_Rate=frame["Interest_Rate"].mask(rng.random(len(frame)) < 0.2),
        Flag=np.where(np.arange(len(frame)) % 7 == 0, 2.5, 0.1),
        Infinite=np.where(rng.random(len(frame)) < 0.1, np.inf, rng.random(len(frame))),
    )
    columns = [*columns, "Flag", "Infinite"]
    for chunk_rows in (1_000_000, 999):
        pd.testing.assert_frame_equal(
            _pearson(gappy, columns, chunk_rows), gappy[columns].corr(), atol=1e-12, rtol=0
        )
    assert np.isnan(_pearson(gappy, columns).loc["Age", "Flag"])


def test_heatmap_shows_pandas_numbers_with_gaps(loans):
    gappy = loans.assign(
        Age=loans["Age"].astype(float).mask(np.arange(len(loans)) % 5 == 0),
        Monthly_EMI=loans["Monthly_EMI"].mask(np.arange(len(loans)) % 3 == 0),
    )
    ax = charts.correlation_heatmap(gappy).axes[0]
    expected = gappy[chart_summaries._numeric_columns(gappy)].corr().to_numpy()
    np.testing.assert_allclose(
        np.asarray(ax.collections[0].get_array()).reshape(expected.shape),
        expected,
        atol=1e-12,
        rtol=0,
    )
    assert [t.get_text() for t in ax.texts] == [f"{v + 0.0:.2f}" for v in expected.round(2).ravel()]


# --------------------------------------------------------------------------------------------
# Calibration deciles
# --------------------------------------------------------------------------------------------


def _exact_deciles(ranks: pd.Series, q: int) -> pd.Series:
    """The decile of each rank (1..m) by the rule of pd.qcut(ranks, q) in exact arithmetic:
    r in group k when (m - 1) k / q < r - 1 <= (m - 1) (k + 1) / q."""
    m = len(ranks)
    r = ranks.to_numpy(dtype=np.int64)
    if m == 1:
        return pd.Series(np.zeros(1, dtype=np.int64), index=ranks.index)
    deciles = np.maximum(-((-(r - 1) * q) // (m - 1)) - 1, 0)  # ceil((r-1)q/(m-1)) - 1
    return pd.Series(deciles, index=ranks.index)


@pytest.mark.parametrize("q", [1, 2, 3, 7, 10])
def test_decile_ends_follow_qcut_of_ranks(q):
    differs = []
    for m in range(q, 400):
        ranks = pd.Series(np.arange(1, m + 1, dtype=float))
        sizes = np.diff(np.r_[0, chart_summaries.decile_ends(m, q)])
        exact = np.bincount(_exact_deciles(ranks, q), minlength=q)
        np.testing.assert_array_equal(sizes, exact)
        assert sizes.sum() == m and (sizes > 0).all()
        qcut = np.bincount(pd.qcut(ranks, q, labels=False), minlength=q)
        on_boundary = any((m - 1) * k % q == 0 for k in range(1, q))
        if not on_boundary:
            np.testing.assert_array_equal(sizes, qcut)  # the same groups as pandas
        elif not (sizes == qcut).all():
            differs.append(m)
    # pandas' floating-point quantiles move a rank sitting exactly on a boundary: only there
    assert q in (1, 2) or differs


def _scores_frame(n: int, seed: int, ties: bool) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    score = rng.random(n)
    return pd.DataFrame(
        {
            "risk_score": score.round(2) if ties else score,
            "not_fully_recovered": outcome_flags(
                np.where(rng.random(n) < 0.1, np.nan, (rng.random(n) < score) * 1.0)
            ),
            "score_source": rng.choice(["out_of_fold", "test", "train"], n),
        }
    )


def _expected_deciles(scores: pd.DataFrame, q: int = 10) -> pd.DataFrame:
    held = scores[
        scores["score_source"].isin(["out_of_fold", "test"]) & scores["not_fully_recovered"].notna()
    ]
    decile = _exact_deciles(held["risk_score"].rank(method="first"), q)
    return held.groupby(decile).agg(
        predicted=("risk_score", "mean"), observed=("not_fully_recovered", "mean")
    )


@pytest.mark.parametrize("ties", [False, True])
def test_calibration_points_are_the_decile_means(ties):
    scores = _scores_frame(5_000, seed=4, ties=ties)
    expected = _expected_deciles(scores)
    line = charts.calibration_curve(scores).axes[0].get_lines()[1]
    np.testing.assert_allclose(line.get_xdata(), expected["predicted"], rtol=1e-12, atol=0)
    np.testing.assert_allclose(line.get_ydata(), expected["observed"], rtol=1e-12, atol=0)


def test_calibration_deciles_split_in_proportion_beyond_the_row_limit(monkeypatch):
    """Beyond BOUNDARY_ROW_LIMIT rows in the bins a decile boundary splits, those bins are
    shared in proportion: each decile keeps its size, a tied bin's score exactly, and the
    outcome rate moves by at most the share of the bin's rows that changed sides."""
    scores = _scores_frame(5_000, seed=4, ties=True)
    expected = _expected_deciles(scores)
    binned = chart_summaries.score_bins(scores)
    exact = chart_summaries.decile_means(binned, 10, _rows(scores, binned))
    monkeypatch.setattr(chart_summaries, "BOUNDARY_ROW_LIMIT", 0)
    line = charts.calibration_curve(scores).axes[0].get_lines()[1]
    shared = chart_summaries.decile_means(binned, 10, None)
    np.testing.assert_allclose(line.get_xdata(), shared["predicted"], rtol=0, atol=0)
    np.testing.assert_array_equal(shared["n"], exact["n"])
    np.testing.assert_allclose(shared["predicted"], expected["predicted"], rtol=1e-12)
    assert not np.allclose(shared["observed"], expected["observed"], rtol=1e-12)
    np.testing.assert_allclose(shared["observed"], expected["observed"], atol=0.05)


def _rows(scores: pd.DataFrame, binned) -> np.ndarray:
    split = chart_summaries._split_bins(
        binned.counts, chart_summaries.decile_ends(int(binned.counts.sum()), 10)
    )
    return chart_summaries.score_rows(scores, split)


def test_calibration_accepts_nullable_and_missing_scores():
    scores = _scores_frame(400, seed=9, ties=False)
    scores["risk_score"] = scores["risk_score"].astype("Float64").mask(scores.index % 13 == 0)
    held = (
        scores["score_source"].isin(["out_of_fold", "test"]) & scores["not_fully_recovered"].notna()
    )
    fig = charts.calibration_curve(scores)
    line = fig.axes[0].get_lines()[1]
    assert line.get_label().startswith(f"held-out scores ({int(held.sum()):,} borrowers, 10 bins")
    scored = scores[held & scores["risk_score"].notna()].astype({"risk_score": float})
    expected = _expected_deciles(scored)
    np.testing.assert_allclose(line.get_xdata(), expected["predicted"], rtol=1e-12)
    bars = [b.get_height() for b in fig.axes[1].patches]
    assert sum(bars) == len(scored)


# --------------------------------------------------------------------------------------------
# Outcome counts
# --------------------------------------------------------------------------------------------


def _groupby_counts(missed: pd.Series, status: pd.Series) -> pd.DataFrame:
    levels = list(status.cat.categories)
    return (
        pd.DataFrame({"missed": missed, "status": status})
        .dropna(subset=["missed"])
        .groupby(["missed", "status"], observed=True)
        .size()
        .unstack("status", fill_value=0)
        .reindex(columns=levels, fill_value=0)
        .sort_index()
    )


@pytest.mark.parametrize("missed_kind", ["int64", "float_gaps", "Int64_gaps"])
def test_missed_outcome_table_equals_groupby(loans, missed_kind):
    missed = loans["Num_Missed_Payments"]
    gaps = np.arange(len(loans)) % 11 == 0
    if missed_kind == "float_gaps":
        missed = missed.astype(float).mask(gaps)
    elif missed_kind == "Int64_gaps":
        missed = missed.astype("Int64").mask(gaps)
    # a level seen only where the missed count is missing still gets its (zero) column
    raw = loans["Recovery_Status"].astype(object).where(~gaps | (missed_kind == "int64"), "Odd")
    frame = pd.DataFrame({"Num_Missed_Payments": missed, "Recovery_Status": raw})
    cells = chart_summaries.missed_outcome_counts(frame)
    levels = book_charts._levels(
        {s for _, s in cells}, chart_style.STATUS_ORDER, chart_summaries.OPEN_LABEL
    )
    assert levels == [*chart_style.STATUS_ORDER, *(["Odd"] if missed_kind != "int64" else [])] + [
        chart_summaries.OPEN_LABEL
    ]
    status = pd.Categorical(raw.fillna(chart_summaries.OPEN_LABEL), categories=levels)
    expected = _groupby_counts(missed, pd.Series(status, index=loans.index))
    expected.index = expected.index.astype(float)
    pd.testing.assert_frame_equal(chart_summaries.missed_outcome_table(cells, levels), expected)
    assert sum(n for (m, _), n in cells.items() if m is None) == int(missed.isna().sum())


def test_missed_outcome_table_without_any_count(loans):
    frame = loans.assign(Num_Missed_Payments=np.nan)
    cells = chart_summaries.missed_outcome_counts(frame)
    levels = book_charts._levels(
        {s for _, s in cells}, chart_style.STATUS_ORDER, chart_summaries.OPEN_LABEL
    )
    table = chart_summaries.missed_outcome_table(cells, levels)
    assert table.shape == (0, len(levels)) and list(table.columns) == levels
    assert sum(cells.values()) == len(loans)


@pytest.mark.parametrize(
    "values",
    [
        pd.Series(["Written Off", None, "Fully Recovered", "Odd"], dtype="string[pyarrow]"),
        pd.Series(pd.Categorical(["Written Off", None], categories=["Unused", "Written Off"])),
        pd.Series(pd.Categorical(["Written Off"] * 3, categories=["Written Off"])),
        pd.Series(pd.Categorical([None, None], categories=["Fully Recovered"])),
        pd.Series(["Open (no outcome)", None, "Written Off"], dtype=object),
        pd.Series([1, 2, 2]).astype("category"),
        pd.Series([], dtype="category"),
    ],
)
def test_label_codes_give_each_row_its_text(values):
    codes, labels = label_codes(values, chart_summaries.OPEN_LABEL)
    expected = [chart_summaries.OPEN_LABEL if pd.isna(v) else str(v) for v in values.astype(object)]
    assert [labels[c] for c in codes] == expected
    assert labels == sorted(set(labels)) and chart_summaries.OPEN_LABEL in labels


def test_add_elementwise_adds_arrays_and_dicts_of_arrays_in_order():
    from loan_pipeline.core.summaries import add_elementwise

    first = np.array([1, 2, 3], dtype="int64")
    parts = [first, np.array([10, 20, 30]), np.array([100, 200, 300])]
    total = add_elementwise(parts)
    assert total.tolist() == [111, 222, 333] and total.dtype == np.int64
    assert first.tolist() == [1, 2, 3]  # a new array: the parts are left as they are
    floats = [np.array([1e16]), np.array([1.0]), np.array([1.0])]
    assert add_elementwise(floats)[0] == (1e16 + 1.0) + 1.0  # left to right, as before
    dicts = [{"a": np.ones((2, 2)), "b": np.array([1])}, {"a": np.ones((2, 2)), "b": np.array([2])}]
    merged = add_elementwise(dicts)
    assert merged["a"].tolist() == [[2.0, 2.0], [2.0, 2.0]] and merged["b"].tolist() == [3]
