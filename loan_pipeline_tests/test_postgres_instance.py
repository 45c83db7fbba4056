"""The Dagster instance on a real PostgreSQL server, configured by docs/deploy/dagster.yaml itself.

The server is Debian's PostgreSQL, started by the test session on 127.0.0.1 (``servers.py``);
the pipeline runs the way ``make run`` runs it, with DAGSTER_HOME holding the template.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from dagster import DagsterEventType as E
from dagster import DagsterInstance

from loan_pipeline import settings
from loan_pipeline_tests.conftest import PROJECT_ROOT, SAMPLE_CSV, environment
from loan_pipeline_tests.servers import Socket, listening_sockets, parse_proc_net
from loan_pipeline_tests.test_definitions import EXPECTED
from loan_pipeline_tests.ui_server import (
    LOCATION,
    REPOSITORY,
    graphql,
    start_dagster_dev,
    wait_for_run_end,
)

TEMPLATE = PROJECT_ROOT / "docs" / "deploy" / "dagster.yaml"


def dagster_home(folder: Path) -> Path:
    """A DAGSTER_HOME holding the deployment template, as a user would set it up."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(TEMPLATE, folder / "dagster.yaml")
    return folder


@dataclass
class PostgresRun:
    home: Path
    db_name: str
    stdout: str


@pytest.fixture(scope="module")
def postgres_run(postgres_server, tmp_path_factory) -> PostgresRun:
    """``python -m loan_pipeline run`` on the shipped sample, its instance in a fresh database."""
    home = dagster_home(tmp_path_factory.mktemp("pg_dagster_home"))
    db_name = postgres_server.create_database("pipeline_run")
    env = {k: v for k, v in os.environ.items() if k != "LOAN_BOOK_CSV"}
    env.update(
        postgres_server.dagster_env(db_name),
        DAGSTER_HOME=str(home),
        LOAN_PIPELINE_STORAGE=str(tmp_path_factory.mktemp("pg_storage")),
    )
    done = subprocess.run(
        [sys.executable, "-m", "loan_pipeline", "run"],
        capture_output=True,
        text=True,
        env=env,
        cwd=PROJECT_ROOT,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert str(SAMPLE_CSV) in done.stdout
    return PostgresRun(home=home, db_name=db_name, stdout=done.stdout)


def _query(server, db_name: str, sql: str, *params) -> list[tuple]:
    con = server.connect(db_name)
    try:
        with con.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall()
    finally:
        con.close()


def test_the_run_and_every_materialization_are_in_postgres(postgres_server, postgres_run):
    from loan_pipeline.definitions import defs

    runs = _query(
        postgres_server, postgres_run.db_name, "SELECT run_id, status, pipeline_name FROM runs"
    )
    assert len(runs) == 1, runs
    run_id, status, job = runs[0]
    assert (status, job) == ("SUCCESS", "full_refresh")
    assert f"run {run_id} succeeded: {len(EXPECTED)} assets" in postgres_run.stdout

    keys = {k.to_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert len(keys) == len(EXPECTED)
    materialized = _query(
        postgres_server,
        postgres_run.db_name,
        "SELECT asset_key, count(*) FROM event_logs "
        "WHERE run_id = %s AND dagster_event_type = 'ASSET_MATERIALIZATION' GROUP BY asset_key",
        run_id,
    )
    assert {key: n for key, n in materialized} == dict.fromkeys(keys, 1)

    # nothing went to SQLite: no database file, no runs/events/schedules folder in DAGSTER_HOME
    # (the steps' captured stdout/stderr stay files, under storage/<run id>/compute_logs)
    home = postgres_run.home
    assert not [str(p) for p in home.rglob("*.db")]
    assert not (home / "history").exists() and not (home / "schedules").exists()
    assert {p.name for p in home.iterdir()} <= {"dagster.yaml", "storage"}
    assert {p.name for p in (home / "storage").iterdir()} <= {run_id}


def test_heavy_steps_took_slots_of_the_pool_in_postgres(postgres_server, postgres_run):
    """The in-process run claimed a slot of the heavy pool for each heavy step: the pool got the
    template's default limit in the database, and every slot is free again."""
    limits = _query(
        postgres_server,
        postgres_run.db_name,
        'SELECT concurrency_key, "limit" FROM concurrency_limits',
    )
    assert limits == [(settings.HEAVY_POOL, 1)]
    slots = _query(
        postgres_server,
        postgres_run.db_name,
        "SELECT concurrency_key, run_id FROM concurrency_slots WHERE NOT deleted",
    )
    assert slots == [(settings.HEAVY_POOL, None)]
    with environment(**postgres_server.dagster_env(postgres_run.db_name)):
        with DagsterInstance.from_config(str(postgres_run.home)) as instance:
            [pool] = instance.event_log_storage.get_pool_limits()
            assert (pool.name, pool.limit, pool.from_default) == (settings.HEAVY_POOL, 1, True)
            info = instance.event_log_storage.get_concurrency_info(settings.HEAVY_POOL)
            assert (info.active_slot_count, info.pending_step_count) == (0, 0)


def test_the_template_sets_postgres_storage_run_queue_and_pool(postgres_server, tmp_path):
    from dagster._core.instance.config import PoolGranularity
    from dagster._core.run_coordinator import QueuedRunCoordinator

    home = dagster_home(tmp_path / "home")
    with environment(**postgres_server.dagster_env()):
        with DagsterInstance.from_config(str(home)) as instance:
            assert type(instance.run_storage).__name__ == "PostgresRunStorage"
            assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
            assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
            assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
            concurrency = instance.get_concurrency_config()
            assert concurrency.pool_config.default_pool_limit == 1
            assert concurrency.pool_config.pool_granularity == PoolGranularity.OP
            queue = concurrency.run_queue_config
            assert queue.max_concurrent_runs == 1
            assert queue.tag_concurrency_limits == [
                {"key": "loan_pipeline/trigger", "value": "incoming file", "limit": 1}
            ]
            assert instance.run_monitoring_settings["free_slots_after_run_end_seconds"] == 300
            assert not instance.telemetry_enabled
            assert instance.event_log_storage.supports_global_concurrency_limits


def test_the_template_names_the_pool_the_assets_use():
    text = TEMPLATE.read_text()
    assert f"`{settings.HEAVY_POOL}`" in text
    assert f"dagster instance concurrency set {settings.HEAVY_POOL}" in text


def test_the_server_listens_on_loopback_only(postgres_server, postgres_run):
    sockets = listening_sockets(postgres_server.pid)
    assert any(s.port == postgres_server.port for s in sockets), sockets
    assert all(s.is_loopback for s in sockets), [str(s) for s in sockets if not s.is_loopback]


# --- listening_sockets itself --------------------------------------------------------------------

TCP = """  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000   101        0 111 1
   1: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 222 1
   2: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000   101        0 333 1
"""
TCP6 = """  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 444 1
   1: 00000000000000000000000000000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 555 1
   2: 0000000000000000FFFF00000100007F:1F91 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 666 1
"""
UDP = """   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  1: 0100007F:2000 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 777 2 0 0
  2: 0100007F:2001 0100007F:2002 01 00000000:00000000 00:00000000 00000000     0        0 888 2 0 0
"""


def test_proc_net_tables_are_read_right():
    assert parse_proc_net(TCP, "tcp") == {111: ("127.0.0.1", 8080), 222: ("0.0.0.0", 22)}
    assert parse_proc_net(TCP6, "tcp6") == {
        444: ("::1", 8080),
        555: ("::", 22),
        666: ("::ffff:127.0.0.1", 8081),
    }
    assert parse_proc_net(UDP, "udp") == {777: ("127.0.0.1", 8192)}  # the connected one is not
    loopback = [Socket(1, "tcp6", "::ffff:127.0.0.1", 1), Socket(1, "tcp", "127.0.0.2", 1)]
    assert all(s.is_loopback for s in loopback)
    assert not any(
        s.is_loopback for s in (Socket(1, "tcp", "0.0.0.0", 1), Socket(1, "tcp6", "::", 1))
    )


def test_sockets_of_a_child_process_are_found():
    """A grandchild's TCP listener and UDP socket (on loopback) are listed under the parent."""
    child = (
        "import socket, subprocess, sys, time\n"
        "t = socket.socket(); t.bind(('127.0.0.1', 0)); t.listen()\n"
        "u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(('127.0.0.1', 0))\n"
        "print(t.getsockname()[1], u.getsockname()[1], flush=True)\n"
        "sys.stdin.read()\n"
    )
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import subprocess, sys; subprocess.run([sys.executable, '-c', {child!r}])",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        tcp_port, udp_port = map(int, parent.stdout.readline().split())
        found = {(s.protocol, s.address, s.port) for s in listening_sockets(parent.pid)}
        assert found == {("tcp", "127.0.0.1", tcp_port), ("udp", "127.0.0.1", udp_port)}
    finally:
        parent.stdin.close()
        parent.wait(timeout=30)


LAUNCH = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId status } }
    ... on PythonError { message }
  }
}
"""


def test_dagster_dev_queues_and_runs_on_postgres(postgres_server, tmp_path):
    """`make ui` with the template: a run launched in the UI waits in the run queue, the daemon
    (heartbeats in PostgreSQL) starts it, and it succeeds; webserver, daemon and code server
    listen on loopback only."""
    home = dagster_home(tmp_path / "home")
    db_name = postgres_server.create_database("dagster_dev")
    drop = {"DAGSTER_HOME", "LOAN_BOOK_CSV", "LOAN_PIPELINE_STORAGE", "LOAN_PIPELINE_TIMEZONE"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(
        postgres_server.dagster_env(db_name),
        DAGSTER_HOME=str(home),
        LOAN_PIPELINE_STORAGE=str(tmp_path / "storage"),
        LOAN_PIPELINE_INCOMING=str(tmp_path / "incoming"),  # absent: the sensor skips
        LOAN_PIPELINE_PROCESSED=str(tmp_path / "processed"),
        PYTHONUNBUFFERED="1",
    )
    dev = start_dagster_dev(
        PROJECT_ROOT, env, tmp_path / "dagster-dev.log", expected_assets=len(EXPECTED)
    )
    try:
        selector = {
            "repositoryLocationName": LOCATION,
            "repositoryName": REPOSITORY,
            "jobName": "full_refresh",
        }
        launched = graphql(
            dev.port, LAUNCH, {"params": {"selector": selector, "runConfigData": {}}}
        )["launchRun"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        run_id = launched["run"]["runId"]
        assert launched["run"]["status"] == "QUEUED"
        run = wait_for_run_end(dev.port, run_id, timeout=300)
        assert run["status"] == "SUCCESS", dev.log_tail()
        sockets = listening_sockets(dev.process.pid)
        assert sockets, "dagster dev listens nowhere?"
        assert all(s.is_loopback for s in sockets), [str(s) for s in sockets if not s.is_loopback]
    finally:
        dev.stop()

    events = dict(
        _query(
            postgres_server,
            db_name,
            "SELECT dagster_event_type, count(*) FROM event_logs WHERE run_id = %s "
            "GROUP BY dagster_event_type",
            run_id,
        )
    )
    queue_path = (E.RUN_ENQUEUED, E.RUN_STARTING, E.RUN_START, E.RUN_SUCCESS)
    assert [events.get(e.value) for e in queue_path] == [1, 1, 1, 1], events
    assert events[E.ASSET_MATERIALIZATION.value] == len(EXPECTED)
    daemons = {
        row[0]
        for row in _query(postgres_server, db_name, "SELECT daemon_type FROM daemon_heartbeats")
    }
    assert "QUEUED_RUN_COORDINATOR" in daemons, daemons
    assert not [str(p) for p in home.rglob("*.db")]
