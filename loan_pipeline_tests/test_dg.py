"""`dg`, Dagster's project CLI, on this project: `dg list defs` and `dg check defs`, and the
instance's auto-materialize switch that setup-home sets for `dg dev`.

Each command runs as a subprocess in the project's folder, as a user types it. `dg dev` as
`make ui` runs it (loopback only, no superseded command, the automation shown as on as its
sensor runs) is tested in test_ui.py, on the one server the browser tests use.
"""

from __future__ import annotations

import json
import os
import subprocess
import tomllib

import yaml
from dagster import DagsterInstance

from loan_pipeline import automation, settings
from loan_pipeline.definitions import defs
from loan_pipeline_tests.conftest import PROJECT_ROOT, environment
from loan_pipeline_tests.test_definitions import EXPECTED
from loan_pipeline_tests.ui_server import DG, LOCATION


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


def test_a_new_instance_reads_as_auto_materialize_off_until_setup_home(tmp_path):
    """What the launchpad showed before: a new instance's switch reads "paused"."""
    from dagster._daemon.asset_daemon import get_auto_materialize_paused

    (tmp_path / "dagster.yaml").write_text(settings.INSTANCE_YAML)
    with environment(DAGSTER_HOME=str(tmp_path)), DagsterInstance.get() as instance:
        assert instance.auto_materialize_use_sensors
        assert get_auto_materialize_paused(instance)
        assert automation.show_automation_on(instance)
        assert not get_auto_materialize_paused(instance)
