"""The Dagster UI in a real browser against a real `dg dev` (webserver + daemon), started as
`make ui` starts it.

One `dg dev` on a free loopback port serves the whole module (tests run in order and build on
each other: first what a fresh `make ui` shows, then test 2's run, whose charts, model card and
wide tables test 3 opens). Its state and every output go to temporary folders; Chromium
(Debian's /usr/bin/chromium, driven by Playwright) runs headless. A screenshot of every step goes
to test-artifacts/ui/NN-name.png, the server log to test-artifacts/ui/dagster-dev.log.
"""

from __future__ import annotations

import base64
import itertools
import os
import re
import shutil
import struct
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from loan_pipeline import automation
from loan_pipeline.automation import TAG_FILE
from loan_pipeline.core import chart_registry
from loan_pipeline_tests.conftest import PROJECT_ROOT, SAMPLE_CSV
from loan_pipeline_tests.test_definitions import EXPECTED
from loan_pipeline_tests.ui_server import (
    HOST,
    LOCATION,
    REPOSITORY,
    SENSOR_TICKS_QUERY,
    daemon_report,
    graphql,
    runs,
    start_dagster_dev,
    wait_for,
    wait_for_run_end,
)

try:
    from playwright.sync_api import Page, expect, sync_playwright
except ImportError:  # the dev extra is not installed
    sync_playwright = None

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
if sync_playwright is None:
    pytest.skip(
        "browser tests need the playwright package (pip install -e '.[dev]')",
        allow_module_level=True,
    )
if not CHROMIUM.exists():
    pytest.skip(
        f"browser tests drive Debian's Chromium at {CHROMIUM}, which is not installed "
        "(apt-get install chromium)",
        allow_module_level=True,
    )

ARTIFACTS = PROJECT_ROOT / "test-artifacts" / "ui"
ASSETS = sorted(EXPECTED)
DEPS = {key: deps for key, (_group, deps) in EXPECTED.items()}
MISSING_AGE = "required column(s) missing: Age (found 'Borrower_Age': renamed?)"
ENV_DROP = {"DAGSTER_HOME", "LOAN_BOOK_CSV", "LOAN_PIPELINE_STORAGE", "LOAN_PIPELINE_INCOMING"}
ENV_DROP |= {"LOAN_PIPELINE_SENSOR_INTERVAL"}
ENV_DROP |= {"LOAN_PIPELINE_PROCESSED", "LOAN_PIPELINE_TIMEZONE", "PYTHONPATH"}
ENV_DROP |= {"LOAN_PIPELINE_RUN_CONFIG"}
# the sensors look every few seconds here, so a file is picked up (and, once its run has
# succeeded, moved) without waiting 30 s a tick
SENSOR_INTERVAL = 3
# Dagster's run queue, read every second instead of every 5 s: a launched run starts sooner
RUN_QUEUE = """run_queue:
  dequeue_interval_seconds: 1
"""

expect.set_options(timeout=20_000)
_step = itertools.count(1)


def shot(page: Page, name: str) -> Path:
    """Screenshot of the current step: test-artifacts/ui/NN-name.png."""
    path = ARTIFACTS / f"{next(_step):02d}-{name}.png"
    page.screenshot(path=str(path), animations="disabled")
    return path


def nav_link(page: Page, label: str):
    """A link of the left navigation (its accessible name is "<icon> <label>")."""
    return page.get_by_role("navigation").get_by_role("link", name=re.compile(rf"\b{label}$"))


def run_row(page: Page, run_id: str):
    """The row of a run in the Runs page's table."""
    return page.locator("[class*='RunsFeedRow_rowGrid']").filter(
        has=page.locator(f"a[href='/runs/{run_id}']")
    )


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`dg dev -h 127.0.0.1 -p <free port>` as `make ui` starts it, on a fresh Dagster home (no
    dagster.yaml yet: setup-home makes it), its state and outputs in temporary folders."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob("*.png"):
        old.unlink()
    root = tmp_path_factory.mktemp("ui")
    dirs = SimpleNamespace(
        **{name: root / name for name in ("home", "storage", "incoming", "processed")}
    )
    for name, folder in vars(dirs).items():
        if name != "home":
            folder.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ENV_DROP} | {
        "DAGSTER_HOME": str(dirs.home),
        "LOAN_BOOK_CSV": str(SAMPLE_CSV),
        "LOAN_PIPELINE_STORAGE": str(dirs.storage),
        "LOAN_PIPELINE_INCOMING": str(dirs.incoming),
        "LOAN_PIPELINE_PROCESSED": str(dirs.processed),
        "LOAN_PIPELINE_SENSOR_INTERVAL": str(SENSOR_INTERVAL),
        "PYTHONUNBUFFERED": "1",
    }
    dev = start_dagster_dev(
        PROJECT_ROOT,
        env,
        ARTIFACTS / "dagster-dev.log",
        expected_assets=len(EXPECTED),
        instance_settings=RUN_QUEUE,
    )
    try:
        # the one-time "Join the Dagster community" dialog would cover the page: mark it seen
        graphql(dev.port, "mutation { setNuxSeen }")
        yield SimpleNamespace(port=dev.port, url=dev.url, dev=dev, **vars(dirs))
    finally:
        dev.stop()
    assert not dev.group_alive(), "a process of dg dev's group outlived stop()"


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


def _new_context(browser, server, **context_options):
    context = browser.new_context(base_url=server.url, **context_options)
    context.set_default_timeout(30_000)
    return context


def _new_page(context) -> Page:
    page = context.new_page()
    # should the community dialog show anyway, dismiss it whenever it gets in the way
    page.add_locator_handler(
        page.get_by_role("button", name="Skip", exact=True),
        lambda skip: skip.click(),
    )
    return page


@pytest.fixture(scope="module")
def context(browser, server):
    """One browser profile for the module's pages, as one user's browser: the UI's scripts are
    fetched and compiled once, then come from its cache (each test still loads its page)."""
    context = _new_context(browser, server, viewport={"width": 1600, "height": 1000})
    yield context
    context.close()


@pytest.fixture
def page(context, request):
    page = _new_page(context)
    yield page
    shot(page, f"{request.node.name.removeprefix('test_')}-end")
    page.close()


# --- 0. what a fresh `make ui` shows: loopback only, automation on ------------------------------


def test_dg_dev_serves_on_loopback_and_prints_no_supersession_warning(server):
    log = server.dev.log_tail(chars=1_000_000)
    assert f"Serving dagster-webserver on http://{HOST}:{server.port}" in log, log[-4000:]
    assert "SupersessionWarning" not in log
    listening = subprocess.run(["ss", "-ltnH"], capture_output=True, text=True)
    if listening.returncode == 0:
        ours = [line for line in listening.stdout.splitlines() if f":{server.port} " in line]
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


def test_the_launchpad_shows_automation_on_as_the_sensor_runs(server):
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
    data = graphql(server.port, AUTOMATION_QUERY, variables)
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
        state = graphql(server.port, AUTOMATION_QUERY, variables)["sensorOrError"]["sensorState"]
        return [t for t in state["ticks"] if t["status"] in {"SKIPPED", "SUCCESS"}]

    wait_for(ticked, timeout=60, what="a tick of follow_upstream_changes")


def test_the_launchpad_page_reads_auto_materialize_on(page):
    """The same in a real browser: the `full_refresh` launchpad's header tag."""
    page.goto(f"/locations/{LOCATION}/jobs/full_refresh/playground")
    expect(page.get_by_text("Auto-materialize on")).to_be_visible(timeout=30_000)
    expect(page.get_by_text("Auto-materialize off")).to_have_count(0)
    shot(page, "launchpad-auto-materialize-on")


# --- 1. the lineage graph ----------------------------------------------------------------------


def test_global_lineage_shows_every_asset_and_its_edges(server, browser):
    nodes = graphql(server.port, "{ assetNodes { assetKey { path } dependencyKeys { path } } }")
    graph = {
        "/".join(n["assetKey"]["path"]): {"/".join(d["path"]) for d in n["dependencyKeys"]}
        for n in nodes["assetNodes"]
    }
    for key in ("recovery_strategies", "chart_borrower_segments", "model_card", "raw_loans"):
        assert graph[key] == DEPS[key], key
    assert graph == DEPS
    edges = sum(len(deps) for deps in graph.values())

    # The graph is drawn in full (full names, not "chart_bo…_segments") from a zoom of 0.6 and
    # only what lies in the viewport is in the DOM: a big viewport at half the pixel density
    # holds every node at full detail.
    page = _new_page(
        _new_context(
            browser, server, viewport={"width": 4400, "height": 9000}, device_scale_factor=0.5
        )
    )
    try:
        page.goto("/")
        nav_link(page, "Lineage").click()
        expect(page).to_have_url(re.compile(r"/asset-groups$"))
        expect(page.get_by_text("Global asset lineage", exact=True)).to_be_visible()
        expect(page.get_by_role("button", name="Materialize all")).to_be_visible()
        shot(page, "lineage-groups")

        # the groups start collapsed; the graph's settings menu expands them all
        page.get_by_role("button", name="settings", exact=True).click()
        page.get_by_role("menuitem", name=re.compile("Expand all groups")).click()
        page.keyboard.press("Escape")
        page.mouse.move(0, 0)  # a hovered node would draw its edges a second time
        svg = page.locator("svg[class*='AssetGraphExplorer_svgContainer']")
        for name in ASSETS:
            expect(svg.get_by_text(name, exact=True), name).to_be_visible()
        # each dependency is one SVG path ending in an arrow marker
        edge_paths = svg.locator("path[marker-end^='url(#arrow']")
        expect(edge_paths).to_have_count(edges)
        assert edge_paths.count() > 0
        shot(page, "lineage-expanded")
    finally:
        page.context.close()


# --- 2. Materialize all ------------------------------------------------------------------------


def test_materialize_all_run_succeeds_and_shows_in_runs(server, page):
    page.goto("/asset-groups")
    materialize = page.get_by_role("button", name="Materialize all")
    expect(materialize).to_be_enabled()
    shot(page, "before-materialize-all")
    materialize.click()

    launched = page.get_by_text(re.compile(r"Launched run [0-9a-f]{8}"))
    # a launchpad or confirmation dialog, should this version show one
    confirm = page.get_by_role("dialog").get_by_role(
        "button", name=re.compile(r"^(Launch|Materialize)")
    )
    expect(launched.or_(confirm).first).to_be_visible()
    if not launched.is_visible():
        shot(page, "materialize-all-dialog")
        confirm.first.click()
    expect(launched).to_be_visible()
    shot(page, "run-launched")
    prefix = re.search(r"Launched run ([0-9a-f]{8})", launched.inner_text()).group(1)

    ours = [r for r in runs(server.port, {"dagster/from_ui": "true"}) if r["runId"][:8] == prefix]
    assert len(ours) == 1, f"no run {prefix} launched from the UI: {ours}"
    run_id = ours[0]["runId"]
    run = wait_for_run_end(server.port, run_id, timeout=90)
    assert run["status"] == "SUCCESS", f"{run}\n--- dagster dev log ---\n{server.dev.log_tail()}"
    done = graphql(
        server.port,
        "query($id: ID!) { runOrError(runId: $id) { ... on Run { assetMaterializations { "
        "assetKey { path } } } } }",
        {"id": run_id},
    )["runOrError"]["assetMaterializations"]
    assert {"/".join(m["assetKey"]["path"]) for m in done} == set(EXPECTED)

    nav_link(page, "Runs").click()
    expect(page).to_have_url(re.compile(r"/runs$"))
    row = run_row(page, run_id)
    expect(row).to_be_visible()
    expect(row.get_by_text(run_id[:8], exact=True)).to_be_visible()
    expect(row.get_by_text("Success", exact=True)).to_be_visible()
    # the target column names the assets: "29 assets", or the first and "28 more"
    target = rf"^({len(EXPECTED)} assets|{len(EXPECTED) - 1} more)$"
    expect(row.get_by_text(re.compile(target)).first).to_be_visible()
    shot(page, "runs-page-success")


# --- 3. every chart and the model card on their asset pages ------------------------------------

# Each image is a markdown metadata entry (its PNG inside the text, as a data: URI), opened in a
# dialog from the metadata table: (asset, entry, the file it shows under the storage folder).
IMAGE_PAGES = [(c.key, "chart", f"charts/{c.key}.png") for c in chart_registry.CHARTS] + [
    ("model_card", "model_card", "charts/chart_calibration.png")
]
# The page of a table whose markdown entries must fit their dialog without scrolling sideways.
TABLE_PAGES = [
    ("recovery_strategies", "strategy_by_segment"),
    ("recovery_strategies", "loss_by_strategy"),
    ("fairness_report", "report"),
    ("segment_profiles", "profile"),
    ("risk_model", "metrics"),
]


def _png_size(png: bytes) -> tuple[int, int]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", png[16:24])


def _materialized(server, key: str) -> bool:
    latest = graphql(
        server.port,
        f'{{ assetOrError(assetKey: {{path: ["{key}"]}}) {{ ... on Asset {{ '
        "assetMaterializations(limit: 1) { runId } } } }",
    )["assetOrError"]
    return bool(latest.get("assetMaterializations"))


def _open_markdown(page: Page, server, key: str, entry: str):
    """The asset's page, and where its markdown metadata ``entry`` shows: the dialog its
    "[Show Markdown]" link opens, or (a short entry, which the UI shows in place) its cell."""
    if not _materialized(server, key):
        pytest.skip(f"{key} was never materialized: run the module in order")
    page.goto(f"/assets/{key}")
    row = page.get_by_role("row").filter(has=page.get_by_role("cell", name=entry, exact=True))
    expect(row).to_be_visible()
    row.scroll_into_view_if_needed()
    shot(page, f"{key}-page")
    show = row.get_by_text("[Show Markdown]")
    if show.count() == 0:
        return row.locator(":scope > td").last
    show.click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    return dialog


def _sideways_overflow(container) -> list[str]:
    """The tables of the dialog (or metadata cell) that run past what the reader sees: the
    container's right edge, or that of the nearest ancestor that clips or scrolls (the asset
    page's metadata table is cut off at its section's edge)."""
    return container.evaluate(
        """d => {
            let edge = d.getBoundingClientRect().right;
            for (let a = d.parentElement; a; a = a.parentElement) {
              if (getComputedStyle(a).overflowX !== 'visible') {
                edge = Math.min(edge, a.getBoundingClientRect().right);
                break;
              }
            }
            return [...d.querySelectorAll('table')]
              .filter(t => t.getBoundingClientRect().right > edge + 1)
              .map(t => t.querySelector('tr').innerText.slice(0, 80));
        }"""
    )


@pytest.mark.parametrize("key,entry,png", IMAGE_PAGES, ids=[k for k, _, _ in IMAGE_PAGES])
def test_image_loads_on_its_asset_page(server, page, key, entry, png):
    dialog = _open_markdown(page, server, key, entry)
    assert dialog.get_attribute("role") == "dialog", "an image entry opens in a dialog"
    img = dialog.locator("img[src^='data:image/png;base64,']")
    expect(img).to_have_count(1)
    img.scroll_into_view_if_needed()
    img.evaluate("img => img.decode()")  # resolves once the image data is decoded
    loaded = img.evaluate(
        "img => ({complete: img.complete, width: img.naturalWidth, height: img.naturalHeight})"
    )
    assert loaded["complete"] and loaded["width"] > 0 and loaded["height"] > 0, loaded
    # no other image in the dialog (a relative link would be one, and broken)
    assert dialog.locator("img").count() == 1
    shot(page, f"{key}-image")

    # it is the image the run wrote to storage, at its own size
    shown = base64.b64decode(img.get_attribute("src").split(",", 1)[1])
    stored = (server.storage / png).read_bytes()
    assert shown == stored
    assert (loaded["width"], loaded["height"]) == _png_size(stored)
    assert _sideways_overflow(dialog) == [], key


@pytest.mark.parametrize("key,entry", TABLE_PAGES, ids=[f"{k}-{e}" for k, e in TABLE_PAGES])
def test_markdown_table_fits_its_dialog(server, page, key, entry):
    shown = _open_markdown(page, server, key, entry)
    expect(shown.locator("table").first).to_be_visible()
    shot(page, f"{key}-{entry}")
    assert _sideways_overflow(shown) == []


# --- 4. incoming files: a bad one fails clearly, a good one still runs -------------------------


def _sensor_run(server, path: Path, timeout: float) -> dict:
    try:
        return wait_for(
            lambda: runs(server.port, {TAG_FILE: str(path)}),
            timeout,
            what=f"a run for {path.name}",
        )[0]
    except TimeoutError as err:
        pytest.fail(
            f"{err}: the incoming_loan_files sensor did not start a run\n"
            f"{daemon_report(server.port, 'incoming_loan_files')}\n"
            f"--- dagster dev log ---\n{server.dev.log_tail()}"
        )


def test_bad_incoming_file_fails_with_a_clear_message_and_does_not_block(server, page):
    header, rest = SAMPLE_CSV.read_text().split("\n", 1)
    columns = header.split(",")
    columns[columns.index("Age")] = "Borrower_Age"
    bad = server.incoming / "loan_book_renamed_age.csv"
    bad.write_text(",".join(columns) + "\n" + rest)

    bad_run = _sensor_run(server, bad, timeout=120)
    bad_run = wait_for_run_end(server.port, bad_run["runId"], timeout=60)
    assert bad_run["status"] == "FAILURE", bad_run
    assert bad.exists(), "a file whose run failed must stay in the incoming folder"

    good = server.incoming / "loan_book_good.csv"
    shutil.copyfile(SAMPLE_CSV, good)  # picked up at the sensor's next tick

    page.goto(f"/runs/{bad_run['runId']}")
    expect(page.get_by_text("Failure", exact=True).first).to_be_visible()
    expect(page.get_by_text("Errored (1)", exact=True)).to_be_visible()
    shot(page, "bad-file-run-page")
    # the failed step, listed under "Errored": clicking it filters the event log to that step
    page.locator(
        "[class*='GanttStatusPanel_stepItemContainer']", has_text="ingest_loan_book"
    ).click()
    expect(page).to_have_url(re.compile(r"logs=query%3Aname%3A%22ingest_loan_book%22"))
    step_failure = page.locator("[class*='LogsRowComponents_row']").filter(
        has=page.get_by_text("STEP_FAILURE", exact=True)
    )
    expect(step_failure).to_be_visible()
    expect(step_failure).to_contain_text(f"{bad}: {MISSING_AGE}")
    shot(page, "bad-file-step-failure")

    good_run = _sensor_run(server, good, timeout=90)
    good_run = wait_for_run_end(server.port, good_run["runId"], timeout=90)
    assert good_run["status"] == "SUCCESS", (
        f"{good_run}\n--- dagster dev log ---\n{server.dev.log_tail()}"
    )
    moved = server.processed / good.name
    try:
        wait_for(lambda: moved.exists() and not good.exists(), 45, what=f"{good.name} moved")
    except TimeoutError as err:
        pytest.fail(f"{err}\n{daemon_report(server.port, 'move_processed_files')}")
    assert moved.read_bytes() == SAMPLE_CSV.read_bytes()
    assert bad.exists(), "the failed file must not be moved to the processed folder"
    assert len(runs(server.port, {TAG_FILE: str(bad)})) == 1, "the bad file ran more than once"

    page.goto(f"/runs/{good_run['runId']}")
    expect(page.get_by_text("Success", exact=True).first).to_be_visible()
    shot(page, "good-file-run-succeeded")
    page.goto("/runs")
    expect(run_row(page, bad_run["runId"]).get_by_text("Failure", exact=True)).to_be_visible()
    expect(run_row(page, good_run["runId"]).get_by_text("Success", exact=True)).to_be_visible()
    shot(page, "runs-page-bad-and-good")


def test_schedule_and_sensors_are_running_under_make_ui(server):
    """What the daemon will tick: every sensor (the incoming files, the file mover, the
    automation that makes downstream assets follow) and the daily schedule are on by default,
    the sensors at the configured interval."""
    for sensor in ("incoming_loan_files", "move_processed_files", "follow_upstream_changes"):
        state = graphql(
            server.port,
            SENSOR_TICKS_QUERY,
            {
                "selector": {
                    "repositoryLocationName": LOCATION,
                    "repositoryName": REPOSITORY,
                    "sensorName": sensor,
                }
            },
        )["sensorOrError"]
        assert state["__typename"] == "Sensor", state
        assert state["sensorState"]["status"] == "RUNNING", (sensor, state)
        assert state["minIntervalSeconds"] == SENSOR_INTERVAL, (sensor, state)
    schedule = graphql(
        server.port,
        """query S($selector: ScheduleSelector!) { scheduleOrError(scheduleSelector: $selector) {
             __typename ... on Schedule { cronSchedule executionTimezone scheduleState { status } } } }""",
        {
            "selector": {
                "repositoryLocationName": LOCATION,
                "repositoryName": REPOSITORY,
                "scheduleName": "daily_refresh",
            }
        },
    )["scheduleOrError"]
    assert schedule["cronSchedule"] == "0 6 * * *"
    assert schedule["scheduleState"]["status"] == "RUNNING"
