"""Command line: ``python -m loan_pipeline run [--csv PATH] [--job NAME]``, and
``pin-baseline [SNAPSHOT_ID|current]``, ``model-card``, ``setup-home``.

Materializes the asset graph in this process against the Dagster instance in ``DAGSTER_HOME``
(so the run shows in the UI), then prints what was made, or a readable reason it stopped.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def _failure_messages(result) -> list[str]:
    """Each failed step's reason; or, when the run failed outside its steps (its resources
    could not be set up), the run's own."""
    messages = []
    if not result.get_step_failure_events():
        for event in result.all_events:
            if event.event_type_value in ("PIPELINE_FAILURE", "RUN_FAILURE"):
                error = getattr(event.event_specific_data, "error", None)
                text = root_cause(error) if error is not None else (event.message or "")
                messages.append("the run failed:\n  " + text.strip().replace("\n", "\n  "))
        return messages
    for event in result.get_step_failure_events():
        user = event.step_failure_data.user_failure_data
        if user is not None and user.description:  # a dagster.Failure raised on purpose
            text = user.description.strip()
            messages.append(f"step {event.step_key} failed:\n  " + text.replace("\n", "\n  "))
            continue
        text = root_cause(event.step_failure_data.error)
        messages.append(f"step {event.step_key} failed:\n  " + text.replace("\n", "\n  "))
    return messages


def root_cause(error) -> str:
    """The message of the error a user can act on: Dagster's wrappers (a step's execution
    error, the retries given up) name only themselves; the cause underneath names the file,
    the lock or the disk."""
    while (
        error is not None
        and error.cause is not None
        and (
            (error.cls_name or "").startswith("DagsterExecution")
            or "max_retries" in (error.message or "")
        )
    ):
        error = error.cause
    return (error.message if error is not None else "unknown error").strip()


# What the steps of a full run import when they first run (the charts bring matplotlib, seaborn
# and scipy; the models scikit-learn): about 1.3 s of a cold process.
_STEP_IMPORTS = (
    "loan_pipeline.core.risk_methods",
    "loan_pipeline.core.scoring",
    "loan_pipeline.core.segmentation",
    "loan_pipeline.core.signed",
    "scipy.optimize",
    "sklearn.cluster",
    "sklearn.compose",
    "sklearn.metrics",
    "sklearn.model_selection",
    "sklearn.pipeline",
    "sklearn.preprocessing",
    "loan_pipeline.core.charts",
)


def _import_in_background(modules: tuple[str, ...]) -> None:
    """Import ``modules`` in a daemon thread. The run starts by reading the CSV, work done
    mostly outside the interpreter lock (Arrow's parser and kernels), so the imports the later
    steps need happen meanwhile instead of in their turn. A module a step reaches first is
    simply imported there (Python's import lock makes the two wait for each other)."""
    import importlib
    import threading

    def load() -> None:
        for name in modules:
            try:
                importlib.import_module(name)
            except Exception:  # the step that needs it raises it, with its own context
                pass

    threading.Thread(target=load, name="import-ahead", daemon=True).start()


def dagster_home() -> Path:
    """``DAGSTER_HOME`` (default ``.dagster_home`` in the project), with its dagster.yaml."""
    from loan_pipeline import settings

    os.environ.setdefault("DAGSTER_HOME", str(settings.project_root() / ".dagster_home"))
    home = Path(os.environ["DAGSTER_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        (home / "dagster.yaml").write_text(settings.INSTANCE_YAML)
    return home


def run(
    csv: str | None,
    job_name: str,
    wait: bool = True,
    assets: list[str] | None = None,
    ops: dict | None = None,
    resources: dict | None = None,
) -> int:
    """Run ``job_name`` (only its ``assets`` when given: the others' outputs are read from the
    published snapshot); ``ops`` and ``resources``: run config of its steps and resources."""
    from dagster import AssetKey, DagsterInstance, execute_job
    from dagster._core.definitions.reconstruct import build_reconstructable_job

    from loan_pipeline import settings
    from loan_pipeline.assets.publication import summary_of_run
    from loan_pipeline.core.run_summary import published_line
    from loan_pipeline.definitions import defs
    from loan_pipeline.io import runs
    from loan_pipeline.store import lock
    from loan_pipeline.store.files import StorageError

    dagster_home()
    # The full event log (with stack traces) goes to the instance, where the UI shows it; the
    # terminal gets only the summary below.
    run_config: dict = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
    job_def = defs.resolve_job_def(job_name)  # an unknown job name fails here, before any run
    reads_csv = job_def.graph.has_node_named("ingest_loan_book") and assets is None
    run_config["ops"] = dict(ops or {})
    # a csv_path in the run config names the book when --csv does not (messages, lock label)
    csv = csv or ((run_config["ops"].get("ingest_loan_book") or {}).get("config") or {}).get(
        "csv_path"
    )
    if resources:
        run_config["resources"] = resources
    if csv and reads_csv:
        ingest = dict(run_config["ops"].get("ingest_loan_book") or {})
        ingest["config"] = {**(ingest.get("config") or {}), "csv_path": csv}
        run_config["ops"]["ingest_loan_book"] = ingest
    source = settings.source_csv(csv) if reads_csv else "the published tables"
    what = f"job {job_name}" if assets is None else f"{', '.join(assets)} (job {job_name})"
    print(f"Materializing {what} from {source} ...", flush=True)
    # execute_job, not execute_in_process: the latter keeps every step's output in memory for
    # its result object (gigabytes on a large book); this runs the job's own executor (in this
    # process by default) and keeps nothing but the events.
    job = build_reconstructable_job("loan_pipeline.definitions", "job_named", (job_name,))
    _import_in_background(_STEP_IMPORTS)
    root = settings.storage_dir()
    store = runs.store()
    before = store.manifest()
    # one writer at a time: wait for a run in progress (or, with --no-wait, stop at once)
    # before this run starts, so it never interleaves with another (nor races it to create
    # a fresh Dagster instance)
    try:
        abandoned = lock.acquire(
            root,
            None,
            None if wait else 0,
            on_wait=lambda m: print(m, flush=True),
            label=f"python -m loan_pipeline run ({settings.source_csv(csv).name})",
        )
    except lock.WriterBusy as err:
        print(f"Not started: {err}. Run again later, or without --no-wait.", file=sys.stderr)
        return 2
    except StorageError as err:  # a read-only or full disk, a folder that cannot be made
        print(f"Not started: {err}", file=sys.stderr)
        return 2
    try:
        with DagsterInstance.get() as instance:
            if abandoned:
                runs.mark_abandoned(instance, abandoned)
            result = execute_job(
                job,
                instance=instance,
                run_config=run_config,
                raise_on_error=False,
                asset_selection=[AssetKey(a) for a in assets] if assets else None,
            )
            after = store.manifest()
            if result.success:
                summary = summary_of_run(
                    instance,
                    result.run_id,
                    job_def.asset_layer.asset_graph.toposorted_asset_keys,
                    published_line(before, after, result.run_id),
                )
    finally:
        lock.release(root)
    if not result.success:
        print(f"\nLoan pipeline run {result.run_id} FAILED (source: {source})", file=sys.stderr)
        for message in _failure_messages(result):
            print(message, file=sys.stderr)
        print(published_line(before, after, result.run_id), file=sys.stderr)
        return 1
    # read from the run's own events by the code that logs it as the run's last entry in the UI
    # (published_snapshot): the terminal and the UI say the same
    print(f"\n{summary}")
    return 0


# A run that pins the drift baseline: population_stability on the published tables with the
# baseline it is given, then the publication (a new snapshot: the same tables, that baseline).
PIN_ASSETS = ["population_stability", "published_snapshot"]


def pin_baseline(snapshot: str, wait: bool = True) -> int:
    """Make ``snapshot`` (``current``: the published one) the drift baseline every later run's
    population_stability compares with, in a run of its own (so the UI lists it, it takes the
    writer lock, and it publishes all of it or nothing)."""
    import json

    from loan_pipeline import settings
    from loan_pipeline.io import baseline, runs

    if runs.store().manifest() is None:
        print(
            "Nothing to pin: nothing is published yet (`python -m loan_pipeline run` first; "
            "the first published run is the baseline until another is pinned).",
            file=sys.stderr,
        )
        return 1
    ops = {"population_stability": {"config": {"baseline": snapshot}}}
    code = run(None, "full_refresh", wait, assets=PIN_ASSETS, ops=ops)
    if code == 0:
        pinned = json.loads((settings.storage_dir() / baseline.RECORD).read_text())
        print(
            f"Baseline: snapshot {pinned['snapshot']} ({pinned['how']}, by run "
            f"{pinned['pinned_by']}); its risk model SHA-256 {pinned['model_sha256']}."
        )
    return code


def model_card(out: str) -> int:
    """Copy the model card of the latest run (storage/reports/model_card.md) to ``out``."""
    from loan_pipeline import settings

    source = settings.storage_dir() / "reports" / "model_card.md"
    if not source.exists():
        print(f"no model card at {source}: run `make run` first", file=sys.stderr)
        return 1
    text = source.read_text()
    charts = settings.charts_dir()
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    # the card links the calibration chart; copy it beside the card so the link works there
    chart = charts / "chart_calibration.png"
    if chart.exists():
        (target.parent / "model_card_calibration.png").write_bytes(chart.read_bytes())
        text = text.replace("../charts/chart_calibration.png", "model_card_calibration.png")
    target.write_text(text)
    print(f"model card written to {target}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loan_pipeline", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run_p = sub.add_parser("run", help="materialize the asset graph")
    run_p.add_argument(
        "--csv", help="loan-book CSV (default: $LOAN_BOOK_CSV or the shipped sample)"
    )
    run_p.add_argument(
        "--job", default="full_refresh", help="asset job to run (default: full_refresh)"
    )
    run_p.add_argument(
        "--no-wait",
        action="store_true",
        help="if another run is writing to the storage, stop at once instead of waiting",
    )
    run_p.add_argument(
        "--config",
        metavar="YAML",
        help="run config, as the launchpad takes it (ops: and resources:); --csv wins over "
        "the csv_path it sets",
    )
    pin = sub.add_parser(
        "pin-baseline",
        help="make a published snapshot the drift baseline (with its frozen risk model) that "
        "population_stability compares every later run with",
    )
    pin.add_argument(
        "snapshot",
        nargs="?",
        default="current",
        help="a kept snapshot's id, or its first 8+ characters (SELECT snapshot FROM "
        "meta.snapshots), or 'current' (default): the published one",
    )
    pin.add_argument("--no-wait", action="store_true", help="as for run")
    sub.add_parser("setup-home", help="make DAGSTER_HOME and its dagster.yaml if missing")
    card = sub.add_parser("model-card", help="copy the latest run's model card")
    card.add_argument(
        "--out", default="docs/model_card.md", help="where (default docs/model_card.md)"
    )
    args = parser.parse_args(argv)
    if args.command == "model-card":
        return model_card(args.out)
    if args.command == "pin-baseline":
        return pin_baseline(args.snapshot, wait=not args.no_wait)
    if args.command == "setup-home":
        from dagster import DagsterInstance

        from loan_pipeline.automation import show_automation_on

        home = dagster_home()
        with DagsterInstance.get() as instance:  # its storage made now, not raced for later
            show_automation_on(instance)  # the UI's automation tag as the sensor runs
            print(f"Dagster instance: {home / 'dagster.yaml'}")
        return 0
    config = _run_config_file(args.config) if args.config else {}
    if config is None:
        return 2
    return run(
        args.csv,
        args.job,
        wait=not args.no_wait,
        ops=config.get("ops"),
        resources=config.get("resources"),
    )


def _run_config_file(path: str) -> dict | None:
    """The run config in ``path``, or None after saying why it cannot be used."""
    from loan_pipeline import settings

    try:
        return settings.read_run_config_file(path)
    except settings.RunConfigFileError as err:
        print(f"Not started: {err}", file=sys.stderr)
        return None


if __name__ == "__main__":
    code = main()
    # By now everything is written and closed: the Dagster instance, every DuckDB connection
    # (checkpointed on close), every file (fsynced and renamed into place). Skip the
    # interpreter's teardown, which frees the objects of every imported library one by one
    # (about 0.9 s, measured, whatever the book's size).
    import logging

    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
