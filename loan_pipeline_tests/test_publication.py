"""A run publishes all of its outputs or none, one writer at a time, readers never blocked.

Real processes on real files: `python -m loan_pipeline run` (what `make run` calls) against one
storage folder and one SQLite Dagster instance, two books told apart by their Borrower_ID prefix
(book A `BRW_*`, book B `BBRW_*`) and their size. The runs a test is about (killed, racing,
refused, failing on a full disk) are commands; the others, its function in the test's process.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from PIL import Image

from loan_pipeline import settings
from loan_pipeline.core.generator import write_loan_book
from loan_pipeline_tests.conftest import PROJECT_ROOT, environment, published_files

ROWS_A, ROWS_B = 2_000, 2_400
# tables of one row per borrower: each must hold exactly one book's borrowers
PER_BORROWER = [*sorted(settings.PARTITIONED_TABLES), "latest_recovery_strategies"]


@pytest.fixture(scope="module")
def books(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("books")
    a = write_loan_book(folder / "bookA.csv", rows=ROWS_A, seed=5)
    b = write_loan_book(folder / "bookB.csv.tmp", rows=ROWS_B, seed=6)
    text = b.read_text().replace("BRW_", "BBRW_").replace("LN_", "LLN_")
    (folder / "bookB.csv").write_text(text)
    b.unlink()
    return {"A": a, "B": folder / "bookB.csv"}


def _env(tmp_path: Path, storage: Path | None = None) -> dict[str, str]:
    home = tmp_path / "dagster_home"
    home.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "LOAN_BOOK_CSV"}
    env.update(DAGSTER_HOME=str(home), LOAN_PIPELINE_STORAGE=str(storage or tmp_path / "storage"))
    return env


def _start(csv: Path, env: dict, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "loan_pipeline", "run", "--csv", str(csv), *extra],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _finish(proc: subprocess.Popen) -> tuple[int, str]:
    out, err = proc.communicate(timeout=600)
    return proc.returncode, out + err


def _run_here(csv: Path, env: dict, capsys, job: str = "full_refresh") -> tuple[int, str]:
    """`python -m loan_pipeline run --csv CSV --job JOB` as its own function does it (the
    writer lock, the instance in ``env``'s DAGSTER_HOME, the storage, what it prints), in this
    process: for the runs whose process is not what a test is about. The runs that are killed,
    that race each other, or whose whole output on a failing disk is checked for a traceback are
    started as commands (``_start``)."""
    from loan_pipeline.__main__ import run

    capsys.readouterr()  # only this run's output
    with environment(
        DAGSTER_HOME=env["DAGSTER_HOME"], LOAN_PIPELINE_STORAGE=env["LOAN_PIPELINE_STORAGE"]
    ):
        code = run(str(csv), job)
    out = capsys.readouterr()
    return code, out.out + out.err


def _published_first(csv: Path, env: dict, capsys) -> None:
    """What a test starts from: ``csv`` run and published, in this process."""
    code, out = _run_here(csv, env, capsys)
    assert code == 0, out
    assert "Published: snapshot" in out


def _book_of(ids: pd.Series) -> str:
    """'A' or 'B' when every id is of one book, else what was found."""
    prefixes = set(ids.str.extract(r"^(B?BRW)_", expand=False))
    return {"BRW": "A", "BBRW": "B"}.get(prefixes.pop(), "?") if len(prefixes) == 1 else "mixed"


def published_book(storage: Path) -> str:
    """The one book every published table, the export, the history's latest snapshot and the
    model card hold; fails the test if any of them holds another (or both)."""
    with duckdb.connect(str(storage / "warehouse.duckdb"), read_only=True) as con:
        ids = {
            table: con.execute(f'SELECT Borrower_ID FROM "{table}"').df()["Borrower_ID"]
            for table in PER_BORROWER
        }
        source = con.execute("SELECT source_file FROM meta.published").fetchall()[0][0]
    export = pd.read_csv(storage / "exports" / "recovery_strategies.csv", dtype=str)
    ids["export"] = export["Borrower_ID"].str.lstrip("'")
    books = {name: _book_of(column) for name, column in ids.items()}
    assert len(set(books.values())) == 1, books
    book = books["validated_loans"]
    reference = set(ids["validated_loans"])
    for name, column in ids.items():
        assert set(column) == reference, name  # the same borrowers everywhere
    rows = {"A": ROWS_A, "B": ROWS_B}[book]
    card = (storage / "reports" / "model_card.md").read_text()
    assert f"used for training and evaluation: {rows:,}" in card
    assert Path(source).name == f"book{book}.csv"
    for png in sorted((storage / "charts").glob("*.png")):
        Image.open(png).load()  # raises on a truncated file
    return book


@pytest.mark.slow
def test_two_cli_runs_at_once_publish_one_whole_book(tmp_path, books):
    """Two runs on different books, started together against one storage (they race for the
    writer lock and for making the Dagster instance): the one that comes second to the lock
    waits (it says so, naming the holder), each publishes whole in turn, and what is published
    afterwards is one book everywhere, the last run's. Each run's final line is true."""
    env = _env(tmp_path)
    first = _start(books["A"], env)
    second = _start(books["B"], env)
    code_a, out_a = _finish(first)
    code_b, out_b = _finish(second)
    assert code_a == 0, out_a
    assert code_b == 0, out_b
    waited = {book for book, out in (("A", out_a), ("B", out_b)) if "waiting for the" in out}
    assert len(waited) == 1, (out_a, out_b)
    for out in (out_a, out_b):  # the wait names the holder: its run, or the CLI and its book
        if "waiting for the" in out:
            said = out.split("waiting for the")[1].splitlines()[0]
            assert re.search(
                r"being written by (run [0-9a-f-]{36}|python -m loan_pipeline run)", said
            )
    last = waited.pop() if waited else "B"
    storage = tmp_path / "storage"
    assert published_book(storage) == last
    current = (storage / "current").resolve().name
    assert f"Published: snapshot {current}" in {"A": out_a, "B": out_b}[last]
    for out in (out_a, out_b):  # each said what it published, true when it was said
        run_id = out.split("Loan pipeline run ")[1].split()[0]
        assert f"Published: snapshot {run_id}" in out
    # the history keeps both snapshots, each whole and labelled with its own book
    with duckdb.connect(str(storage / "warehouse.duckdb"), read_only=True) as con:
        history = con.execute(
            "SELECT snapshot_id, count(*) AS n, count(DISTINCT left(Borrower_ID, 4)) AS prefixes "
            "FROM recovery_strategies_history GROUP BY ALL ORDER BY snapshot_id"
        ).fetchall()
    assert [(s.split("@")[0], n, p) for s, n, p in history] == [
        ("bookA.csv", ROWS_A, 1),
        ("bookB.csv", ROWS_B, 1),
    ]
    with duckdb.connect(str(storage / "warehouse.duckdb"), read_only=True) as con:
        latest = con.execute("SELECT DISTINCT snapshot_id FROM latest_recovery_strategies")
        assert [s.split("@")[0] for (s,) in latest.fetchall()] == [f"book{last}.csv"]


def test_no_wait_fails_at_once_naming_the_holder(tmp_path, books):
    """With --no-wait, a run that finds the writer lock taken stops at once, saying who holds
    it, and starts nothing in Dagster."""
    from dagster import DagsterInstance

    from loan_pipeline.store import lock

    env = _env(tmp_path)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys, time
                from loan_pipeline.store import lock
                lock.acquire({str(tmp_path / "storage")!r}, "some-other-run", None)
                print("held", flush=True)
                time.sleep(60)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=PROJECT_ROOT,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        code, out = _finish(_start(books["A"], env, "--no-wait"))
        assert code == 2, out
        assert time.monotonic() - started < 30
        assert "Not started" in out and "some-other-run" in out and "writer.lock" not in out
        assert lock.holder(tmp_path / "storage")["run_id"] == "some-other-run"
    finally:
        holder.kill()
        holder.wait()
    with DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        assert instance.get_runs() == []


ANALYST = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1], read_only=sys.argv[2] == "ro")
def look():
    snapshot = con.execute("SELECT snapshot FROM meta.published").fetchall()[0][0]
    counts = [con.execute(f'SELECT count(*) FROM "{t}"').fetchall()[0][0]
              for t in ("validated_loans", "risk_scores", "recovery_strategies")]
    prefixes = con.execute(
        "SELECT count(DISTINCT left(Borrower_ID, 4)) FROM recovery_strategies").fetchall()[0][0]
    print(snapshot, *counts, prefixes, flush=True)
look()
sys.stdin.readline()  # held open until the test says
look()
"""


@pytest.mark.slow
def test_an_analysts_open_connection_never_fails_a_run(tmp_path, books, capsys):
    """An analyst holds the catalog open in a process of its own across a run, read-only (over
    a run of book B) and then read-write as the DuckDB CLI does (over a run of book A): each run
    succeeds, and the analyst's view stays whole: the snapshot it opened, every table of one
    book, until it reconnects."""
    env = _env(tmp_path)
    storage = tmp_path / "storage"
    _published_first(books["A"], env, capsys)
    for mode, held, next_book in (("ro", "A", "B"), ("rw", "B", "A")):
        analyst = subprocess.Popen(
            [sys.executable, "-c", ANALYST, str(storage / "warehouse.duckdb"), mode],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        before = analyst.stdout.readline().split()
        code, out = _run_here(books[next_book], env, capsys)  # the analyst is the other process
        analyst.stdin.write("\n")
        analyst.stdin.flush()
        during = analyst.stdout.readline().split()
        analyst.wait(timeout=60)
        assert code == 0, (mode, out)
        assert "Published: snapshot" in out
        assert before == during, (mode, analyst.stderr.read())  # the snapshot it had open, whole
        assert before[1:] == [str({"A": ROWS_A, "B": ROWS_B}[held])] * 3 + ["1"], mode
        assert published_book(storage) == next_book  # a new connection sees the new snapshot


def _wait_for(predicate, proc: subprocess.Popen, timeout: float = 300) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.02)
    return False


def _run_dir(storage: Path, before: set[str]) -> Path | None:
    runs = storage / "runs"
    new = [p for p in runs.iterdir() if p.name not in before] if runs.is_dir() else []
    return new[0] if new else None


@pytest.mark.slow
def test_a_run_killed_before_during_or_after_publishing_leaves_one_whole_state(
    tmp_path, books, capsys
):
    """SIGKILL `python -m loan_pipeline run` on book B while it writes its tables (before
    publishing), the moment its manifest is written (during), and once `current` points at it
    (after): the published state is always one whole book (tables, catalog, files), A's until
    the publish step's rename, B's after; each killed run is marked failed by the next run (the
    next kill point's, the last by the final run), the schedule does not skip on it, and the
    next run succeeds."""
    from dagster import DagsterInstance, DagsterRunStatus, build_schedule_context

    from loan_pipeline.definitions import defs

    env = _env(tmp_path)
    storage = tmp_path / "storage"
    _published_first(books["A"], env, capsys)
    published_a = published_files(storage)

    points = {
        "before": lambda run: (run / "tables" / "risk_scores").is_dir(),
        "during": lambda run: (run / "manifest.json").exists(),
        "after": lambda run: (storage / "current").resolve() == run.resolve(),
    }
    killed: list[str] = []
    for point, reached in points.items():
        known = {p.name for p in (storage / "runs").iterdir()}
        proc = _start(books["B"], env)

        def at_point(known=known, reached=reached) -> bool:
            run = _run_dir(storage, known)
            return run is not None and reached(run)

        hit = _wait_for(at_point, proc)
        assert hit, f"the run ended before the kill point {point!r}: {proc.communicate()}"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        book = published_book(storage)  # whole, one book, whichever it is
        if point == "before":
            assert book == "A" and published_files(storage) == published_a
        if point == "after":
            assert (storage / "current").resolve().name == _run_dir(storage, known).name
        # the schedule compares with what is published, not with the killed run
        with (
            DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance,
            environment(LOAN_BOOK_CSV=str(books["B"]), LOAN_PIPELINE_STORAGE=str(storage)),
        ):
            tick = defs.resolve_schedule_def("daily_refresh").evaluate_tick(
                build_schedule_context(instance=instance)
            )
            wants_run = bool(tick.run_requests)
            assert wants_run == (book == "A"), (point, tick.skip_message)
        with DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
            # every run killed before this one was marked failed when the next run took the
            # writer lock; this one is still STARTED until a run comes after it
            statuses = [r.status for r in reversed(instance.get_runs())]
        assert statuses == [DagsterRunStatus.SUCCESS] + [DagsterRunStatus.FAILURE] * (
            len(killed)
        ) + [DagsterRunStatus.STARTED], (point, statuses)
        killed.append(point)
    code, out = _run_here(books["B"], env, capsys)
    assert code == 0, out
    assert published_book(storage) == "B"
    with DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        statuses = [r.status for r in reversed(instance.get_runs())]
    assert statuses == [DagsterRunStatus.SUCCESS] + [DagsterRunStatus.FAILURE] * 3 + [
        DagsterRunStatus.SUCCESS
    ], statuses
    # what the killed writes left half-done is cleared by the next publication
    assert not list(storage.rglob("*.tmp"))


def test_a_tampered_model_file_is_refused_and_never_loaded(tmp_path, books, capsys):
    """A published cluster_model.pkl replaced by a pickle with a side effect: a run that loads
    it (the charts redraw, and a full refresh matching segments to the last run) fails with a
    message naming the file, and the pickle's code never runs; nor when the manifest is edited
    to vouch for the new file (the digest that counts is in Dagster's event log)."""
    env = _env(tmp_path)
    storage = tmp_path / "storage"
    _published_first(books["A"], env, capsys)
    marker = tmp_path / "the pickle ran"

    class SideEffect:
        def __reduce__(self):
            return (Path.touch, (marker,))

    model = storage / "models" / "cluster_model.pkl"
    before = published_files(storage)
    model.write_bytes(pickle.dumps(SideEffect()))  # in place, as an attacker with write access
    tampered = published_files(storage)
    for job in ("charts_only", "full_refresh"):
        code, out = _run_here(books["B"], env, capsys, job)
        assert code == 1, out
        assert "cluster_model.pkl was changed after it was written" in out, out
        assert "Nothing was published" in out
        assert not marker.exists()
        assert published_files(storage) == tampered
    assert set(before) == set(tampered)

    manifest_path = storage / "current" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["items"]["models/cluster_model.pkl"] = {
        "run": "not-a-run",
        "sha256": hashlib.sha256(model.read_bytes()).hexdigest(),
    }
    manifest_path.write_text(json.dumps(manifest))
    code, out = _run_here(books["B"], env, capsys, "charts_only")
    assert code == 1, out
    assert "cluster_model.pkl was changed after it was written" in out, out
    assert "restore the file from an intact snapshot" in out
    assert not marker.exists()


@pytest.fixture
def small_disk(tmp_path):
    """A 24 MB tmpfs (the machine allows it as root; skipped where it does not)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)], capture_output=True
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {made.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.slow
def test_a_disk_that_fills_midway_publishes_nothing_and_says_so(
    tmp_path, books, small_disk, capsys
):
    """The storage's disk fills while a run writes: the run fails with 'no space left on the
    device' naming the file, in the CLI's output; the published state is unchanged; once
    there is room, the next run succeeds."""
    env = _env(tmp_path, storage=small_disk / "storage")
    storage = small_disk / "storage"
    _published_first(books["A"], env, capsys)
    before = published_files(storage)
    run_size = sum(p.stat().st_size for p in (storage / "current").resolve().rglob("*"))
    free = os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize
    ballast = small_disk / "ballast"
    ballast.write_bytes(b"\0" * max(0, free - run_size // 3))  # room for a third of a run
    code, out = _finish(_start(books["B"], env))
    assert code == 1, out
    assert "no space left on the device" in out, out
    assert "max_retries" not in out
    assert "Nothing was published: the published snapshot is still" in out
    assert published_files(storage) == before
    # a disk with no room at all: not even the lock's record can be written; the run still
    # fails with the cause and the truth about what is published
    with open(small_disk / "more-ballast", "wb") as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
        except OSError:
            pass
    code, out = _finish(_start(books["B"], env))
    assert code == 1, out
    assert "no space left on the device" in out and "Traceback" not in out, out
    assert "Nothing was published: the published snapshot is still" in out
    assert published_files(storage) == before
    (small_disk / "more-ballast").unlink()
    ballast.unlink()
    code, out = _run_here(books["B"], env, capsys)
    assert code == 0, out
    assert published_book(storage) == "B"


def test_reexecuting_a_failed_run_from_its_failure_reads_its_own_version(
    tmp_path, books, monkeypatch
):
    """A run that fails at recovery_strategies publishes nothing; re-executed from its failure
    (as the UI's button does), the new run reads the tables its parent made (from the parent's
    version folder, not the published snapshot), and publishes the whole book."""
    from dagster import DagsterInstance, ReexecutionOptions, execute_job
    from dagster._core.definitions.reconstruct import build_reconstructable_job

    from loan_pipeline.core import strategy

    storage = tmp_path / "storage"
    env = _env(tmp_path)
    job = build_reconstructable_job("loan_pipeline.definitions", "job_named", ("full_refresh",))

    def config(book: str) -> dict:
        return {"ops": {"ingest_loan_book": {"config": {"csv_path": str(books[book])}}}}

    real = strategy.strategy_table

    def broken(*args, **kwargs):
        raise RuntimeError("the strategy step broke")

    with environment(LOAN_PIPELINE_STORAGE=str(storage), DAGSTER_HOME=env["DAGSTER_HOME"]):
        with DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
            assert execute_job(job, instance=instance, run_config=config("A")).success
            monkeypatch.setattr(strategy, "strategy_table", broken)
            failed = execute_job(
                job, instance=instance, run_config=config("B"), raise_on_error=False
            )
            assert not failed.success
            assert published_book(storage) == "A"
            monkeypatch.setattr(strategy, "strategy_table", real)
            again = execute_job(
                job,
                instance=instance,
                reexecution_options=ReexecutionOptions.from_failure(failed.run_id, instance),
                raise_on_error=False,
            )
            assert again.success
    assert published_book(storage) == "B"
    items = json.loads((storage / "current" / "manifest.json").read_text())["items"]
    assert items["tables/validated_loans"]["run"] == failed.run_id  # made by the parent
    assert items["tables/recovery_strategies"]["run"] == again.run_id


def test_a_read_only_storage_says_so_and_starts_nothing(tmp_path, books, small_disk, capsys):
    """The storage's file system turned read-only after a good run: the next run stops before
    starting, saying where and why, with no traceback; what was published still reads."""
    env = _env(tmp_path, storage=small_disk / "storage")
    _published_first(books["A"], env, capsys)
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    code, out = _finish(_start(books["B"], env))
    assert code == 2, out
    assert "Not started: could not take the writer lock in" in out
    assert "read-only" in out and "Traceback" not in out, out
    assert published_book(small_disk / "storage") == "A"
