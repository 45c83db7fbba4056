"""Start and stop the UI as `make ui` does (`setup-home`, then `dg dev`: webserver + daemon) on
loopback, and talk to its GraphQL.

Used by the browser tests (test_ui.py), test_fresh_clone.py and test_postgres_instance.py; no
Playwright here, so the helpers also work without a browser.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
# the `dg` of the interpreter running the tests (the project's virtualenv), as `make ui` runs it
DG = Path(sys.executable).parent / "dg"
LOCATION = "loan_pipeline"
REPOSITORY = "__repository__"  # the repository of a `Definitions` object

RUNS_QUERY = """
query Runs($filter: RunsFilter) {
  runsOrError(filter: $filter) {
    __typename
    ... on Runs { results { runId status jobName tags { key value } } }
    ... on PythonError { message }
  }
}
"""

DAEMON_QUERY = """
{ instance { daemonHealth { allDaemonStatuses { daemonType required healthy lastHeartbeatTime } } } }
"""

SENSOR_TICKS_QUERY = """
query Ticks($selector: SensorSelector!) {
  sensorOrError(sensorSelector: $selector) {
    __typename
    ... on Sensor {
      minIntervalSeconds
      sensorState { status ticks(limit: 5) { status timestamp skipReason runIds error { message } } }
    }
  }
}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def graphql(port: int, query: str, variables: dict | None = None, timeout: float = 10) -> dict:
    """POST a query to the webserver; raise if the answer carries GraphQL errors."""
    request = urllib.request.Request(
        f"http://{HOST}:{port}/graphql",
        data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        answer = json.loads(response.read())
    if answer.get("errors"):
        raise RuntimeError(f"GraphQL errors: {answer['errors']}")
    return answer["data"]


def runs(port: int, tags: dict[str, str] | None = None) -> list[dict]:
    """Runs, newest first, optionally only those carrying every one of ``tags``."""
    run_filter = {"tags": [{"key": k, "value": v} for k, v in (tags or {}).items()]}
    data = graphql(port, RUNS_QUERY, {"filter": run_filter})["runsOrError"]
    if data["__typename"] != "Runs":
        raise RuntimeError(f"runsOrError: {data}")
    return data["results"]


def wait_for(
    condition: Callable[[], Any], timeout: float, interval: float = 1.0, what: str = "condition"
) -> Any:
    """Poll ``condition`` until it returns something truthy; return that, or raise TimeoutError."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not met within {timeout:.0f} s")
        time.sleep(interval)


def wait_for_run_end(port: int, run_id: str, timeout: float) -> dict:
    """The run once it reached a terminal status (SUCCESS, FAILURE or CANCELED)."""

    def ended():
        for run in runs(port):
            if run["runId"] == run_id and run["status"] in {"SUCCESS", "FAILURE", "CANCELED"}:
                return run
        return None

    return wait_for(ended, timeout, what=f"run {run_id} to end")


def daemon_report(port: int, sensor: str) -> str:
    """Why a sensor may not have ticked: the daemons' health and the sensor's latest ticks."""
    try:
        daemons = graphql(port, DAEMON_QUERY)["instance"]["daemonHealth"]["allDaemonStatuses"]
        ticks = graphql(
            port,
            SENSOR_TICKS_QUERY,
            {
                "selector": {
                    "repositoryLocationName": LOCATION,
                    "repositoryName": REPOSITORY,
                    "sensorName": sensor,
                }
            },
        )["sensorOrError"]
    except Exception as err:  # a diagnostic must not hide the real failure
        return f"(could not ask the webserver about the daemon: {err!r})"
    return f"daemons: {json.dumps(daemons)}\nsensor {sensor}: {json.dumps(ticks)}"


@dataclass
class DagsterDev:
    process: subprocess.Popen
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def group_alive(self) -> bool:
        """Whether any process of the server's group (dg dev and its children) is still there."""
        try:
            os.killpg(self.process.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def stop(self, grace: float = 30) -> None:
        """SIGTERM the whole process group (dg dev, webserver, daemon, code servers, runs);
        SIGKILL whatever is still there after ``grace`` seconds."""
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        # the group may outlive its leader (a code server, a run worker): kill what is left
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if self.process.poll() is None:
            self.process.wait(timeout=10)
        # killed children leave the table a moment later (reaped by init): return once they have
        wait_for(lambda: not self.group_alive(), 10, interval=0.1, what="dg dev's group to end")


def default_interrupts() -> None:
    # A process started in the background by a non-interactive shell inherits SIGINT as ignored;
    # `dg dev` (Dagster's dev command underneath) then also ignores SIGTERM (it maps SIGTERM to
    # the SIGINT handler) and never shuts down on it. Restore the defaults in the child so
    # SIGTERM stops it cleanly.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def launch(command: list[str], cwd: Path, env: dict[str, str], log: Path, port: int) -> DagsterDev:
    """Start ``command`` (`dg dev …` or `make ui …`) in a session of its own, its output in
    ``log``, SIGTERM-able: what `DagsterDev.stop` stops, the whole group."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=default_interrupts,
        )
    return DagsterDev(process=process, port=port, log=log)


def start_dagster_dev(
    cwd: Path,
    env: dict[str, str],
    log: Path,
    expected_assets: int,
    timeout: float = 120,
    instance_settings: str = "",
) -> DagsterDev:
    """The UI as `make ui` starts it: `python -m loan_pipeline setup-home`, then
    `dg dev -h 127.0.0.1 -p <free port>` in its own session. Returns once GraphQL serves
    ``expected_assets`` asset nodes (the code location has loaded), or raises with the log tail;
    raises too if the output carries a SupersessionWarning (a superseded command or API).

    ``instance_settings``: YAML added to the dagster.yaml that setup-home made or kept, before
    `dg dev` reads it (Dagster's own instance settings, e.g. how often the run queue is read)."""
    port = free_port()
    log.parent.mkdir(parents=True, exist_ok=True)
    setup = subprocess.run(
        [sys.executable, "-m", "loan_pipeline", "setup-home"],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if setup.returncode != 0:
        raise RuntimeError(f"setup-home exited with {setup.returncode}:\n{setup.stderr[-4000:]}")
    if instance_settings:
        instance_yaml = Path(env["DAGSTER_HOME"]) / "dagster.yaml"
        instance_yaml.write_text(instance_yaml.read_text() + instance_settings)
    server = launch([str(DG), "dev", "-h", HOST, "-p", str(port)], cwd, env, log, port)
    process = server.process

    def ready():
        if process.poll() is not None:
            raise RuntimeError(f"dg dev exited with {process.returncode}:\n{server.log_tail()}")
        try:
            nodes = graphql(port, "{ assetNodes { id } }", timeout=5)["assetNodes"]
        except (OSError, RuntimeError, ValueError):
            return False
        return len(nodes) >= expected_assets

    try:
        wait_for(ready, timeout, interval=0.5, what="dg dev serving the asset graph")
        if "SupersessionWarning" in server.log_tail(chars=1_000_000):
            raise RuntimeError(f"dg dev printed a SupersessionWarning:\n{server.log_tail()}")
    except BaseException as err:
        server.stop(grace=10)
        if isinstance(err, TimeoutError):
            raise TimeoutError(f"{err}\n--- dg dev log ---\n{server.log_tail()}") from None
        raise
    return server
