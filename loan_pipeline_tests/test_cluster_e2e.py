"""The whole graph on a 24,000-row book (about 3.3 MB, read in 1.25 MB blocks: three blocks, so
both workers take part and tables are partitioned as a large book's are; more rows than the
models are fitted on, so both fits draw their samples across the partitions as for a large
book), moved
onto real servers by configuration alone: the Dagster instance on PostgreSQL (DAGSTER_HOME
holding docs/deploy/dagster.yaml) and the heavy work on a Dask cluster (DASK_SCHEDULER_ADDRESS),
run the way ``make run`` runs it; then compared with the same book run locally."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
from dagster import DagsterEventType as E

from loan_pipeline_tests.conftest import PROJECT_ROOT, run_pipeline
from loan_pipeline_tests.servers import descendants, listening_sockets

ROWS = 24_000
BLOCK_MB = 1.25  # the run config's dask.block_mb: three blocks of this book
# KMeans (cluster_model.fit_sample) and the risk model (risk_model.max_train_rows) are fitted on
# at most this many rows: fewer than the book's
FIT_SAMPLE = 16_000
TEMPLATE = PROJECT_ROOT / "docs" / "deploy" / "dagster.yaml"


FITS = {
    "ops": {
        "cluster_model": {"config": {"fit_sample": FIT_SAMPLE}},
        "risk_model": {"config": {"max_train_rows": FIT_SAMPLE}},
    }
}


@pytest.fixture(scope="module")
def book(tmp_path_factory):
    from loan_pipeline.core.generator import write_loan_book

    book = write_loan_book(tmp_path_factory.mktemp("book") / "book.csv", rows=ROWS, seed=7)
    assert 2 * BLOCK_MB * 2**20 < book.stat().st_size <= 3 * BLOCK_MB * 2**20
    return book


@pytest.fixture(scope="module")
def local(book, tmp_path_factory):
    run = run_pipeline(book, tmp_path_factory.mktemp("local"), FITS)
    assert run.result.success
    return run


@pytest.fixture(scope="module")
def on_servers(book, dask_cluster, postgres_server, tmp_path_factory):
    """``python -m loan_pipeline run`` with the two settings, and what the servers saw."""
    from distributed import Client

    home = tmp_path_factory.mktemp("dagster_home")
    shutil.copy(TEMPLATE, home / "dagster.yaml")
    db_name = postgres_server.create_database("dask_e2e")
    storage = tmp_path_factory.mktemp("dask_e2e")
    env = {k: v for k, v in os.environ.items() if k != "LOAN_BOOK_CSV"}
    env.update(
        postgres_server.dagster_env(db_name),
        DAGSTER_HOME=str(home),
        LOAN_PIPELINE_STORAGE=str(storage),
        DASK_SCHEDULER_ADDRESS=dask_cluster.scheduler_address,
    )
    config = home / "run.yaml"
    config.write_text(
        f"resources:\n  dask:\n    config:\n      block_mb: {BLOCK_MB}\n"
        f"ops:\n  cluster_model:\n    config:\n      fit_sample: {FIT_SAMPLE}\n"
        f"  risk_model:\n    config:\n      max_train_rows: {FIT_SAMPLE}\n"
    )
    with Client(dask_cluster.scheduler_address, set_as_default=False) as client:
        started = time.time()
        client.get_task_stream(start=started)  # the scheduler records tasks from here on
        done = subprocess.run(
            [sys.executable, "-m", "loan_pipeline", "run", "--csv", str(book)]
            + ["--config", str(config)],
            env=env,
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=1200,
        )
        tasks = client.get_task_stream(start=started)
        workers = set(client.scheduler_info()["workers"])
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return {
        "home": home,
        "db": postgres_server.connect(db_name),
        "storage": storage,
        "tasks": tasks,
        "workers": workers,
    }


def _table(storage, name):
    import duckdb

    with duckdb.connect(str(storage / "warehouse.duckdb"), read_only=True) as con:
        return con.execute(f'SELECT * FROM "{name}"').df()


def test_the_run_and_its_materializations_are_in_postgresql(on_servers, local):
    cursor = on_servers["db"].cursor()
    cursor.execute("SELECT run_id, status FROM runs")
    runs = cursor.fetchall()
    assert [status for _, status in runs] == ["SUCCESS"]
    cursor.execute(
        "SELECT DISTINCT asset_key FROM event_logs WHERE dagster_event_type = %s AND run_id = %s",
        (E.ASSET_MATERIALIZATION.value, runs[0][0]),
    )
    materialized = {row[0] for row in cursor.fetchall()}
    expected = {f'["{k}"]' for k in local.materialized()}
    assert materialized == expected
    # nothing went to SQLite
    assert not list(on_servers["home"].rglob("*.db"))


def test_segments_and_scores_agree_with_the_local_run(on_servers, local):
    from sklearn.metrics import adjusted_rand_score

    storage = on_servers["storage"]
    segments = _table(storage, "borrower_segments")
    here = local.table("borrower_segments")
    assert len(segments) == len(here) > 0.9 * ROWS
    both = here.merge(segments, on="Borrower_ID", suffixes=("_local", "_dask"))
    assert len(both) == len(here)
    assert adjusted_rand_score(both["segment_id_local"], both["segment_id_dask"]) >= 0.99
    scores = local.table("risk_scores").merge(
        _table(storage, "risk_scores"), on="Borrower_ID", suffixes=("_local", "_dask")
    )
    assert len(scores) == len(here)
    for column in ("risk_score", "p_written_off"):
        difference = np.nanmax(np.abs(scores[f"{column}_local"] - scores[f"{column}_dask"]))
        assert difference <= 1e-6, column
    strategies = _table(storage, "recovery_strategies")
    assert strategies["recovery_strategy"].value_counts().to_dict() == (
        local.table("recovery_strategies")["recovery_strategy"].value_counts().to_dict()
    )


def test_the_per_borrower_work_ran_on_the_workers(on_servers):
    ran: dict[str, set[str]] = {}
    for task in on_servers["tasks"]:
        ran.setdefault(str(task["key"]), set()).add(task["worker"])
    for table in ("scaled_features", "borrower_segments", "risk_scores", "recovery_strategies"):
        on = {w for key, ws in ran.items() if f"validate_{table}" in key for w in ws}
        assert on, f"no task made {table} on the cluster"
        assert on <= on_servers["workers"], table
    assert {w for ws in ran.values() for w in ws} == on_servers["workers"]


def test_every_socket_the_test_servers_opened_listens_on_loopback(
    on_servers, dask_cluster, postgres_server
):
    # this process holds the Dask scheduler and its dashboard; the workers, their nannies and
    # PostgreSQL are its children
    sockets = listening_sockets(os.getpid())
    assert sockets and all(s.is_loopback for s in sockets), [str(s) for s in sockets]
    ports = {s.port for s in sockets}
    scheduler_port = int(dask_cluster.scheduler_address.rsplit(":", 1)[1])
    dashboard_port = int(dask_cluster.dashboard_link.split(":")[2].split("/")[0])
    assert {scheduler_port, dashboard_port, postgres_server.port} <= ports
    worker_pids = {s.pid for s in sockets} & set(descendants(os.getpid()))
    assert len(worker_pids) >= 3  # PostgreSQL, and at least the two worker processes
