"""The fairness report, the segment profiles and the population-stability profile from per-
partition counts, sums and histograms: the tables of a book in Dask partitions, computed on a
real cluster (``distributed.LocalCluster`` on 127.0.0.1), equal those of the same book whole;
per-partition summaries, merged, equal those of the whole; the quantiles equal numpy's."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from loan_pipeline.core import summaries
from loan_pipeline.core.monitoring import (
    FROZEN_SCORE,
    distribution_profile,
    fairness_counts,
    fairness_from_counts,
    fairness_rows,
    fairness_table,
    stability_columns,
    stability_report,
    stability_table,
)
from loan_pipeline.core.partitions import per_partition
from loan_pipeline.core.segmentation import (
    merge_profile_sums,
    profile_from_sums,
    profile_rows,
    profile_sums,
    segment_profile,
)
from loan_pipeline.domain import NOTEBOOK_FEATURES, STRATEGIES
from loan_pipeline_tests.conftest import SAMPLE_CSV

dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("distributed")

DECILES = np.linspace(0, 1, 11)[1:-1]
PARTITIONS = 5


@pytest.fixture(scope="module")
def book() -> dict[str, pd.DataFrame]:
    """The shipped sample, validated, with missing values put in (open loans, an unrecorded
    Gender and Age, missing amounts and scores), and strategies, scores and segments for it."""
    from loan_pipeline.core.ingest_records import read_loan_book
    from loan_pipeline.core.ingest_verdict import split_rows
    from loan_pipeline.settings import IngestConfig
    from loan_pipeline_tests.defaults import config_kwargs

    read = read_loan_book(SAMPLE_CSV)
    loans = split_rows(read, **config_kwargs(split_rows, IngestConfig)).valid.reset_index(drop=True)
    n = len(loans)
    rng = np.random.default_rng(11)

    def some(share: float) -> np.ndarray:
        return rng.choice(n, int(n * share), replace=False)

    loans.loc[some(0.15), "Recovery_Status"] = None
    loans.loc[some(0.05), "Gender"] = None
    loans["Age"] = loans["Age"].astype("Int64")
    loans.loc[some(0.04), "Age"] = None
    loans.loc[some(0.05), "Collateral_Value"] = np.nan
    loans.loc[some(0.03), "Monthly_EMI"] = np.nan
    strategies = pd.DataFrame(
        {
            "Borrower_ID": loans["Borrower_ID"],
            "risk_score": rng.uniform(size=n),
            "recovery_strategy": pd.array(rng.choice(STRATEGIES, n), dtype="string[pyarrow]"),
        }
    )
    strategies.loc[some(0.04), "risk_score"] = np.nan
    strategies.loc[some(0.02), "recovery_strategy"] = None
    segment = rng.integers(0, 4, n)
    names = np.array(["Low balance", "Large loan", "Many days past due", "Older"])
    segments = pd.DataFrame(
        {
            "Borrower_ID": loans["Borrower_ID"],
            "segment_id": segment,
            "segment_name": pd.array(names[segment], dtype="string[pyarrow]"),
        }
    )
    return {
        "loans": loans,
        "strategies": strategies,
        "scores": strategies[["Borrower_ID", "risk_score"]],
        "segments": segments,
    }


@pytest.fixture(scope="module")
def on_cluster(dask_cluster):
    """Dask's computations of this module run on the session's cluster."""
    from loan_pipeline.cluster import client_for

    return client_for(dask_cluster.scheduler_address)


def _partitioned(book: dict[str, pd.DataFrame]) -> dict:
    # every table cut at the same rows, as the pipeline's tables made from the book's partitions
    return {
        name: dd.from_pandas(frame, npartitions=PARTITIONS, sort=False)
        for name, frame in book.items()
    }


def _same(got: pd.DataFrame, want: pd.DataFrame) -> None:
    """Equal: counts, labels and missing values exactly, float sums to 1e-12."""
    assert list(got.columns) == list(want.columns)
    assert got.dtypes.to_dict() == want.dtypes.to_dict()
    pd.testing.assert_frame_equal(got, want, check_exact=False, rtol=1e-12, atol=1e-15)


def _a_shifted_profile(current: pd.DataFrame, factor: float) -> dict:
    """A run's profile file, as written (JSON), of a book ``factor`` times larger in every
    column."""
    shifted = current * factor
    return json.loads(json.dumps({c: distribution_profile(shifted[c]) for c in shifted}))


# --- on the cluster: a book in partitions gives the tables of the book whole ---------------------


def test_fairness_report_of_a_partitioned_book_equals_the_whole_books(book, on_cluster):
    parts = _partitioned(book)
    whole = fairness_table(book["loans"], book["strategies"])
    with distributed.get_task_stream(client=on_cluster) as tasks:
        partitioned = fairness_table(parts["loans"], parts["strategies"])
    _same(partitioned, whole)
    # every group is there, with real counts
    assert whole["group"].tolist()[:3] == ["all borrowers", "Female", "Male"]
    assert whole.loc[0, "borrowers"] == len(book["loans"])
    assert whole.loc[0, "resolved"] == book["loans"]["Recovery_Status"].notna().sum()
    assert whole.loc[1:2, "borrowers"].sum() == book["loans"]["Gender"].notna().sum()
    # counted on the workers, one task a partition
    counted = [t for t in tasks.data if "fairness_counts" in str(t["key"])]
    assert len(counted) == PARTITIONS
    assert {t["worker"] for t in counted} <= set(on_cluster.scheduler_info()["workers"])


def test_segment_profiles_of_a_partitioned_book_equal_the_whole_books(book, on_cluster):
    parts = _partitioned(book)
    whole = segment_profile(book["loans"], book["segments"], NOTEBOOK_FEATURES)
    partitioned = segment_profile(parts["loans"], parts["segments"], NOTEBOOK_FEATURES)
    _same(partitioned, whole)
    assert whole["borrowers"].sum() == len(book["loans"])
    assert whole["open_loans"].sum() == book["loans"]["Recovery_Status"].isna().sum()
    # a mean over the values present only
    first = book["segments"]["segment_id"] == whole.loc[0, "segment_id"]
    collateral = book["loans"].loc[first, "Collateral_Value"]
    assert whole.loc[0, "Collateral_Value"] == pytest.approx(collateral.mean(), rel=1e-12)
    assert collateral.isna().any()


@pytest.fixture(scope="module")
def frozen(book):
    """A risk model's scoring pipeline, fitted on the book's complete rows."""
    from loan_pipeline.core.monitoring import frozen_pipeline
    from loan_pipeline.core.risk_methods import fit_recommended_model
    from loan_pipeline.domain import RISK_NUMERIC
    from loan_pipeline.settings import RiskConfig
    from loan_pipeline_tests.defaults import config_kwargs

    complete = book["loans"].dropna(subset=RISK_NUMERIC).reset_index(drop=True)
    settings = config_kwargs(fit_recommended_model, RiskConfig, folds=2)
    return frozen_pipeline(fit_recommended_model(complete, **settings))


def test_population_stability_of_a_partitioned_book_equals_the_whole_books(
    book, frozen, on_cluster
):
    parts = _partitioned(book)
    models = {FROZEN_SCORE: frozen}
    current = stability_columns(book["loans"], book["scores"], models)
    previous, baseline = _a_shifted_profile(current, 1.05), _a_shifted_profile(current, 1.3)
    for reference in (previous, baseline):  # scored by the same frozen model
        reference[FROZEN_SCORE]["model_sha256"] = "frozen"
    digests = {FROZEN_SCORE: "frozen"}
    table, profile = stability_report(current, previous, baseline, digests)
    partitioned = per_partition(stability_columns, parts["loans"], parts["scores"], models)
    with distributed.get_task_stream(client=on_cluster) as tasks:
        dask_table, dask_profile = stability_report(partitioned, previous, baseline, digests)
    pd.testing.assert_frame_equal(dask_table, table, check_exact=True)
    assert dask_profile == profile  # the same deciles, to the bit, and the same shares
    # the frozen model scored each partition on the workers: each borrower's score, to the bit
    np.testing.assert_array_equal(
        partitioned[FROZEN_SCORE].compute().to_numpy(), current[FROZEN_SCORE].to_numpy()
    )
    assert current[FROZEN_SCORE].notna().sum() > 0.9 * len(current)
    # the profile is today's: numpy's deciles of each column, shares counted between them
    for column in current.columns:
        values = current[column].dropna().to_numpy()
        edges = np.unique(np.quantile(values, DECILES))
        assert profile[column]["edges"] == edges.tolist(), column
        counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)
        assert profile[column]["shares"] == (counts / len(values)).tolist(), column
    assert profile[FROZEN_SCORE]["model_sha256"] == "frozen"
    assert set(table["column"]) == set(current.columns)
    assert (table["psi_vs_previous"] > 0).all() and (table["psi_vs_baseline"] > 0).all()
    # the histograms and the fetched values came from the workers
    assert any("narrow" in str(t["key"]) for t in tasks.data)
    assert any("stability_columns" in str(t["key"]) for t in tasks.data)


# --- merging per-partition summaries gives the whole's ------------------------------------------


def _chunks(frame: pd.DataFrame, cuts=(0, 7, 7, 180, 333)) -> list[pd.DataFrame]:
    """The frame cut in row ranges, one of them empty."""
    bounds = [*cuts, len(frame)]
    return [frame.iloc[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def test_fairness_counts_of_chunks_add_up_to_the_whole_books(book):
    rows = fairness_rows(book["strategies"], book["loans"])
    whole = fairness_counts(rows)
    merged = summaries.sum_frames([fairness_counts(c) for c in _chunks(rows)])
    pd.testing.assert_frame_equal(
        merged.loc[whole.index], whole, check_exact=False, rtol=1e-12, atol=0
    )
    assert merged["borrowers"].dtype == "int64"
    assert merged.loc[("all", "all borrowers"), "borrowers"] == len(rows)
    _same(fairness_from_counts(merged), fairness_from_counts(whole))


def test_profile_sums_of_chunks_add_up_to_the_whole_books(book):
    rows = profile_rows(book["segments"], book["loans"], NOTEBOOK_FEATURES)
    whole = profile_sums(rows, NOTEBOOK_FEATURES)
    merged = merge_profile_sums([profile_sums(c, NOTEBOOK_FEATURES) for c in _chunks(rows)])
    assert merged[2] == whole[2] == len(rows)
    pd.testing.assert_frame_equal(
        merged[0].sort_index(), whole[0], check_exact=False, rtol=1e-12, atol=0
    )
    pd.testing.assert_series_equal(merged[1].sort_index(), whole[1], check_exact=True)
    _same(
        profile_from_sums(*merged, NOTEBOOK_FEATURES),
        profile_from_sums(*whole, NOTEBOOK_FEATURES),
    )


def test_a_segment_without_resolved_loans_has_no_outcome_mix(book):
    loans = book["loans"].copy()
    only = book["segments"]["segment_id"] == 2
    loans.loc[only, "Recovery_Status"] = None
    profile = segment_profile(loans, book["segments"], NOTEBOOK_FEATURES).set_index("segment_id")
    assert profile.loc[2, ["share_fully_recovered", "share_written_off"]].isna().all()
    assert profile.loc[2, "open_loans"] == only.sum()
    shares = profile.drop(index=2)[
        ["share_fully_recovered", "share_partially_recovered", "share_written_off"]
    ]
    np.testing.assert_allclose(shares.sum(axis=1), 1.0)


def test_bin_counts_and_ranges_of_chunks_add_up(book):
    frame = stability_columns(book["loans"], book["scores"])
    edges = {"Monthly_EMI": [1000.0, 5000.0, 20000.0], "risk_score": [0.5]}
    parts = [summaries.ranges_and_bins(c, edges) for c in _chunks(frame)]
    ranges, counts = summaries.merge_ranges_and_bins(parts)
    emi = frame["Monthly_EMI"].dropna()
    assert ranges["Monthly_EMI"].tolist() == [len(emi), emi.min(), emi.max()]
    assert counts["Monthly_EMI"].tolist() == [
        (emi < 1000).sum(),
        ((emi >= 1000) & (emi < 5000)).sum(),
        ((emi >= 5000) & (emi < 20000)).sum(),
        (emi >= 20000).sum(),
    ]
    assert counts["risk_score"].sum() == frame["risk_score"].notna().sum()


# --- exact quantiles ------------------------------------------------------------------------------


def _columns(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "normal": rng.normal(size=n),
            "heavy_tail": rng.lognormal(10, 3, n),
            "few_values": rng.integers(0, 4, n).astype(float),
            "mostly_zero": np.where(rng.random(n) < 0.85, 0.0, rng.uniform(0, 10, n)),
            "tiny": rng.normal(size=n) * 1e-300,
            "extremes": np.r_[-1.7e308, 1.7e308, rng.normal(size=n)][:n],
        }
    )
    return frame.mask(rng.random(frame.shape) < 0.05)


@pytest.mark.parametrize("n", [1, 2, 3, 10, 11, 997, 30_000])
def test_quantiles_equal_numpys_to_the_bit(n):
    frame = _columns(n, seed=n)
    got = summaries.quantiles(frame, DECILES)
    for column in frame.columns:
        values = frame[column].dropna().to_numpy()
        with np.errstate(over="ignore", invalid="ignore"):  # numpy's NaN at infinite ends
            want = np.quantile(values, DECILES) if len(values) else np.full(len(DECILES), np.nan)
        np.testing.assert_array_equal(got[column], want, err_msg=column)


def test_quantiles_narrowed_over_many_passes_of_partitions(on_cluster, monkeypatch):
    """With three bins a pass and nothing fetched, every range is narrowed down bin by bin,
    over partitions on the cluster (one of them empty), to the value itself."""
    import dask

    passes = []
    real = summaries.summarise
    monkeypatch.setattr(summaries, "summarise", lambda *a: passes.append(a[0]) or real(*a))
    frame = _columns(2_000, seed=5)
    frame.iloc[:300, 0] = 0.25  # ties across a decile
    chunks = [dask.delayed(c) for c in _chunks(frame, cuts=(0, 0, 500, 1200))]
    parts = dd.from_delayed(chunks, meta=frame.iloc[:0])
    probabilities = [0.0, 0.1, 0.5, 0.9, 1.0]
    got = summaries.quantiles(parts, probabilities, bins=3, fetch_at_most=0)
    for column in frame.columns:
        values = frame[column].dropna().to_numpy()
        np.testing.assert_array_equal(
            got[column], np.quantile(values, probabilities), err_msg=column
        )
    assert passes.count(summaries.narrow) > 10  # narrowed a third at a time
    with pytest.raises(ValueError, match="at least 3 bins"):
        summaries.quantiles(frame, probabilities, bins=2)


def test_a_column_without_values_has_an_empty_profile():
    frame = pd.DataFrame({"empty": [np.nan] * 5, "x": [1.0, 2.0, 3.0, 4.0, 5.0]})
    table, profile = stability_report(frame)
    assert profile["empty"] == {"edges": [], "shares": [1.0]}
    assert profile["x"]["edges"] == np.quantile(frame["x"], DECILES).tolist()
    assert table["status_vs_previous"].tolist() == ["no previous run"] * 2
    again = stability_table(frame, json.loads(json.dumps(profile))).set_index("column")
    assert again.loc["x", "psi_vs_previous"] == 0.0
    assert again.loc["x", "status_vs_previous"] == "stable"


# --- the assets ------------------------------------------------------------------------------------


def test_the_monitoring_assets_take_their_tables_in_partitions():
    """On a cluster, these assets get Dask frames (the IO manager collects an input into the
    Dagster process only when it is not asked for in partitions)."""
    from loan_pipeline.definitions import defs
    from loan_pipeline.io.handoff import PARTITIONED

    wanted = {
        "fairness_report": {"validated_loans", "recovery_strategies"},
        "population_stability": {"validated_loans", "risk_scores"},
        "segment_profiles": {"validated_loans", "borrower_segments"},
    }
    for asset, inputs in wanted.items():
        ins = defs.resolve_assets_def(asset).node_def.input_defs
        assert {i.name for i in ins if (i.metadata or {}).get(PARTITIONED)} == inputs, asset
