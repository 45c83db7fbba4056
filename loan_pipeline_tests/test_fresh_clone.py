"""A new user's first steps: clone the repository, `make run`, `make ui` (`dg dev`).

The clone is of the committed HEAD into a temporary folder with its own virtualenv, so a missing
dependency or an untracked file the run relies on fails here, not on a user's machine.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import duckdb
import pytest

from loan_pipeline_tests.conftest import PROJECT_ROOT
from loan_pipeline_tests.test_definitions import EXPECTED
from loan_pipeline_tests.ui_server import free_port, graphql, launch, wait_for

CLEAN_ENV_DROP = {
    "VIRTUAL_ENV",
    "DAGSTER_HOME",
    "LOAN_PIPELINE_STORAGE",
    "LOAN_PIPELINE_RESULTS",
    "LOAN_BOOK_CSV",
    "PYTHONPATH",
    # a new user's Python writes the bytecode of what it imports: `make ui` after `make run`
    # reads it instead of compiling again
    "PYTHONDONTWRITEBYTECODE",
}


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CLEAN_ENV_DROP}
    # pip leaves the byte-compiling to the imports: only the modules a run and `dg dev` import
    # are compiled, not every module of every package installed (most never run here). The
    # variable is PIP_COMPILE=0: pip reads PIP_NO_COMPILE=1 as "compile" (a true value for the
    # option's destination, which --no-compile sets false).
    env["PIP_COMPILE"] = "0"
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


@pytest.mark.slow
def test_make_ui_serves_the_lineage_graph_on_loopback(clone, tmp_path):
    """`make ui` (dg dev) starts the webserver on 127.0.0.1, prints no SupersessionWarning,
    serves every asset with its edges, shows the automation as on (as its sensor runs), and its
    whole process group stops."""
    if not (clone / ".venv" / ".installed").exists():
        pytest.skip("needs the virtualenv made by test_make_run_from_a_fresh_clone")
    port = free_port()
    env = _clean_env() | {"DAGSTER_HOME": str(tmp_path / "home")}
    server = launch(["make", "ui", f"PORT={port}"], clone, env, tmp_path / "make-ui.log", port)
    proc = server.process
    try:

        def served():
            if proc.poll() is not None:
                raise RuntimeError(f"make ui exited with {proc.returncode}:\n{server.log_tail()}")
            try:
                query = "{ assetNodes { assetKey { path } dependencyKeys { path } } }"
                return graphql(port, query)["assetNodes"]
            except (OSError, RuntimeError, ValueError):
                return None

        nodes = wait_for(served, 120, what="make ui serving the asset graph")
        graph = {
            n["assetKey"]["path"][-1]: {d["path"][-1] for d in n["dependencyKeys"]} for n in nodes
        }
        assert len(graph) == len(EXPECTED)
        # the served graph is the definitions' own (test_definitions lists each asset's deps)
        for key in ("recovery_strategies", "chart_borrower_segments"):
            assert graph[key] == EXPECTED[key][1], key
        output = server.log_tail(chars=1_000_000)
        assert "dg dev -h 127.0.0.1" in output, output[-4000:]
        assert f"Serving dagster-webserver on http://127.0.0.1:{port}" in output, output[-4000:]
        assert "SupersessionWarning" not in output, output[-4000:]
        # the launchpad's "Auto-materialize" tag reads this; the automation sensor runs
        instance = graphql(port, "{ instance { autoMaterializePaused } }")["instance"]
        assert instance == {"autoMaterializePaused": False}
        # Loopback only: the port answers on 127.0.0.1 and is not bound to any other address.
        listening = subprocess.run(["ss", "-ltnH"], capture_output=True, text=True)
        if listening.returncode == 0:
            ours = [line for line in listening.stdout.splitlines() if f":{port} " in line]
            assert ours and all("127.0.0.1:" in line for line in ours), ours
    finally:
        server.stop()
    assert not server.group_alive()
