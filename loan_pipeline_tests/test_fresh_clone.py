"""A new user's first steps: clone the repository, `make run`, `make ui`.

The clone is of the committed HEAD into a temporary folder with its own virtualenv, so a missing
dependency or an untracked file the run relies on fails here, not on a user's machine.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import duckdb
import pytest

from loan_pipeline_tests.conftest import PROJECT_ROOT
from loan_pipeline_tests.test_definitions import EXPECTED

CLEAN_ENV_DROP = {
    "VIRTUAL_ENV",
    "DAGSTER_HOME",
    "LOAN_PIPELINE_STORAGE",
    "LOAN_BOOK_CSV",
    "PYTHONPATH",
}


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CLEAN_ENV_DROP}
    venv_bin = str(Path(os.sys.executable).parent)
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != venv_bin)
    return env


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    if shutil.which("git") is None or shutil.which("make") is None:
        pytest.skip("git and make are needed to test a fresh clone")
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True
    )
    if head.returncode != 0:
        pytest.skip("not a git checkout with commits")
    target = tmp_path_factory.mktemp("clone") / "loan-recovery"
    subprocess.run(["git", "clone", "--quiet", str(PROJECT_ROOT), str(target)], check=True)
    return target


@pytest.mark.slow
def test_make_run_from_a_fresh_clone(clone):
    done = subprocess.run(
        ["make", "run"], cwd=clone, env=_clean_env(), capture_output=True, text=True, timeout=1200
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert f"succeeded: {len(EXPECTED)} assets" in done.stdout
    charts = sorted(p.name for p in (clone / "storage" / "charts").glob("*.png"))
    assert len(charts) == sum(key.startswith("chart_") for key in EXPECTED), charts
    with duckdb.connect(str(clone / "storage" / "warehouse.duckdb"), read_only=True) as con:
        tables = {r[0] for r in con.execute("SHOW TABLES").fetchall()}
        assert {"raw_loans", "validated_loans", "recovery_strategies"} <= tables
        assert con.execute("SELECT count(*) FROM recovery_strategies").fetchall()[0][0] == 500
    assert (clone / ".dagster_home" / "dagster.yaml").exists()
    assert (clone / ".dagster_home" / "history" / "runs.db").exists()
    status = subprocess.run(
        ["git", "status", "--porcelain"], cwd=clone, capture_output=True, text=True
    )
    assert status.stdout == "", f"make run left files git does not ignore:\n{status.stdout}"


def _default_interrupts() -> None:
    """A background child inherits SIGINT ignored, and dagster dev maps SIGTERM to the same
    handler: restore both so the teardown's SIGTERM stops it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


@pytest.mark.slow
def test_make_ui_serves_the_lineage_graph_on_loopback(clone, tmp_path):
    """`make ui` starts the webserver on 127.0.0.1 and it serves every asset with its edges."""
    if not (clone / ".venv" / ".installed").exists():
        pytest.skip("needs the virtualenv made by test_make_run_from_a_fresh_clone")
    port = _free_port()
    env = _clean_env() | {"DAGSTER_HOME": str(tmp_path / "home")}
    proc = subprocess.Popen(
        ["make", "ui", f"PORT={port}"],
        cwd=clone,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=_default_interrupts,
    )
    try:
        deadline = time.monotonic() + 120
        nodes = None
        while time.monotonic() < deadline:
            try:
                data = _graphql(
                    port, "{ assetNodes { assetKey { path } dependencyKeys { path } } }"
                )
                nodes = data["data"]["assetNodes"]
                if nodes:
                    break
            except OSError:
                pass
            time.sleep(1)
        assert nodes, "dagster dev did not serve the asset graph within 120 s"
        graph = {
            n["assetKey"]["path"][-1]: {d["path"][-1] for d in n["dependencyKeys"]} for n in nodes
        }
        assert len(graph) == len(EXPECTED)
        # the served graph is the definitions' own (test_definitions lists each asset's deps)
        for key in ("recovery_strategies", "chart_borrower_segments"):
            assert graph[key] == EXPECTED[key][1], key
        # Loopback only: the port answers on 127.0.0.1 and is not bound to any other address.
        listening = subprocess.run(["ss", "-ltnH"], capture_output=True, text=True)
        if listening.returncode == 0:
            ours = [line for line in listening.stdout.splitlines() if f":{port} " in line]
            assert ours and all("127.0.0.1:" in line for line in ours), ours
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
