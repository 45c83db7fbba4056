"""Charts drawn from aggregates merged over partitions: the same numbers and the same PNG as
from the whole table.

The pure tests split a frame into pieces and check that merging the pieces' summaries gives the
whole frame's summary. The cluster tests (``dask_cluster``: a LocalCluster on 127.0.0.1) hand
``core.charts.draw`` Dask frames of several partitions and compare with the pandas path.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from loan_pipeline.core import chart_summaries, charts, summaries
from loan_pipeline.core.chart_registry import TABLE_CHARTS
from loan_pipeline.core.partitions import summarise, take_positions
from loan_pipeline.core.scoring import outcome_flags
from loan_pipeline_tests.conftest import SAMPLE_CSV
from loan_pipeline_tests.core.test_charts import income_segments, synthetic_loans

PARTITIONS = 5


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _scores(loans: pd.DataFrame, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = len(loans)
    score = rng.random(n)
    score[: n // 3] = score[: n // 3].round(2)  # a third tied, as rounded scores would be
    return pd.DataFrame(
        {
            "Borrower_ID": loans["Borrower_ID"].astype(str).to_numpy(),
            "risk_score": score,
            "not_fully_recovered": outcome_flags(
                np.where(rng.random(n) < 0.1, np.nan, (rng.random(n) < score) * 1.0)
            ),
            "score_source": rng.choice(["out_of_fold", "test", "train", "open"], n),
        }
    )


def _gappy_book(n: int = 30_000, seed: int = 8) -> dict[str, pd.DataFrame]:
    """More rows than SAMPLE_LIMIT (so the sample and the hexbin are exercised), with missing
    values in every charted column, an unexpected outcome, and unsegmented borrowers."""
    loans = synthetic_loans(n, seed=seed, open_share=0.1)
    rng = np.random.default_rng(seed)

    def gaps(share: float) -> np.ndarray:
        return rng.random(n) < share

    loans["Loan_Amount"] = loans["Loan_Amount"].astype(float).mask(gaps(0.02))
    loans["Monthly_Income"] = loans["Monthly_Income"].astype(float).mask(gaps(0.03))
    loans["Age"] = loans["Age"].astype(float).mask(gaps(0.05))
    loans["Num_Missed_Payments"] = loans["Num_Missed_Payments"].astype("Int64").mask(gaps(0.04))
    loans["Payment_History"] = loans["Payment_History"].mask(gaps(0.02))
    status = loans["Recovery_Status"].astype(object)
    status[gaps(0.01)] = "Odd"
    loans["Recovery_Status"] = status.astype("category")
    segments = income_segments(loans.assign(Monthly_Income=loans["Monthly_Income"].fillna(0)))
    gone = gaps(0.01)
    segments.loc[gone, "Borrower_ID"] = "gone_" + segments.loc[gone, "Borrower_ID"]
    return {"loans": loans, "segments": segments, "scores": _scores(loans, seed)}


def _sample_book() -> dict[str, pd.DataFrame]:
    loans = pd.read_csv(SAMPLE_CSV)
    return {"loans": loans, "segments": income_segments(loans), "scores": _scores(loans, 3)}


BOOKS = {"sample": _sample_book, "gappy": _gappy_book}


@pytest.fixture(scope="module", params=list(BOOKS))
def book(request) -> dict[str, pd.DataFrame]:
    return BOOKS[request.param]()


def _pieces(frame: pd.DataFrame, n: int = PARTITIONS) -> list[pd.DataFrame]:
    return [frame.iloc[rows] for rows in np.array_split(np.arange(len(frame)), n)]


def _merged(partial, merge, frame: pd.DataFrame, *args):
    return merge([partial(piece, *args) for piece in _pieces(frame)])


def _assert_moments_equal(got: summaries.CoMoments, whole: summaries.CoMoments):
    assert got.columns == whole.columns and got.rows == whole.rows
    np.testing.assert_array_equal(got.n, whole.n)
    pd.testing.assert_frame_equal(
        summaries.pearson(got), summaries.pearson(whole), atol=1e-12, rtol=0
    )
    np.testing.assert_allclose(got.mean, whole.mean, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(got.m2, whole.m2, rtol=1e-10, atol=1e-6)


# --------------------------------------------------------------------------------------------
# Pure: the merge of the pieces' summaries is the whole's summary
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "summary",
    [
        chart_summaries.outcome_counts,
        chart_summaries.history_outcome_counts,
        chart_summaries.missed_outcome_counts,
    ],
)
def test_counts_of_pieces_add_up_to_the_whole(book, summary):
    whole = summary(book["loans"])
    assert _merged(summary, summaries.add_counts, book["loans"]) == whole
    assert sum(whole.values()) == len(book["loans"])


def test_moments_of_pieces_merge_to_the_whole(book):
    loans = book["loans"]
    whole = chart_summaries.numeric_moments(loans)
    _assert_moments_equal(
        _merged(chart_summaries.numeric_moments, summaries.merge_co_moments, loans), whole
    )
    expected = loans[list(whole.columns)].corr()
    pd.testing.assert_frame_equal(summaries.pearson(whole), expected, atol=1e-12, rtol=0)


def test_a_constant_column_stays_uncorrelated_across_pieces():
    frame = pd.DataFrame({"a": np.arange(10.0), "b": np.full(10, 0.1), "c": np.r_[[0.3] * 9, 1]})
    merged = _merged(summaries.co_moments, summaries.merge_co_moments, frame, ["a", "b", "c"])
    corr = summaries.pearson(merged)
    assert np.isnan(corr.loc["a", "b"]) and np.isnan(corr.loc["b", "b"])
    assert corr.loc["a", "c"] == pytest.approx(frame["a"].corr(frame["c"]), abs=1e-12)
    assert (merged.m2[1] == 0).all()  # exactly: 0.1 ten times, in pieces, has no spread


def test_loan_amount_bins_of_pieces_add_up(book):
    loans = book["loans"]
    extents = chart_summaries.amount_extents(loans)
    merged = _merged(chart_summaries.amount_extents, chart_summaries.merge_amount_extents, loans)
    for name in ("amounts", "income", "pair_amounts"):
        assert merged[name] == extents[name]
    _assert_moments_equal(merged["moments"], extents["moments"])
    plan = chart_summaries._amount_bins_plan(extents, np.array([1.0, 2.0, 5.0]))
    whole = chart_summaries.amount_bins(loans, plan)
    pieces = _merged(chart_summaries.amount_bins, chart_summaries.merge_amount_bins, loans, plan)
    np.testing.assert_array_equal(pieces["histogram"], whole["histogram"])
    amounts = loans["Loan_Amount"].to_numpy(dtype=float, na_value=np.nan)
    finite = amounts[np.isfinite(amounts)]
    expected = np.histogram(finite, bins=plan.bins, range=plan.range)[0]
    np.testing.assert_array_equal(whole["histogram"], expected)
    # round edges that just cover the amounts: every amount counted, at most a bin to spare
    assert whole["histogram"].sum() == len(finite)
    assert plan.range[0] <= finite.min() < plan.range[0] + plan.width
    assert plan.range[1] - plan.width < finite.max() <= plan.range[1]
    key = "hexagons" if plan.hexagons is not None else "pairs"
    assert (plan.hexagons is not None) == (len(loans) > chart_summaries.SAMPLE_LIMIT)
    np.testing.assert_array_equal(pieces[key], whole[key])


def test_hexagon_counts_are_what_hexbin_counts():
    rng = np.random.default_rng(1)
    x, y = rng.lognormal(11, 0.5, 50_000), rng.normal(1e6, 3e5, 50_000)
    hex_extent = chart_summaries._hexagon_extent(summaries.extent(x), summaries.extent(y))
    counts = chart_summaries.hexagon_counts(x, y, hex_extent)
    assert counts.sum() == len(x)
    hexes = plt.gca().hexbin(x, y, gridsize=chart_summaries.HEX_GRIDSIZE, mincnt=1)
    np.testing.assert_array_equal(counts[counts > 0], hexes.get_array())
    centres = chart_summaries.hexagon_centres(hex_extent)[counts > 0]
    np.testing.assert_array_equal(centres, hexes.get_offsets())


def test_score_bins_of_pieces_add_up(book):
    scores = book["scores"]
    whole = chart_summaries.score_bins(scores)
    merged = _merged(chart_summaries.score_bins, chart_summaries.merge_score_bins, scores)
    assert merged.held_out == whole.held_out
    for field in ("counts", "histogram"):
        np.testing.assert_array_equal(getattr(merged, field), getattr(whole, field))
    for field in ("score_sums", "observed_sums"):
        np.testing.assert_allclose(getattr(merged, field), getattr(whole, field), rtol=1e-12)
    split = chart_summaries._split_bins(
        whole.counts, chart_summaries.decile_ends(int(whole.counts.sum()), 10)
    )
    # with a third of the scores tied, the deciles' boundaries fall inside bins: their rows
    # are fetched to place them
    assert len(split) or len(scores) < 1_000
    rows = chart_summaries.score_rows(scores, split)
    np.testing.assert_array_equal(
        _merged(chart_summaries.score_rows, np.concatenate, scores, split), rows
    )
    pd.testing.assert_frame_equal(
        chart_summaries.decile_means(merged, 10, rows),
        chart_summaries.decile_means(whole, 10, rows),
    )


def test_segment_summaries_of_pieces_add_up(book):
    rows = chart_summaries.segment_rows(book["loans"], book["segments"])
    pieces = [
        chart_summaries.segment_rows(loans, segments)
        for loans, segments in zip(_pieces(book["loans"]), _pieces(book["segments"]), strict=True)
    ]
    sizes = chart_summaries.segment_sizes(rows)
    assert summaries.add_counts(chart_summaries.segment_sizes(p) for p in pieces) == sizes
    expected = rows["segment_name"].astype(str).value_counts().to_dict()
    assert sizes == expected
    assert chart_summaries.segment_order(
        [chart_summaries.segment_labels(p) for p in _pieces(book["segments"])]
    ) == chart_summaries.segment_order([chart_summaries.segment_labels(book["segments"])])


# --------------------------------------------------------------------------------------------
# On a Dask cluster: the same summaries, samples and PNGs as the pandas path
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client(dask_cluster):
    from loan_pipeline.cluster import client_for

    return client_for(dask_cluster.scheduler_address)


@pytest.fixture(scope="module")
def partitioned(book, client) -> dict:
    import dask.dataframe as dd

    frames = {
        name: dd.from_pandas(frame, npartitions=PARTITIONS, sort=False)
        for name, frame in book.items()
    }
    assert all(f.npartitions == PARTITIONS for f in frames.values())
    return frames


def test_summaries_on_the_cluster_equal_the_local_ones(book, partitioned):
    local = chart_summaries.book_summaries(book["loans"], chart_summaries.SUMMARIES)
    cluster = chart_summaries.book_summaries(partitioned["loans"], chart_summaries.SUMMARIES)
    assert cluster["rows"] == local["rows"] == len(book["loans"])
    for name in ("outcomes", "history_outcomes", "missed_outcomes"):
        assert cluster[name] == local[name], name
    _assert_moments_equal(cluster["numeric"], local["numeric"])
    for name in ("amounts", "income", "pair_amounts"):
        assert cluster["amount_extents"][name] == local["amount_extents"][name]
    _assert_moments_equal(cluster["amount_extents"]["moments"], local["amount_extents"]["moments"])

    plan = chart_summaries._amount_bins_plan(local["amount_extents"], np.array([1.0, 9.0]))
    binned = [
        summarise(chart_summaries.amount_bins, chart_summaries.merge_amount_bins, f, plan)
        for f in (book["loans"], partitioned["loans"])
    ]
    for key in binned[0]:
        np.testing.assert_array_equal(binned[1][key], binned[0][key])

    scores = [
        summarise(chart_summaries.score_bins, chart_summaries.merge_score_bins, f)
        for f in (book["scores"], partitioned["scores"])
    ]
    np.testing.assert_array_equal(scores[1].counts, scores[0].counts)
    np.testing.assert_array_equal(scores[1].histogram, scores[0].histogram)


def test_the_sample_is_the_same_rows_on_the_cluster(book, partitioned):
    positions = chart_summaries.sample_positions(len(book["loans"]))
    columns = ["Borrower_ID", "Monthly_Income", "Loan_Amount"]
    local = take_positions(book["loans"][columns], positions)
    cluster = take_positions(partitioned["loans"][columns], positions)
    assert len(cluster) == min(len(book["loans"]), chart_summaries.SAMPLE_LIMIT)
    assert cluster["Borrower_ID"].astype(str).tolist() == local["Borrower_ID"].tolist()
    np.testing.assert_array_equal(
        cluster["Loan_Amount"].to_numpy(dtype=float, na_value=np.nan),
        local["Loan_Amount"].to_numpy(dtype=float, na_value=np.nan),
    )


def test_the_cluster_draws_the_same_pngs(book, partitioned, monkeypatch):
    def pngs(tables: dict) -> dict[str, bytes]:
        return {
            key: charts.figure_to_png(fig)
            for key, fig in charts.draw(
                TABLE_CHARTS,
                {
                    "validated_loans": tables["loans"],
                    "borrower_segments": tables["segments"],
                    "risk_scores": tables["scores"],
                },
            )
        }

    local = pngs(book)

    def whole(*args, **kwargs):
        raise AssertionError("a whole table or column was computed into this process")

    import dask.dataframe as dd

    for collection in (dd.DataFrame, dd.Series):  # only summaries and samples may come back
        monkeypatch.setattr(collection, "compute", whole)
    cluster = pngs(partitioned)
    assert list(cluster) == list(local) == TABLE_CHARTS
    for key in TABLE_CHARTS:
        assert cluster[key] == local[key], f"{key}: the cluster's PNG differs from the local one"
    assert len(set(local.values())) == len(local)


def test_draw_charts_asks_for_its_tables_in_partitions():
    from dagster import build_input_context

    from loan_pipeline.assets.charts import draw_charts
    from loan_pipeline.io.handoff import wanted_columns, wants_partitions

    for name in ("validated_loans", "borrower_segments", "risk_scores"):
        context = build_input_context(name=name, op_def=draw_charts.op)
        assert wants_partitions(context), name
        assert wanted_columns(context), name
    model = build_input_context(name="cluster_model", op_def=draw_charts.op)
    assert not wants_partitions(model)
