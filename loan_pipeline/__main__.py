"""Command line: ``python -m loan_pipeline run [--csv PATH] [--job NAME]``.

Materializes the asset graph in this process against the Dagster instance in ``DAGSTER_HOME``
(so the run shows in the UI), then prints what was made, or a readable reason it stopped.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def _failure_messages(result) -> list[str]:
    messages = []
    for event in result.get_step_failure_events():
        user = event.step_failure_data.user_failure_data
        if user is not None and user.description:  # a dagster.Failure raised on purpose
            text = user.description.strip()
            messages.append(f"step {event.step_key} failed:\n  " + text.replace("\n", "\n  "))
            continue
        error = event.step_failure_data.error
        while (
            error is not None
            and error.cause is not None
            and "DagsterExecutionStepExecutionError" in (error.cls_name or "")
        ):
            error = error.cause
        text = (error.message if error is not None else "unknown error").strip()
        messages.append(f"step {event.step_key} failed:\n  " + text.replace("\n", "\n  "))
    return messages


# What the steps of a full run import when they first run (the charts bring matplotlib, seaborn
# and scipy; the models scikit-learn): about 1.3 s of a cold process.
_STEP_IMPORTS = (
    "loan_pipeline.core.risk",
    "loan_pipeline.core.segmentation",
    "sklearn.cluster",
    "sklearn.compose",
    "sklearn.linear_model",
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


def run(csv: str | None, job_name: str) -> int:
    from dagster import DagsterInstance, execute_job
    from dagster._core.definitions.reconstruct import build_reconstructable_job

    from loan_pipeline import settings
    from loan_pipeline.definitions import defs

    os.environ.setdefault("DAGSTER_HOME", str(settings.project_root() / ".dagster_home"))
    home = Path(os.environ["DAGSTER_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():  # as `make setup` writes it: SQLite, no telemetry
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    # The full event log (with stack traces) goes to the instance, where the UI shows it; the
    # terminal gets only the summary below.
    run_config: dict = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
    if csv:
        run_config["ops"] = {"ingest_loan_book": {"config": {"csv_path": csv}}}
    defs.resolve_job_def(job_name)  # an unknown job name fails here, before any run
    print(f"Materializing job {job_name} from {settings.source_csv(csv)} ...", flush=True)
    # execute_job, not execute_in_process: the latter keeps every step's output in memory for
    # its result object (gigabytes on a large book); this runs the job's own executor (in this
    # process by default) and keeps nothing but the events.
    job = build_reconstructable_job("loan_pipeline.definitions", "job_named", (job_name,))
    _import_in_background(_STEP_IMPORTS)
    with DagsterInstance.get() as instance:
        result = execute_job(job, instance=instance, run_config=run_config, raise_on_error=False)
    source = settings.source_csv(csv)
    if not result.success:
        print(f"\nLoan pipeline run {result.run_id} FAILED (source: {source})", file=sys.stderr)
        for message in _failure_messages(result):
            print(message, file=sys.stderr)
        print("Previous outputs are unchanged.", file=sys.stderr)
        return 1
    materialized = sorted(
        e.asset_key.to_user_string() for e in result.get_asset_materialization_events()
    )
    print(
        f"\nLoan pipeline run {result.run_id} succeeded: {len(materialized)} assets from {source}"
    )
    for key in materialized:
        print(f"  - {key}")
    quarantine = result.asset_materializations_for_node("ingest_loan_book")
    for materialization in quarantine:
        if materialization.asset_key.to_user_string() == "quarantined_loans":
            rows = materialization.metadata["quarantined_rows"].value
            total = materialization.metadata["rows_read"].value
            print(
                f"Quarantined: {rows} of {total} rows ({rows / total:.1%}); see table quarantined_loans"
            )
    print(f"Warehouse: {settings.warehouse_path()}")
    print(f"Charts:    {settings.charts_dir()}")
    print(f"Export:    {settings.exports_dir() / 'recovery_strategies.csv'}")
    return 0


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
    card = sub.add_parser("model-card", help="copy the latest run's model card")
    card.add_argument(
        "--out", default="docs/model_card.md", help="where (default docs/model_card.md)"
    )
    args = parser.parse_args(argv)
    if args.command == "model-card":
        return model_card(args.out)
    return run(args.csv, args.job)


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
