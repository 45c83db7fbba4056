"""The asset graph on a real Dask cluster (``distributed.LocalCluster``: a scheduler in this
process and two worker processes, every server on 127.0.0.1) against the same graph run
locally: the same tables, the per-borrower work done by the workers, datasets replaced whole,
and a worker killed mid-run leaving the last good outputs in place."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from loan_pipeline.assets.history import ARREARS_COLUMNS
from loan_pipeline.core.chart_registry import KEYS as CHART_KEYS
from loan_pipeline.domain import BUCKET_COLUMN
from loan_pipeline_tests.conftest import (
    SAMPLE_CSV,
    environment,
    loopback_cluster,
    run_pipeline,
)

distributed = pytest.importorskip("distributed")

# Samples smaller than the book, so that drawing them across partitions is exercised.
# On the cluster, the sample (70 kB) is read in blocks of 16 kB: five partitions.
SAMPLES = {
    "ops": {"cluster_model": {"config": {"selection_sample": 200, "fit_sample": 300}}},
    "resources": {"dask": {"config": {"block_mb": 16 / 1024}}},
}
# The main local and cluster runs rank a worklist under capacities (on the cluster a global rank
# from the partitions' offers); the others keep the default score bands.
CAPACITY = {
    "ops": {
        **SAMPLES["ops"],
        "recovery_strategies": {
            "config": {"assignment": "capacity", "legal_capacity": 40, "settlement_capacity": 90}
        },
    },
    "resources": SAMPLES["resources"],
}
# Tables made per borrower: on the cluster they are partitioned datasets.
PER_BORROWER = ["scaled_features", "borrower_segments", "risk_scores", "recovery_strategies"]
INGESTED = ["raw_loans", "validated_loans", "quarantined_loans"]


@pytest.fixture(scope="module")
def cluster(dask_cluster):
    return dask_cluster


@pytest.fixture(scope="module")
def fragile_cluster():
    """A cluster of its own for the tests that kill workers (so no other test shares a cluster
    whose workers were killed), where a task that kills its worker twice is given up."""
    import dask

    with (
        dask.config.set({"distributed.scheduler.allowed-failures": 1}),
        loopback_cluster() as made,
    ):
        yield made


@pytest.fixture(scope="module")
def small_partitions():
    """Tables written from this process go out in several partitions even for the sample."""
    import loan_pipeline.cluster as cluster_module

    before = cluster_module.PARTITION_BYTES
    cluster_module.PARTITION_BYTES = 16 * 1024
    yield
    cluster_module.PARTITION_BYTES = before


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    run = run_pipeline(SAMPLE_CSV, tmp_path_factory.mktemp("local"), CAPACITY)
    assert run.result.success
    return run


def _on(cluster, storage: Path):
    from loan_pipeline.cluster import client_for

    with environment(DASK_SCHEDULER_ADDRESS=cluster.scheduler_address):
        client = client_for(cluster.scheduler_address)
        with distributed.get_task_stream(client=client) as tasks:
            run = run_pipeline(SAMPLE_CSV, storage, CAPACITY)
    return run, tasks.data


@pytest.fixture(scope="module")
def dask_run(cluster, small_partitions, tmp_path_factory):
    storage = tmp_path_factory.mktemp("dask")
    run, tasks = _on(cluster, storage)
    assert run.result.success
    return run, tasks


def test_the_cluster_gives_the_same_tables_as_a_local_run(local_run, dask_run):
    run, _ = dask_run
    worklist = run.table("recovery_strategies")["worklist_rank"]
    assert sorted(worklist.dropna()) == list(range(1, 131))  # ranked across the partitions
    for table in (
        PER_BORROWER + ["segment_profiles", "fairness_report", "capacity_gains"] + INGESTED
    ):
        pd.testing.assert_frame_equal(
            run.table(table), local_run.table(table), check_dtype=False, obj=table
        )
    # the segments are fitted on the same sample rows, drawn by position across partitions
    import pickle

    local_model, dask_model = (
        pickle.loads((r.storage / "models" / "cluster_model.pkl").read_bytes())
        for r in (local_run, run)
    )
    pd.testing.assert_frame_equal(dask_model.centroids, local_model.centroids)
    assert dask_model.sizes == local_model.sizes  # counted on the workers
    assert (dask_model.names, dask_model.fit_rows) == (local_model.names, local_model.fit_rows)
    assert dask_model.fit_rows == 300 and dask_model.selection.sample_size == 200
    pd.testing.assert_frame_equal(dask_model.selection.table, local_model.selection.table)
    # the collections team's export, written a partition at a time, is the same file
    export = "exports/recovery_strategies.csv"
    assert (run.storage / export).read_bytes() == (local_run.storage / export).read_bytes()


def test_the_cluster_draws_the_same_charts_as_a_local_run(cluster, local_run, dask_run):
    # drawn from summaries merged over the partitions and a sample fetched by position
    run, tasks = dask_run
    charts = sorted(p.name for p in (local_run.storage / "charts").glob("*.png"))
    assert len(charts) == len(CHART_KEYS)
    for name in charts:
        on_cluster = (run.storage / "charts" / name).read_bytes()
        assert on_cluster == (local_run.storage / "charts" / name).read_bytes(), name
    # the summaries were computed per partition by the workers
    workers = set(cluster.scheduler_info["workers"])
    for summary in ("amount_bins", "score_bins", "segment_sizes"):
        ran = {t["worker"] for t in tasks if str(t["key"]).startswith(f"{summary}-")}
        assert ran and ran <= workers, summary


def test_per_borrower_tables_are_partitioned_datasets_with_a_view_in_the_catalog(dask_run):
    run, _ = dask_run
    metadata = run.materialized()
    run_id = run.result.run_id
    for table in PER_BORROWER:
        folder = run.storage / "current" / "tables" / table
        files = sorted(folder.glob("part.*.parquet"))
        assert len(files) == metadata[table]["partitions"].value > 1, table
        stored = pd.concat(pd.read_parquet(f) for f in files)
        assert len(stored) == metadata[table]["dagster/row_count"].value == 500
        # written by the workers into the run's own version, then published with the rest
        assert metadata[table]["location"].value == str(
            run.storage / "runs" / run_id / "tables" / table
        )
        assert len(run.table(table)) == 500  # analysts' SQL: a view in the catalog
    # small summaries are written by this process: one file
    assert len(list((run.storage / "current" / "tables" / "segment_profiles").glob("*"))) == 1


def test_the_per_borrower_work_ran_on_the_workers(cluster, dask_run):
    _, tasks = dask_run
    workers = set(cluster.scheduler_info["workers"])
    ran: dict[str, set[str]] = {}
    for task in tasks:
        ran.setdefault(str(task["key"]), set()).add(task["worker"])
    # each step's last per-partition function (Dask fuses a step's chain into one task per
    # partition, named after it): the schema check of its table
    by_step = {
        table: {w for key, ws in ran.items() if f"validate_{table}" in key for w in ws}
        for table in PER_BORROWER
    }
    by_step["writes"] = {w for key, ws in ran.items() if "toparquetdata" in key for w in ws}
    # the risk model: counts, sample candidates and the out-of-fold evaluation per partition
    # (its fits, on the drawn sample, are in this process)
    for step in ("class_counts", "drawn_rows", "evaluation_counts"):
        by_step[step] = {w for key, ws in ran.items() if key.startswith(step) for w in ws}
    # the summaries read from those tables: fairness_report, segment_profiles and the
    # population-stability profile's histograms, counted a partition at a time
    for summary in ("fairness_counts", "profile_sums", "narrow"):
        by_step[summary] = {w for key, ws in ran.items() if summary in key for w in ws}
    prefixes = sorted({key.split("-")[0] for key in ran})
    for name, on in by_step.items():
        assert on, f"no task of {name} in the task stream: {prefixes}"
        assert on <= workers, name
    # both workers took part
    assert set().union(*by_step.values()) == workers


SCORING = ("scores_of",)


class _KillWorkerOn(distributed.WorkerPlugin):
    """Kills the worker process (as a crash would) when it starts a task whose key contains
    one of ``names``: once if ``marker`` names a file (deleted as it fires), else every time."""

    def __init__(self, names: tuple[str, ...], marker: str | None = None):
        self.names, self.marker = names, marker

    def setup(self, worker):
        self.worker = worker

    def transition(self, key, start, finish, **kwargs):
        # a task of the scoring function (its own, or one it is fused into)
        if finish != "executing" or not any(n in str(key) for n in self.names):
            return
        if self.marker is not None:
            try:
                os.unlink(self.marker)
            except FileNotFoundError:
                return
        os._exit(1)


def _killing(cluster, plugin, name):
    from loan_pipeline.cluster import client_for

    client = client_for(cluster.scheduler_address)
    client.register_plugin(plugin, name=name)
    return client


@pytest.fixture(scope="module")
def versions(tmp_path_factory):
    """The storage the runs on the fragile cluster share, one run after another."""
    return tmp_path_factory.mktemp("versions")


@pytest.fixture(scope="module")
def first_version(fragile_cluster, small_partitions, versions):
    run, _ = _on(fragile_cluster, versions)
    assert run.result.success
    return run


@pytest.fixture(scope="module")
def killed_once(fragile_cluster, small_partitions, first_version, versions, tmp_path_factory):
    """The next run on the same storage, during which a worker is killed once (as it starts
    scoring a partition): ``(run, whether a worker was killed, the client)``."""
    marker = tmp_path_factory.mktemp("kill") / "kill-once"
    marker.touch()
    client = _killing(fragile_cluster, _KillWorkerOn(SCORING, str(marker)), "kill-once")
    try:
        run, _ = _on(fragile_cluster, versions)
    finally:
        client.unregister_worker_plugin("kill-once")
    return run, not marker.exists(), client


@pytest.mark.timeout(300)
def test_a_worker_killed_once_is_replaced_and_the_run_completes(killed_once, local_run):
    run, killed, client = killed_once
    assert killed, "no worker was killed"
    assert run.result.success
    pd.testing.assert_frame_equal(
        run.table("risk_scores"), local_run.table("risk_scores"), check_dtype=False
    )
    client.wait_for_workers(2, timeout=60)
    # the replacement runs pandas as every worker does, with copy-on-write (cluster.py)
    modes = client.run(lambda: __import__("pandas").get_option("mode.copy_on_write"))
    assert len(modes) == 2 and set(modes.values()) == {True}, modes


@pytest.mark.timeout(300)
def test_each_run_publishes_a_new_version_and_keeps_the_previous(
    first_version, killed_once, versions
):
    # the second run is the one that lost a worker: it completes, so it publishes
    second, _, _ = killed_once
    assert first_version.result.success and second.result.success
    assert (versions / "current").resolve().name == second.result.run_id
    runs = versions / "runs"
    v1, v2 = (runs / r.result.run_id / "tables" / "risk_scores" for r in (first_version, second))
    pd.testing.assert_frame_equal(pd.read_parquet(v1), pd.read_parquet(v2), check_dtype=False)


@pytest.mark.timeout(300)
def test_a_worker_killed_every_time_fails_the_run_and_keeps_the_last_outputs(
    killed_once, versions, small_partitions
):
    from loan_pipeline_tests.conftest import published_files

    good, _, _ = killed_once
    assert good.result.success
    published = published_files(versions)
    before = {t: good.table(t) for t in PER_BORROWER}
    # the failing run on a cluster of its own, as a new run would be: the good runs' process
    # still holds some of their collections (Dask caches expressions), whose tasks the cluster
    # would otherwise recompute as the killed workers lose them, tangling the runs
    import dask

    with (
        dask.config.set({"distributed.scheduler.allowed-failures": 1}),
        loopback_cluster() as fresh,
    ):
        client = _killing(fresh, _KillWorkerOn(SCORING), "kill-always")
        failed, _ = _on(fresh, versions)
        client.wait_for_workers(2, timeout=60)
        client.close()
    assert not failed.result.success
    failures = failed.result.get_step_failure_events()
    assert [e.step_key for e in failures] == ["risk_scores"]
    assert "KilledWorker" in str(failures[0].step_failure_data.error)
    # the last good outputs stay published and readable
    assert published_files(versions) == published
    for table, frame in before.items():
        pd.testing.assert_frame_equal(failed.table(table), frame, obj=table)


def _messy_book(path: Path, bad_ages: int = 1) -> Path:
    """The sample with a BOM, CRLF line ends, blank lines, a padded category, bad ages on the
    first ``bad_ages`` rows and a Loan_ID repeated far from its first use (another block)."""
    from loan_pipeline_tests.test_contracts import FEMALE, cell, edited, joined

    changes = {(n, "Age"): "150" for n in range(2, 2 + bad_ages)}
    changes |= {(480, "Loan_ID"): cell(3, "Loan_ID"), (FEMALE, "Gender"): " FEMALE "}
    path.write_text("\ufeff" + joined(edited(changes), "\r\n") + "\r\n\r\n")
    return path


@pytest.fixture(scope="module")
def messy_runs(cluster, small_partitions, tmp_path_factory):
    """The messy book run here and on the cluster: ``(local, on the cluster, its folder)``."""
    folder = tmp_path_factory.mktemp("messy")
    book = _messy_book(folder / "messy.csv")
    local = run_pipeline(book, folder / "local", SAMPLES)
    with environment(DASK_SCHEDULER_ADDRESS=cluster.scheduler_address):
        on_cluster = run_pipeline(book, folder / "dask", SAMPLES)
    return local, on_cluster, folder


def test_a_messy_book_read_in_blocks_on_the_cluster_sets_aside_the_same_rows(messy_runs):
    local, on_cluster, _ = messy_runs
    assert local.result.success and on_cluster.result.success
    quarantine = on_cluster.table("quarantined_loans")
    assert sorted(quarantine["source_line"]) == [2, 480]  # the repeat: across blocks
    for table in INGESTED + ["recovery_strategies"]:
        pd.testing.assert_frame_equal(
            on_cluster.table(table), local.table(table), check_dtype=False, obj=table
        )
    meta = on_cluster.materialized()
    assert meta["validated_loans"]["partitions"].value > 1
    assert meta["quarantined_loans"]["quarantined_rows"].value == 2
    assert (
        meta["raw_loans"]["blank_lines"].value
        == local.materialized()["raw_loans"]["blank_lines"].value
    )


def test_too_many_bad_rows_on_the_cluster_fail_like_a_local_run_and_keep_the_outputs(
    cluster, messy_runs, tmp_path
):
    # the refused book goes to the storage the messy book's cluster run published to
    _, good, _ = messy_runs
    assert good.result.success
    pointer = good.storage / "current"
    version, before = pointer.resolve(), good.table("validated_loans")
    bad = _messy_book(tmp_path / "bad.csv", bad_ages=60)
    with environment(DASK_SCHEDULER_ADDRESS=cluster.scheduler_address):
        failed = run_pipeline(bad, good.storage, SAMPLES)
    local = run_pipeline(bad, tmp_path / "local", SAMPLES)
    assert not failed.result.success and not local.result.success
    (on_cluster,), (here,) = (
        [
            e.step_failure_data.user_failure_data.description
            for e in r.result.get_step_failure_events()
        ]
        for r in (failed, local)
    )
    assert on_cluster == here and "quarantine" in on_cluster
    assert pointer.resolve() == version
    pd.testing.assert_frame_equal(failed.table("validated_loans"), before)


def test_datasets_on_a_url_need_no_catalog_view(cluster, small_partitions, local_run, tmp_path):
    """Datasets at an fsspec URL (object storage in production; ``file://`` here): written in
    the run's version under that URL, complete with ``_SUCCESS``, published by reference (no
    view in the catalog), and the steps that read a dataset whole (the strategy history) read
    it from the files."""
    storage = tmp_path / "storage"
    with environment(LOAN_PIPELINE_DATASETS=f"file://{tmp_path}/bucket"):
        run, _ = _on(cluster, storage)
    assert run.result.success
    written = tmp_path / "bucket" / "runs" / run.result.run_id / "tables" / "risk_scores"
    assert (written / "_SUCCESS").exists()
    manifest = (storage / "current" / "manifest.json").read_text()
    assert f"file://{written}" in manifest
    assert "risk_scores" not in run.tables()
    history = run.table("latest_recovery_strategies").drop(
        columns=["snapshot_id", "source_file", "snapshot_time"]
    )
    # the history is written without keeping the rows' order (bounded memory): same rows, the
    # strategies' and, joined from the loan book, the arrears
    by_id = lambda frame: frame.sort_values("Borrower_ID", ignore_index=True)  # noqa: E731
    arrears = [*ARREARS_COLUMNS, BUCKET_COLUMN]
    pd.testing.assert_frame_equal(
        by_id(history.drop(columns=arrears)),
        by_id(local_run.table("recovery_strategies")),
        check_dtype=False,
    )
    book = local_run.table("validated_loans")[["Borrower_ID", *ARREARS_COLUMNS]]
    pd.testing.assert_frame_equal(
        by_id(history[["Borrower_ID", *ARREARS_COLUMNS]]), by_id(book), check_dtype=False
    )
