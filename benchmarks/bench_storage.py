"""`make bench-storage`: what publishing a whole snapshot costs, against the storage before it.

The same book through ``python -m loan_pipeline run`` of this checkout and of a git commit
checked out beside it (default ``1e06a7e``: DuckDB tables replaced one by one, no publication),
runs alternating so both meet the machine in the same state; medians (min–max) of wall time,
peak RSS of the process tree, per-step times and bytes left in the storage folder, and the
ratio of this checkout's medians to the other's. Results go to
benchmarks/results/storage-<timestamp>.json and a section of docs/performance.md.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from bench import RESULTS, ROOT, book, head_commit, run_pipeline, summary

SIZES = [1_000_000, 10_000_000]


def _checkout(ref: str, into: Path) -> Path:
    subprocess.run(
        ["git", "worktree", "add", "--detach", str(into), ref],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    return into


def bench_size(rows: int, repeats: int, before: Path) -> dict:
    csv = book(rows)
    runs: dict[str, list[dict]] = {"before": [], "after": []}
    for r in range(repeats):
        for name, code in (("before", before), ("after", ROOT)):
            result = run_pipeline(csv, code)
            runs[name].append(result)
            print(
                f"  {rows:,} [{r + 1}/{repeats}] {name:6s} {result['wall_s']:8.2f} s  "
                f"peak {result['peak_rss_bytes'] / 1e9:5.2f} GB  "
                f"storage {result['storage_bytes'] / 1e9:5.2f} GB",
                flush=True,
            )
    out: dict = {"rows": rows, "repeats": repeats}
    for name, results in runs.items():
        steps = sorted({k for x in results for k in x["steps"]})
        out[name] = {
            "wall_s": summary([x["wall_s"] for x in results]),
            "peak_rss_gb": summary([x["peak_rss_bytes"] / 1e9 for x in results]),
            "storage_gb": summary([x["storage_bytes"] / 1e9 for x in results]),
            "steps_s": {
                k: statistics.median([x["steps"].get(k, 0.0) for x in results]) for k in steps
            },
            "metrics": results[0]["metrics"],
        }
    for what in ("wall_s", "peak_rss_gb", "storage_gb"):
        out[f"ratio_{what}"] = out["after"][what]["median"] / out["before"][what]["median"]
    return out


def main(ref: str, sizes: list[int] | None, repeats: int) -> int:
    sizes = sizes or SIZES
    result = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": head_commit(),
        "against": ref,
        "sizes": [],
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"storage-{result['when'].replace(':', '')}.json"
    with tempfile.TemporaryDirectory(prefix="bench-before-") as tmp:
        before = _checkout(ref, Path(tmp) / "before")
        try:
            for rows in sizes:
                result["sizes"].append(
                    bench_size(rows, repeats if rows < 10_000_000 else 1, before)
                )
                out.write_text(json.dumps(result, indent=2))
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(before)], cwd=ROOT)
    print(f"results: {out}")
    for s in result["sizes"]:
        print(
            f"{s['rows']:>12,}  wall {s['before']['wall_s']['median']:.2f} -> "
            f"{s['after']['wall_s']['median']:.2f} s ({s['ratio_wall_s']:.3f}x)  peak "
            f"{s['before']['peak_rss_gb']['median']:.2f} -> {s['after']['peak_rss_gb']['median']:.2f}"
            f" GB  storage {s['before']['storage_gb']['median']:.2f} -> "
            f"{s['after']['storage_gb']['median']:.2f} GB"
        )
    return 0
