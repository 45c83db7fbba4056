"""`dg`, Dagster's project CLI, on this project: `dg list defs`, `dg check defs`, and `dg dev` as
`make ui` runs it (loopback only, no superseded command, the automation shown as it runs).

Each command runs as a subprocess in the project's folder, as a user types it.
"""

from __future__ import annotations

import json
import os
import subprocess
import tomllib

import pytest
import yaml
from dagster import DagsterInstance

from loan_pipeline import automation, settings
from loan_pipeline.definitions import defs
from loan_pipeline_tests.conftest import PROJECT_ROOT, SAMPLE_CSV, environment
from loan_pipeline_tests.test_definitions import EXPECTED
from loan_pipeline_tests.ui_server import (
    DG,
    HOST,
    LOCATION,
    REPOSITORY,
    graphql,
    start_dagster_dev,
    wait_for,
)

# what `make ui` is given by a user's shell: nothing of a test's own storage or Dagster home
ENV_DROP = {"DAGSTER_HOME", "LOAN_BOOK_CSV", "LOAN_PIPELINE_STORAGE", "LOAN_PIPELINE_INCOMING"}
ENV_DROP |= {"LOAN_PIPELINE_PROCESSED", "LOAN_PIPELINE_SENSOR_INTERVAL"}


def _dg(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(DG), *args],
        cwd=PROJECT_ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_tool_dg_names_the_module_dagster_and_the_workspace_load():
    """One definitions module for every way in: `dg`, `dagster -m`/[tool.dagster], workspace.yaml."""
    tool = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["tool"]
    workspace = yaml.safe_load((PROJECT_ROOT / "workspace.yaml").read_text())
    module = workspace["load_from"][0]["python_module"]
    assert tool["dg"]["directory_type"] == "project"
    project = tool["dg"]["project"]
    assert project["root_module"] == "loan_pipeline"
    assert (
        project["code_location_target_module"]
        == project["defs_module"]
        == tool["dagster"]["module_name"]
        == module["module_name"]
        == "loan_pipeline.definitions"
    )
    assert project["code_location_name"] == tool["dagster"]["code_location_name"] == LOCATION
    assert module["location_name"] == LOCATION


def test_dg_list_defs_lists_every_asset_check_job_schedule_and_sensor():
    done = _dg("list", "defs", "--json")
    assert done.returncode == 0, done.stderr[-4000:]
    listed = json.loads(done.stdout)
    assets = {a["asset_key"]: a for a in listed["assets"]}
    assert set(assets) == set(EXPECTED)
    for key, (group, deps) in EXPECTED.items():
        assert assets[key]["group_name"] == group, key
        assert set(assets[key]["dependency_keys"]) == deps, key
    checks = {
        f"{k.asset_key.to_user_string()}:{k.name}"
        for k in defs.resolve_asset_graph().asset_check_keys
    }
    assert {c["key"] for c in listed["asset_checks"]} == checks
    assert {j["name"] for j in listed["jobs"]} == {j.name for j in automation.jobs}
    assert {s["name"] for s in listed["schedules"]} == {s.name for s in automation.schedules}
    assert {s["name"] for s in listed["sensors"]} == {s.name for s in automation.sensors}
    assert "Warning" not in done.stderr, done.stderr


def test_dg_check_defs_loads_the_definitions():
    done = _dg("check", "defs")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "All definitions loaded successfully" in done.stdout
    assert "Warning" not in done.stdout + done.stderr
    # and it really imports loan_pipeline.definitions: a setting it reads there, made unreadable,
    # fails the check with the cause
    broken = _dg("check", "defs", env=os.environ | {"LOAN_PIPELINE_SENSOR_INTERVAL": "often"})
    assert broken.returncode != 0
    assert "often" in broken.stdout + broken.stderr


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    """The UI as `make ui` starts it on a fresh Dagster home (no dagster.yaml yet)."""
    root = tmp_path_factory.mktemp("dg")
    home, storage = root / "home", root / "storage"
    env = {k: v for k, v in os.environ.items() if k not in ENV_DROP} | {
        "DAGSTER_HOME": str(home),
        "LOAN_BOOK_CSV": str(SAMPLE_CSV),
        "LOAN_PIPELINE_STORAGE": str(storage),
        "LOAN_PIPELINE_INCOMING": str(root / "incoming"),
        "LOAN_PIPELINE_PROCESSED": str(root / "processed"),
        "LOAN_PIPELINE_SENSOR_INTERVAL": "3",
        "PYTHONUNBUFFERED": "1",
    }
    dev = start_dagster_dev(PROJECT_ROOT, env, root / "dg-dev.log", expected_assets=len(EXPECTED))
    try:
        yield dev
    finally:
        dev.stop()
    assert not dev.group_alive(), "a process of dg dev's group outlived stop()"


def test_a_new_instance_reads_as_auto_materialize_off_until_setup_home(tmp_path):
    """What the launchpad showed before: a new instance's switch reads "paused"."""
    from dagster._daemon.asset_daemon import get_auto_materialize_paused

    (tmp_path / "dagster.yaml").write_text(settings.INSTANCE_YAML)
    with environment(DAGSTER_HOME=str(tmp_path)), DagsterInstance.get() as instance:
        assert instance.auto_materialize_use_sensors
        assert get_auto_materialize_paused(instance)
        assert automation.show_automation_on(instance)
        assert not get_auto_materialize_paused(instance)


def test_dg_dev_serves_on_loopback_and_prints_no_supersession_warning(ui):
    log = ui.log_tail(chars=1_000_000)
    assert f"Serving dagster-webserver on http://{HOST}:{ui.port}" in log, log[-4000:]
    assert "SupersessionWarning" not in log
    listening = subprocess.run(["ss", "-ltnH"], capture_output=True, text=True)
    if listening.returncode == 0:
        ours = [line for line in listening.stdout.splitlines() if f":{ui.port} " in line]
        assert ours and all(f"{HOST}:" in line for line in ours), ours


AUTOMATION_QUERY = """
query Automation($job: PipelineSelector!, $sensor: SensorSelector!) {
  instance { autoMaterializePaused useAutoMaterializeSensors }
  assetNodes(pipeline: $job) { assetKey { path } automationCondition { label } }
  sensorOrError(sensorSelector: $sensor) {
    __typename
    ... on Sensor { sensorType sensorState { status ticks(limit: 5) { status } } }
  }
}
"""


def test_the_launchpad_shows_automation_on_as_the_sensor_runs(ui):
    """The `full_refresh` launchpad shows the instance's auto-materialize switch whenever its
    assets carry automation conditions; it says "on" and the automation sensor runs and ticks."""
    variables = {
        "job": {
            "pipelineName": "full_refresh",
            "repositoryName": REPOSITORY,
            "repositoryLocationName": LOCATION,
        },
        "sensor": {
            "repositoryName": REPOSITORY,
            "repositoryLocationName": LOCATION,
            "sensorName": automation.follow_upstream.name,
        },
    }
    data = graphql(ui.port, AUTOMATION_QUERY, variables)
    # the tag is shown (some asset of the job has a condition) and reads "on"
    eager = {n["assetKey"]["path"][-1] for n in data["assetNodes"] if n["automationCondition"]}
    assert "published_snapshot" in eager and "recovery_strategies" not in eager
    assert data["instance"] == {"autoMaterializePaused": False, "useAutoMaterializeSensors": True}
    sensor = data["sensorOrError"]
    assert sensor["__typename"] == "Sensor", sensor
    assert sensor["sensorType"] == "AUTO_MATERIALIZE"
    assert sensor["sensorState"]["status"] == "RUNNING"

    # and it really evaluates the conditions: the daemon ticks it (every 3 s here)
    def ticked():
        state = graphql(ui.port, AUTOMATION_QUERY, variables)["sensorOrError"]["sensorState"]
        return [t for t in state["ticks"] if t["status"] in {"SKIPPED", "SUCCESS"}]

    wait_for(ticked, timeout=60, what="a tick of follow_upstream_changes")


def test_the_launchpad_page_reads_auto_materialize_on(ui):
    """The same in a real browser: the `full_refresh` launchpad's header tag (screenshot in
    test-artifacts/dg/launchpad.png)."""
    pytest.importorskip("playwright")
    # Chromium as the browser tests drive it (skips there when it is not installed)
    from playwright.sync_api import expect, sync_playwright

    from loan_pipeline_tests.test_ui import CHROMIUM, CHROMIUM_ARGS

    graphql(ui.port, "mutation { setNuxSeen }")  # the one-time welcome dialog would cover it
    shot = PROJECT_ROOT / "test-artifacts" / "dg" / "launchpad.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.goto(f"{ui.url}/locations/{LOCATION}/jobs/full_refresh/playground")
            try:
                expect(page.get_by_text("Auto-materialize on")).to_be_visible(timeout=30_000)
                expect(page.get_by_text("Auto-materialize off")).to_have_count(0)
            finally:
                page.screenshot(path=shot)
        finally:
            browser.close()
