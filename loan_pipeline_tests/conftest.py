"""Shared fixtures: run the real asset graph in-process into a temporary storage folder."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from dagster import DagsterInstance, ExecuteInProcessResult

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_CSV = PROJECT_ROOT / "data" / "loan_book_sample.csv"
REFERENCE_CSV = PROJECT_ROOT.parent / "shared" / "data" / "loan-recovery.csv"

# The steps run with copy-on-write (the table IO manager sets it for a run): so do the tests of
# the functions they call, whether or not an earlier test in this process ran a job.
pd.set_option("mode.copy_on_write", True)


def pytest_configure(config) -> None:
    """One result store (``settings.results_dir``) for the whole session, its test processes
    and the runs they start, as a user's runs share one in their storage: the first run of a
    book draws its charts, the later runs of the same book (the suite runs the sample about a
    hundred times) use those PNGs. test_result_store proves a kept PNG is the one drawing gives;
    test_fresh_clone draws every chart itself."""
    if hasattr(config, "workerinput") or os.environ.get("LOAN_PIPELINE_RESULTS"):
        return  # a test process of a session that made it, or the user's own
    folder = tempfile.mkdtemp(prefix="loan_pipeline_results_")
    os.environ["LOAN_PIPELINE_RESULTS"] = folder
    config.add_cleanup(lambda: shutil.rmtree(folder, ignore_errors=True))


# How `make test` shares the suite between its two processes (pytest-xdist, --dist loadfile:
# whole files, so a file's module fixtures and ordered steps stay in one process). The files
# that start a Dask cluster or a PostgreSQL server form one unit, so one process starts each
# server once. The units go out longest first (the times measured in docs/performance.md,
# "The test suite's time"), so the long ones start at once and the short ones fill in at the
# end; a file not listed comes after these, in collection order.
ON_THE_TEST_SERVERS = (
    "test_cluster_e2e.py",
    "test_dask.py",
    "test_dask_charts.py",
    "test_dask_monitoring.py",
    "test_postgres_instance.py",
)
LONGEST_FIRST = (
    *ON_THE_TEST_SERVERS,
    "test_publication.py",
    "test_ui.py",
    "test_fresh_clone.py",
    "test_cli.py",
    "test_trust.py",
    "core/test_ingest_blocks.py",
    "test_collections_over_time.py",
    "test_contracts.py",
    "test_automation.py",
    "test_snapshot_pair.py",
    "core/test_ingest_properties.py",
    "test_result_store.py",
    "core/test_ingest_bad_input.py",
    "test_assets.py",
    "test_drift.py",
)


def _test_file(nodeid: str) -> str:
    """``core/test_risk.py`` for ``loan_pipeline_tests/core/test_risk.py::test_x[1]``."""
    return nodeid.split("::", 1)[0].split("loan_pipeline_tests/", 1)[-1]


def pytest_collection_modifyitems(config, items) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(_test_file(item.nodeid), len(rank)))  # stable


@pytest.hookimpl(optionalhook=True)  # an xdist hook: plain `pytest` runs without xdist too
def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") != "loadfile":
        return None  # xdist's own
    from xdist.scheduler import LoadFileScheduling

    class LongestFirst(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            if _test_file(nodeid) in ON_THE_TEST_SERVERS:
                return "on the test servers"
            return super()._split_scope(nodeid)

    config.option.loadscopereorder = False  # the collection's order: LONGEST_FIRST
    return LongestFirst(config, log)


@contextmanager
def environment(**values: str) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@dataclass
class PipelineRun:
    result: ExecuteInProcessResult
    storage: Path
    instance: DagsterInstance

    def table(self, name: str) -> pd.DataFrame:
        with duckdb.connect(str(self.storage / "warehouse.duckdb"), read_only=True) as con:
            return con.execute(f'SELECT * FROM "{name}"').df()

    def materialized(self) -> dict:
        """Asset key -> metadata of its materialization in this run."""
        return {
            e.asset_key.to_user_string(): e.step_materialization_data.materialization.metadata
            for e in self.result.get_asset_materialization_events()
        }

    def tables(self) -> list[str]:
        with duckdb.connect(str(self.storage / "warehouse.duckdb"), read_only=True) as con:
            return sorted(r[0] for r in con.execute("SHOW TABLES").fetchall())


def published_files(storage: Path) -> dict[str, bytes]:
    """Every file of the published snapshot (what a reader sees through ``storage/current``, the
    stable paths and the catalog), by its path in the snapshot, with the catalog's snapshot id."""
    current = (storage / "current").resolve()
    files = {
        str(p.relative_to(current)): p.read_bytes()
        for p in sorted(current.rglob("*"))
        if p.is_file()
    }
    with duckdb.connect(str(storage / "warehouse.duckdb"), read_only=True) as con:
        files["catalog snapshot"] = (
            con.execute("SELECT snapshot FROM meta.published").fetchall()[0][0].encode()
        )
    return files


def run_pipeline(
    csv: Path,
    storage: Path,
    run_config: dict | None = None,
    job: str = "full_refresh",
    instance: DagsterInstance | None = None,
    method: str = "recommended",
) -> PipelineRun:
    """Materialize ``job`` in this process on ``csv``, writing under ``storage``."""
    from loan_pipeline.definitions import defs

    config = {
        "ops": {"ingest_loan_book": {"config": {"csv_path": str(csv)}}},
        "resources": {"analysis": {"config": {"method": method}}},
    }
    for resource, resource_config in (run_config or {}).get("resources", {}).items():
        config["resources"][resource] = resource_config
    for op, op_config in (run_config or {}).get("ops", {}).items():
        merged = config["ops"].setdefault(op, {"config": {}})
        merged["config"] = {**merged.get("config", {}), **op_config.get("config", {})}
    instance = instance or DagsterInstance.ephemeral()
    with environment(LOAN_PIPELINE_STORAGE=str(storage)):
        result = defs.resolve_job_def(job).execute_in_process(
            run_config=config, instance=instance, raise_on_error=False
        )
    return PipelineRun(result=result, storage=storage, instance=instance)


def require_reference() -> Path:
    if not REFERENCE_CSV.exists():
        pytest.skip(
            f"reference data set {REFERENCE_CSV} is absent (outside the project's CI setup)"
        )
    return REFERENCE_CSV


@pytest.fixture(scope="session")
def sample_run(tmp_path_factory) -> PipelineRun:
    run = run_pipeline(SAMPLE_CSV, tmp_path_factory.mktemp("sample_storage"))
    assert run.result.success, "pipeline failed on the shipped sample"
    return run


@pytest.fixture(scope="session")
def notebook_reference_run(tmp_path_factory) -> PipelineRun:
    csv = require_reference()
    run = run_pipeline(csv, tmp_path_factory.mktemp("notebook_storage"), method="notebook")
    assert run.result.success, "pipeline (notebook method) failed on the reference data set"
    return run


@pytest.fixture(scope="session")
def reference_run(tmp_path_factory) -> PipelineRun:
    csv = require_reference()
    run = run_pipeline(csv, tmp_path_factory.mktemp("reference_storage"))
    assert run.result.success, "pipeline failed on the reference data set"
    return run


@pytest.fixture(scope="session")
def postgres_server():
    """A real PostgreSQL server (Debian's binaries) on 127.0.0.1, for the whole session; tests
    that count rows make their own database with ``create_database``. Skips where PostgreSQL is
    not installed (.ci/run installs it)."""
    from loan_pipeline_tests.servers import PostgresServer, ServerUnavailable

    try:
        server = PostgresServer()
    except ServerUnavailable as err:
        pytest.skip(str(err))
    with server:
        yield server


@pytest.fixture(scope="session")
def dask_cluster():
    """A real Dask cluster for the session: ``distributed.LocalCluster``, its scheduler in this
    process and two single-threaded worker processes, the scheduler, the workers and both
    dashboards on 127.0.0.1. Stopped (and this process's clients closed) at the end."""
    with loopback_cluster() as cluster:
        yield cluster
        from loan_pipeline.cluster import close_clients

        close_clients()


def loopback_cluster():
    """A ``distributed.LocalCluster`` of two single-threaded worker processes, the scheduler,
    the workers and both dashboards on 127.0.0.1 (free ports)."""
    distributed = pytest.importorskip("distributed")
    return distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
        worker_dashboard_address="127.0.0.1:0",
    )
