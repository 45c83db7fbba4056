"""`make bench BENCH_ARGS=--dask`: the pipeline on a Dask cluster against the same run locally.

For each size (default 10,000,000 and 30,000,000 rows; the project's generator, cached in
benchmarks/cache/):

- ``local``: ``python -m loan_pipeline run --csv BOOK`` as `make run` runs it (skipped above
  ``--local-up-to`` rows: a 30,000,000-row book does not fit one 24 GB process);
- ``dask``: the same command with ``DASK_SCHEDULER_ADDRESS`` pointing at a
  ``distributed.LocalCluster`` started here: two worker processes of one thread, each bounded to
  ``--worker-memory`` (Dask spills to disk at 60 % of it, pauses at 80 %, restarts the worker at
  95 %), every server on 127.0.0.1.

Measured: wall time; peak RSS of the Dagster process (with its children); peak RSS of each
worker process (sampled every 0.2 s); the per-step times; and, where both ran, whether the two
give the same segments and scores. Results go to benchmarks/results/dask-<timestamp>.json and a
section of docs/performance.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import bench

DEFAULT_SIZES = [10_000_000, 30_000_000]
SECTION_START = "<!-- dask benchmark -->"
SECTION_END = "<!-- /dask benchmark -->"


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class WorkerPeaks:
    """Peak RSS of each worker process of a cluster, sampled in a thread (a restarted worker is
    a new process: its peak is kept under its own address)."""

    def __init__(self, client):
        self.client, self.peaks, self._stop = client, {}, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        pids: dict[str, int] = {}
        last = 0.0
        while not self._stop.is_set():
            if time.time() - last > 5:  # workers may have been restarted
                try:
                    pids = self.client.run(os.getpid)
                except Exception:
                    pass
                last = time.time()
            for address, pid in pids.items():
                self.peaks[address] = max(self.peaks.get(address, 0), _rss(pid))
            time.sleep(0.2)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def _run(csv: Path, tmp: str, extra_env: dict[str, str]) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "LOAN_BOOK_CSV"}
    env.update(DAGSTER_HOME=f"{tmp}/home", LOAN_PIPELINE_STORAGE=f"{tmp}/storage", **extra_env)
    Path(f"{tmp}/home").mkdir(parents=True)
    Path(f"{tmp}/home/dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    result = bench.measure([bench.PY, "-m", "loan_pipeline", "run", "--csv", str(csv)], env=env)
    windows, result["metrics"] = bench._run_details(f"{tmp}/home")
    samples = result.pop("samples")
    result.pop("stdout")
    result["steps"] = {k: end - start for k, (start, end) in windows.items()}
    # the Dagster process's peak during each step: where its memory goes
    result["step_peak_rss_gb"] = {
        k: max((rss for t, rss in samples if start <= t <= end), default=0) / 1e9
        for k, (start, end) in windows.items()
    }
    return result


def _agreement(local_storage: str, dask_storage: str) -> dict:
    """Adjusted Rand index of the segments and largest score difference, local vs cluster."""
    code = f"""
import json, duckdb
from sklearn.metrics import adjusted_rand_score
con = duckdb.connect()
con.execute("ATTACH '{local_storage}/warehouse.duckdb' AS l (READ_ONLY)")
con.execute("ATTACH '{dask_storage}/warehouse.duckdb' AS d (READ_ONLY)")
seg = con.execute('''SELECT a.segment_id, b.segment_id FROM l.borrower_segments a
                     JOIN d.borrower_segments b USING (Borrower_ID)''').fetchnumpy()
diff = con.execute('''SELECT max(abs(a.risk_score - b.risk_score)), count(*)
                      FROM l.risk_scores a JOIN d.risk_scores b USING (Borrower_ID)''').fetchone()
keys = list(seg)
print(json.dumps({{"segments_ari": adjusted_rand_score(seg[keys[0]], seg[keys[1]]),
                  "max_score_difference": diff[0], "borrowers_compared": diff[1]}}))
"""
    out = subprocess.run([bench.PY, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_size(rows: int, worker_memory: str, local_up_to: int) -> dict:
    from distributed import Client, LocalCluster

    csv = bench.book(rows)
    print(f"{rows:,} rows ({csv.stat().st_size / 1e9:.1f} GB), Dask vs local", flush=True)
    out: dict = {"rows": rows, "file_bytes": csv.stat().st_size, "worker_memory": worker_memory}
    with tempfile.TemporaryDirectory(prefix="bench-dask-") as tmp:
        if rows <= local_up_to:
            out["local"] = _run(csv, f"{tmp}/local", {})
            print(f"  local  {out['local']['wall_s']:8.1f} s", flush=True)
        with (
            LocalCluster(
                n_workers=2,
                threads_per_worker=1,
                processes=True,
                memory_limit=worker_memory,
                host="127.0.0.1",
                dashboard_address="127.0.0.1:0",
                worker_dashboard_address="127.0.0.1:0",
                local_directory=f"{tmp}/dask-spill",
            ) as cluster,
            Client(cluster) as client,
            WorkerPeaks(client) as workers,
        ):
            out["dask"] = _run(
                csv, f"{tmp}/dask", {"DASK_SCHEDULER_ADDRESS": cluster.scheduler_address}
            )
        out["dask"]["worker_peak_rss_gb"] = {a: p / 1e9 for a, p in workers.peaks.items()}
        print(
            f"  dask   {out['dask']['wall_s']:8.1f} s, Dagster process peak "
            f"{out['dask']['peak_rss_bytes'] / 1e9:.2f} GB, workers "
            + ", ".join(f"{p:.2f}" for p in out["dask"]["worker_peak_rss_gb"].values())
            + " GB",
            flush=True,
        )
        if "local" in out:
            out["agreement"] = _agreement(f"{tmp}/local/storage", f"{tmp}/dask/storage")
            out["ratio_dask_over_local"] = out["dask"]["wall_s"] / out["local"]["wall_s"]
    return out


def report(result: dict) -> str:
    lines = [
        SECTION_START,
        "## On a Dask cluster (`make bench BENCH_ARGS=--dask`)",
        "",
        f"Measured at {result['when']} (commit {result['commit']}) on {result['machine']}: "
        "`python -m loan_pipeline run` locally, and with `DASK_SCHEDULER_ADDRESS` pointing at a "
        f"`LocalCluster` of two single-threaded worker processes, each bounded to "
        f"{result['worker_memory']} (Dask spills at 60 % of it, pauses at 80 %, restarts the "
        "worker at 95 %), on the same machine. One run each. The Dagster process's peak includes "
        "its children; the workers' peaks are each worker process's own.",
        "",
        "| rows | local (s) | local peak (GB) | Dask (s) | Dask / local | Dagster process peak (GB) "
        "| worker peaks (GB) | segments ARI | max score difference |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |",
    ]
    for s in result["sizes"]:
        local, dask, agree = s.get("local"), s["dask"], s.get("agreement")
        workers = ", ".join(f"{p:.2f}" for p in dask["worker_peak_rss_gb"].values())
        cells = [
            f"{s['rows']:,}",
            f"{local['wall_s']:.1f}" if local else "not run",
            f"{local['peak_rss_bytes'] / 1e9:.2f}" if local else "-",
            f"{dask['wall_s']:.1f}",
            f"{s['ratio_dask_over_local']:.2f}x" if local else "-",
            f"{dask['peak_rss_bytes'] / 1e9:.2f}",
            workers,
            f"{agree['segments_ari']:.4f}" if agree else "-",
            f"{agree['max_score_difference']:.1e}" if agree else "-",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    steps = sorted(
        {k for s in result["sizes"] for k in s["dask"]["steps"]},
        key=lambda k: -result["sizes"][-1]["dask"]["steps"].get(k, 0),
    )
    lines += [
        "",
        "Per step: seconds, local / Dask; and the Dagster process's peak during the step on Dask "
        "(GB):",
        "",
    ]
    lines.append("| step | " + " | ".join(f"{s['rows']:,}" for s in result["sizes"]) + " |")
    lines.append("| --- |" + " ---: |" * len(result["sizes"]))
    for k in steps:
        cells = []
        for s in result["sizes"]:
            local = s.get("local", {}).get("steps", {}).get(k)
            peak = s["dask"].get("step_peak_rss_gb", {}).get(k)
            cells.append(
                (f"{local:.1f}" if local is not None else "-")
                + f" / {s['dask']['steps'].get(k, 0):.1f}"
                + (f" ({peak:.2f} GB)" if peak is not None else "")
            )
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    lines.append(SECTION_END)
    return "\n".join(lines)


def write_section(text: str) -> Path:
    """Put the Dask section into docs/performance.md, replacing an earlier one."""
    path = bench.ROOT / "docs" / "performance.md"
    current = path.read_text() if path.exists() else "# Performance\n"
    if SECTION_START in current:
        before, rest = current.split(SECTION_START, 1)
        after = rest.split(SECTION_END, 1)[1] if SECTION_END in rest else ""
        current = before.rstrip() + "\n\n" + text + after
    else:
        current = current.rstrip() + "\n\n" + text + "\n"
    path.write_text(current)
    return path


def main(sizes: list[int] | None, worker_memory: str, local_up_to: int) -> int:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=bench.ROOT
    ).stdout.strip()
    result = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": commit,
        "machine": f"{os.cpu_count()} cores, "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB",
        "worker_memory": worker_memory,
        "sizes": [],
    }
    bench.RESULTS.mkdir(parents=True, exist_ok=True)
    out = bench.RESULTS / f"dask-{result['when'].replace(':', '')}.json"
    for rows in sizes or DEFAULT_SIZES:
        result["sizes"].append(bench_size(rows, worker_memory, local_up_to))
        out.write_text(json.dumps(result, indent=2))
        path = write_section(report(result))
    print(f"results: {out}\nsummary: {path}")
    return 0
