"""The charts' faster aggregates give what the straightforward pandas computation gives.

Each helper below replaced a pandas one-liner on the drawing path (see core/charts.py); these
tests pin the result to that one-liner, on the awkward inputs too (ties, gaps, nullable
integers, unused categories), so a chart cannot change because an aggregate got faster.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from loan_pipeline.core import charts
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
    assert charts._numeric_columns(frame) == expected


def test_cross_product_pearson_equals_pandas(loans, monkeypatch):
    monkeypatch.setattr(charts, "_PAIRWISE_MAX_ROWS", 1_000)
    columns = charts._numeric_columns(loans)
    frame = loans.assign(Constant=1.0, Count=loans["Age"].astype("Int64"))
    columns = [*columns, "Constant", "Count"]
    expected = frame[columns].corr()
    for chunk_rows in (1_000_000, 2_500):  # one chunk, and several with a short last one
        fast = charts._pearson(frame, columns, chunk_rows=chunk_rows)
        pd.testing.assert_frame_equal(fast, expected, atol=1e-12, rtol=0)
    # With gaps pairwise-complete rows differ per pair: pandas' own loop, exactly.
    gappy = frame.assign(Age=frame["Age"].astype(float).mask(np.arange(len(frame)) % 7 == 0))
    pd.testing.assert_frame_equal(
        charts._pearson(gappy, columns), gappy[columns].corr(), check_exact=True
    )


def test_heatmap_shows_the_same_numbers_on_either_path(loans, monkeypatch):
    def shown(max_rows: int):
        monkeypatch.setattr(charts, "_PAIRWISE_MAX_ROWS", max_rows)
        fig = charts.correlation_heatmap(loans)
        ax = fig.axes[0]
        return [t.get_text() for t in ax.texts], np.asarray(ax.collections[0].get_array())

    pandas_text, pandas_values = shown(len(loans))  # pandas' pairwise loop
    fast_text, fast_values = shown(1_000)  # cross products
    assert fast_text == pandas_text
    np.testing.assert_allclose(fast_values, pandas_values, atol=1e-12, rtol=0)


# --------------------------------------------------------------------------------------------
# Calibration deciles
# --------------------------------------------------------------------------------------------


def _scores(n: int, seed: int, kind: str) -> pd.Series:
    rng = np.random.default_rng(seed)
    values = rng.random(n)
    if kind == "ties":
        values = values.round(1)
    elif kind == "gaps":
        values[rng.random(n) < 0.1] = np.nan
    elif kind == "signed_zero":
        values[: n // 2] = 0.0
        values[n // 2 :: 3] = -0.0
    index = pd.RangeIndex(n) * 3 + 5  # a filtered frame's index: not 0..n-1
    return pd.Series(values, index=index, name="risk_score")


@pytest.mark.parametrize("kind", ["distinct", "ties", "gaps", "signed_zero"])
@pytest.mark.parametrize("n", [1, 7, 10, 1_003])
def test_rank_bins_equal_qcut_of_first_ranks(kind, n):
    values = _scores(n, seed=n, kind=kind)
    for q in sorted({1, min(3, n), min(10, n)}):
        expected = pd.qcut(values.rank(method="first"), q=q, labels=False)
        pd.testing.assert_series_equal(charts._rank_bins(values, q), expected, check_exact=True)


def test_calibration_points_are_the_decile_means():
    rng = np.random.default_rng(4)
    n = 5_000
    scores = pd.DataFrame(
        {
            "risk_score": rng.random(n).round(2),  # ties
            "observed": np.where(rng.random(n) < 0.1, np.nan, (rng.random(n) < 0.4) * 1.0),
            "score_source": rng.choice(["out_of_fold", "test", "train"], n),
        }
    )
    held = scores[scores["score_source"].isin(["out_of_fold", "test"]) & scores["observed"].notna()]
    decile = pd.qcut(held["risk_score"].rank(method="first"), q=10, labels=False)
    expected = held.groupby(decile).agg(
        predicted=("risk_score", "mean"), observed=("observed", "mean")
    )
    fig = charts.calibration_curve(scores)
    line = fig.axes[0].get_lines()[1]
    np.testing.assert_array_equal(line.get_xdata(), expected["predicted"].to_numpy())
    np.testing.assert_array_equal(line.get_ydata(), expected["observed"].to_numpy())


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
def test_missed_status_counts_equal_groupby(loans, missed_kind):
    missed = loans["Num_Missed_Payments"]
    gaps = np.arange(len(loans)) % 11 == 0
    if missed_kind == "float_gaps":
        missed = missed.astype(float).mask(gaps)
    elif missed_kind == "Int64_gaps":
        missed = missed.astype("Int64").mask(gaps)
    # a level seen only where the missed count is missing still gets its (zero) column
    raw = loans["Recovery_Status"].astype(object).where(~gaps | (missed_kind == "int64"), "Odd")
    status = charts._status_series(pd.DataFrame({"Recovery_Status": raw}))
    expected = _groupby_counts(missed, status)
    pd.testing.assert_frame_equal(charts._missed_status_counts(missed, status), expected)


def test_missed_status_counts_without_any_count(loans):
    status = charts._status_series(loans)
    missed = pd.Series(np.nan, index=loans.index)
    counts = charts._missed_status_counts(missed, status)
    assert counts.shape == (0, len(status.cat.categories))
    assert list(counts.columns) == list(status.cat.categories)


@pytest.mark.parametrize(
    "values",
    [
        pd.Series(["Written Off", None, "Fully Recovered", "Odd"], dtype="string[pyarrow]"),
        pd.Series(pd.Categorical(["Written Off", None], categories=["Unused", "Written Off"])),
        pd.Series(pd.Categorical(["Written Off"] * 3, categories=["Written Off"])),
        pd.Series(pd.Categorical([None, None], categories=["Fully Recovered"])),
        pd.Series([1, 2, 2]).astype("category"),
        pd.Series([], dtype="category"),
    ],
)
def test_ordered_category_shortcut_changes_nothing(values, monkeypatch):
    """Skipping remove_unused_categories when every category is used gives what always
    calling it (the shortcut disabled) gives."""
    args = (charts.STATUS_ORDER, charts.OPEN_LABEL, "Recovery_Status")
    result = charts._ordered_category(values, *args)
    monkeypatch.setattr(charts, "_all_categories_used", lambda _values: False)
    pd.testing.assert_series_equal(result, charts._ordered_category(values, *args))


def test_rank_bins_accept_nullable_floats():
    values = pd.Series([0.3, None, 0.1, 0.3, 0.9, 0.2], dtype="Float64", name="risk_score")
    for source in (values, values.dropna()):
        expected = pd.qcut(source.rank(method="first"), q=3, labels=False)
        pd.testing.assert_series_equal(charts._rank_bins(source, 3), expected, check_exact=True)
