"""`make bench`: the pipeline against the notebook-as-a-script, at several book sizes.

For each size the project's generator writes a book (cached in benchmarks/cache/), then, each
measured ``--repeats`` times in fresh folders (median, min, max of wall time and of the peak RSS
of the whole process tree):

- ``pipeline``: ``python -m loan_pipeline run --csv BOOK``, exactly what `make run` runs (a cold
  process: interpreter start and imports included), with a per-asset time breakdown from the
  run's Dagster event log;
- ``baseline``: ``benchmarks/notebook_baseline.py`` (the notebook's method as a plain script);
- ``parse_floor``: pyarrow alone parsing the same CSV (no pipeline can be faster than reading its
  input once).

Ratios (pipeline / baseline, pipeline / parse floor) come from the same invocation. Also
measured: importing the code location against importing dagster alone. Results go to
benchmarks/results/<timestamp>.json and the summary table to docs/performance.md.

    python benchmarks/bench.py            # 500, 100k, 1M, 10M rows
    python benchmarks/bench.py --quick    # up to 100k rows
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "benchmarks" / "cache"
RESULTS = ROOT / "benchmarks" / "results"
SEED = 20261127
FULL_SIZES = [500, 100_000, 1_000_000, 10_000_000]
QUICK_SIZES = [500, 100_000]
PY = sys.executable


def _tree_rss(pid: int) -> int:
    """Resident memory (bytes) of a process and all its descendants, from /proc."""
    total, stack, seen = 0, [pid], set()
    while stack:
        p = stack.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            with open(f"/proc/{p}/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
                        break
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as fh:
                    stack.extend(int(c) for c in fh.read().split())
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return total


def measure(cmd: list[str], env: dict[str, str] | None = None, timeout: float = 7200) -> dict:
    """Wall time and peak RSS of the process tree of ``cmd`` (sampled every 20 ms)."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, _tree_rss(proc.pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate(timeout=timeout)
    wall = time.perf_counter() - started
    stop.set()
    sampler.join()
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd)} failed ({proc.returncode}):\n{out[-3000:]}\n{err[-3000:]}"
        )
    return {"wall_s": wall, "peak_rss_bytes": peak, "stdout": out}


def summary(values: list[float]) -> dict:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def book(rows: int) -> Path:
    path = CACHE / f"book_{rows}_seed{SEED}.csv"
    if not path.exists():
        from loan_pipeline.core.sample import write_loan_book

        print(f"  generating {rows:,} rows -> {path}", flush=True)
        write_loan_book(path, rows=rows, seed=SEED)
    return path


def run_pipeline(csv: Path) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        env = {k: v for k, v in os.environ.items() if k != "LOAN_BOOK_CSV"}
        env.update(DAGSTER_HOME=f"{tmp}/home", LOAN_PIPELINE_STORAGE=f"{tmp}/storage")
        Path(f"{tmp}/home").mkdir()
        Path(f"{tmp}/home/dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        result = measure([PY, "-m", "loan_pipeline", "run", "--csv", str(csv)], env=env)
        result["steps"], result["metrics"] = _run_details(f"{tmp}/home")
    result.pop("stdout")
    return result


def _run_details(home: str) -> tuple[dict, dict]:
    code = (
        "import json; from dagster import DagsterInstance, AssetKey\n"
        f"i = DagsterInstance.from_config({home!r}); r = i.get_runs(limit=1)[0]\n"
        "steps = {s.step_key: s.end_time - s.start_time for s in i.get_run_step_stats(r.run_id)}\n"
        "md = i.get_latest_materialization_event(AssetKey('risk_model')).asset_materialization.metadata\n"
        "keep = ('model_roc_auc', 'model_pr_auc', 'model_brier', 'base_rate_brier', 'days_past_due_only_roc_auc')\n"
        "print(json.dumps([steps, {k: md[k].value for k in keep if k in md}]))"
    )
    out = subprocess.run([PY, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    steps, metrics = json.loads(out.stdout.strip().splitlines()[-1])
    return steps, metrics


def run_baseline(csv: Path) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-baseline-") as tmp:
        result = measure([PY, str(ROOT / "benchmarks" / "notebook_baseline.py"), str(csv), tmp])
    detail = json.loads(result.pop("stdout").strip().splitlines()[-1])
    result["stages"], result["metrics"] = detail["stages"], detail["metrics"]
    return result


def parse_floor(csv: Path) -> dict:
    code = (
        "import time, pyarrow.csv as c; t = time.perf_counter(); "
        f"c.read_csv({str(csv)!r}); print(time.perf_counter() - t)"
    )
    result = measure([PY, "-c", code])
    result["parse_s"] = float(result.pop("stdout").strip())
    return result


def import_times(repeats: int = 5) -> dict:
    out = {}
    for name, stmt in (
        ("dagster", "import dagster"),
        ("code_location", "import loan_pipeline.definitions"),
    ):
        out[name] = summary([measure([PY, "-c", stmt])["wall_s"] for _ in range(repeats)])
    out["ratio"] = out["code_location"]["median"] / out["dagster"]["median"]
    return out


def bench_size(rows: int, repeats: int) -> dict:
    csv = book(rows)
    print(f"{rows:,} rows ({csv.stat().st_size / 1e6:.0f} MB)", flush=True)
    runs: dict[str, list[dict]] = {"pipeline": [], "baseline": [], "parse_floor": []}
    for r in range(repeats):
        for name, fn in (
            ("parse_floor", parse_floor),
            ("pipeline", run_pipeline),
            ("baseline", run_baseline),
        ):
            result = fn(csv)
            runs[name].append(result)
            print(
                f"  [{r + 1}/{repeats}] {name:11s} {result['wall_s']:8.2f} s  peak {result['peak_rss_bytes'] / 1e9:5.2f} GB",
                flush=True,
            )
    out: dict = {"rows": rows, "file_bytes": csv.stat().st_size}
    for name, results in runs.items():
        out[name] = {
            "wall_s": summary([x["wall_s"] for x in results]),
            "peak_rss_gb": summary([x["peak_rss_bytes"] / 1e9 for x in results]),
        }
    out["parse_floor"]["parse_s"] = summary([x["parse_s"] for x in runs["parse_floor"]])
    steps = runs["pipeline"][0]["steps"]
    out["pipeline"]["steps_s"] = {
        k: statistics.median([x["steps"].get(k, 0.0) for x in runs["pipeline"]]) for k in steps
    }
    out["pipeline"]["metrics"] = runs["pipeline"][0]["metrics"]
    out["baseline"]["metrics"] = runs["baseline"][0]["metrics"]
    out["baseline"]["stages_s"] = runs["baseline"][0]["stages"]
    out["ratio_pipeline_over_baseline"] = (
        out["pipeline"]["wall_s"]["median"] / out["baseline"]["wall_s"]["median"]
    )
    out["ratio_pipeline_over_parse"] = (
        out["pipeline"]["wall_s"]["median"] / out["parse_floor"]["parse_s"]["median"]
    )
    return out


def write_report(result: dict) -> Path:
    lines = [
        "# Performance",
        "",
        f"Measured by `make bench` on {result['machine']} at {result['when']} (commit {result['commit']}).",
        "Wall times are medians over the repeats (min–max in brackets); memory is the peak resident",
        "set of the whole process tree. `pipeline` is `python -m loan_pipeline run` (what `make run`",
        "runs, cold); `baseline` is the notebook as a plain script; `parse` is pyarrow alone reading the CSV.",
        "",
        "| rows | pipeline (s) | baseline (s) | pipeline / baseline | parse (s) | pipeline / parse | pipeline peak RSS (GB) | baseline peak RSS (GB) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for s in result["sizes"]:
        p, b = s["pipeline"], s["baseline"]
        lines.append(
            f"| {s['rows']:,} | {p['wall_s']['median']:.2f} [{p['wall_s']['min']:.2f}–{p['wall_s']['max']:.2f}] "
            f"| {b['wall_s']['median']:.2f} [{b['wall_s']['min']:.2f}–{b['wall_s']['max']:.2f}] "
            f"| {s['ratio_pipeline_over_baseline']:.2f} | {s['parse_floor']['parse_s']['median']:.2f} "
            f"| {s['ratio_pipeline_over_parse']:.1f} | {p['peak_rss_gb']['max']:.2f} | {b['peak_rss_gb']['max']:.2f} |"
        )
    imp = result["imports"]
    by_rows = {s["rows"]: s for s in result["sizes"]}
    goals = []

    def goal(text: str, measured: str, met: bool | None) -> None:
        verdict = "not measured" if met is None else ("met" if met else "**not met**")
        goals.append(f"| {text} | {measured} | {verdict} |")

    if 1_000_000 in by_rows:
        s1 = by_rows[1_000_000]
        speedup = 1 / s1["ratio_pipeline_over_baseline"]
        goal("1M rows: at least 8x faster than the baseline", f"{speedup:.2f}x", speedup >= 8)
        goal(
            "1M rows: within 12x of the pyarrow parse",
            f"{s1['ratio_pipeline_over_parse']:.1f}x",
            s1["ratio_pipeline_over_parse"] <= 12,
        )
    else:
        goal("1M rows: at least 8x faster than the baseline", "-", None)
        goal("1M rows: within 12x of the pyarrow parse", "-", None)
    if 10_000_000 in by_rows and 1_000_000 in by_rows:
        s10 = by_rows[10_000_000]
        growth = (
            s10["pipeline"]["wall_s"]["median"] / by_rows[1_000_000]["pipeline"]["wall_s"]["median"]
        )
        goal(
            "10M rows: peak RSS under 8 GB",
            f"{s10['pipeline']['peak_rss_gb']['max']:.2f} GB",
            s10["pipeline"]["peak_rss_gb"]["max"] < 8,
        )
        goal("10M rows: at most 12x the 1M time", f"{growth:.1f}x", growth <= 12)
    else:
        goal("10M rows: completes, peak RSS under 8 GB, at most 12x the 1M time", "-", None)
    if 500 in by_rows:
        r = by_rows[500]["ratio_pipeline_over_baseline"]
        goal("500 rows: cold run at most 1.2x the baseline cold", f"{r:.2f}x", r <= 1.2)
    goal(
        "code location import within 1.5x of `import dagster`",
        f"{imp['ratio']:.2f}x",
        imp["ratio"] <= 1.5,
    )
    lines += ["", "## Goals", "", "| goal | measured | verdict |", "| --- | --- | --- |", *goals]
    lines += [
        "",
        f"Loading the code location: {imp['code_location']['median']:.2f} s against {imp['dagster']['median']:.2f} s "
        f"for `import dagster` alone (ratio {imp['ratio']:.2f}).",
        "",
        "## Per-asset time of the largest book (median, seconds)",
        "",
        "| step | seconds |",
        "| --- | ---: |",
    ]
    largest = result["sizes"][-1]
    for step, seconds in sorted(largest["pipeline"]["steps_s"].items(), key=lambda kv: -kv[1]):
        lines.append(f"| {step} | {seconds:.2f} |")
    lines += [
        "",
        "## Model quality side by side (largest book)",
        "",
        "```json",
        json.dumps(
            {
                "pipeline": largest["pipeline"]["metrics"],
                "baseline": largest["baseline"]["metrics"],
            },
            indent=2,
        ),
        "```",
        "",
    ]
    path = ROOT / "docs" / "performance.md"
    path.write_text("\n".join(lines))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="sizes up to 100,000 rows")
    parser.add_argument("--sizes", help="comma-separated row counts (overrides --quick)")
    parser.add_argument("--repeats", type=int, default=3, help="measurements per size (default 3)")
    args = parser.parse_args(argv)
    sizes = (
        [int(s) for s in args.sizes.split(",")]
        if args.sizes
        else (QUICK_SIZES if args.quick else FULL_SIZES)
    )
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    result = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": commit,
        "machine": f"{os.cpu_count()} cores, {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB",
        "imports": import_times(),
        "sizes": [
            bench_size(rows, args.repeats if rows < 10_000_000 else max(1, args.repeats - 1))
            for rows in sizes
        ],
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{result['when'].replace(':', '')}.json"
    out.write_text(json.dumps(result, indent=2))
    report = write_report(result)
    print(f"results: {out}\nsummary: {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
