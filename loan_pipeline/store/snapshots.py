"""The published state, and each run's own version of it.

Layout of the storage folder (``LOAN_PIPELINE_STORAGE``, default ``storage/``)::

    runs/<run_id>/            a run's own version: everything the run writes goes here
        tables/<table>/       one table: Parquet files (one locally, one per partition on Dask)
        models/<model>.pkl    a fitted model, with <model>.pkl.sha256 beside it
        charts/ exports/ reports/ monitoring/ history/ source.json
        manifest.json         written when the run publishes: every item of the snapshot
        warehouse.duckdb      the snapshot's catalog: DuckDB views over its tables
    current -> runs/<id>      the published snapshot (a symbolic link, swapped in one step)
    warehouse.duckdb, charts, exports, models, reports, monitoring, history -> current/...
                              stable paths: always the published snapshot's
    writer.lock, writer.json  the writer lock (``store.lock``)

A run writes only into its own folder, so nothing a reader sees changes while it runs. A run
that finishes publishes: the items it did not make itself are carried over from the current
snapshot (hard links, no bytes copied), its manifest and catalog are written, so its folder is
a whole snapshot; then ``current`` is pointed at it, one rename that switches the tables, the
files and the catalog together. A reader holding the old catalog open keeps the old snapshot,
whose files stay for ``keep_days``. A run that fails or is killed never touches ``current``:
nothing of it is published.

Tables may live elsewhere (``LOAN_PIPELINE_DATASETS``, an fsspec URL on a Dask cluster): the
same ``runs/<run_id>/tables/<table>`` under that root, complete when ``_SUCCESS`` is there.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from loan_pipeline.store.files import (
    atomic_write_bytes,
    explain,
    link_or_copy,
)

RUNS = "runs"
CURRENT = "current"
CATALOG = "warehouse.duckdb"
MANIFEST = "manifest.json"
SOURCE = "source.json"
TABLES = "tables"
SUCCESS = "_SUCCESS"
DIGEST = ".sha256"
# folders of the published snapshot that keep a stable path under the storage folder
STABLE = (CATALOG, "charts", "exports", "models", "reports", "monitoring", "history")
HISTORY_VIEW = "recovery_strategies_history"
LATEST_VIEW = "latest_recovery_strategies"
# older snapshots a manifest remembers (time travel reaches those still on disk)
MAX_KEPT = 100


@dataclass(frozen=True)
class Store:
    """The storage folder ``root``; tables under ``datasets`` (a folder or an fsspec URL)."""

    root: Path
    datasets: str | None = None

    # --- where things are ------------------------------------------------------------------

    @property
    def tables_root(self) -> str:
        return self.datasets.rstrip("/") if self.datasets else str(self.root)

    def run_dir(self, run_id: str) -> Path:
        return self.root / RUNS / run_id

    def table_location(self, run_id: str, table: str, on_cluster: bool = False) -> str:
        """Where ``run_id`` writes ``table``: its version folder; a table the Dask workers write
        (``on_cluster``) goes under the datasets root instead when one is set (a URL)."""
        if on_cluster and self.datasets:
            return f"{self.tables_root}/{RUNS}/{run_id}/{TABLES}/{table}"
        return str(self.run_dir(run_id) / TABLES / table)

    def current_dir(self) -> Path | None:
        """The published snapshot's folder (None: nothing published yet)."""
        link = self.root / CURRENT
        if not link.is_symlink():
            return None
        target = link.resolve()
        return target if (target / MANIFEST).exists() else None

    def manifest(self, snapshot: Path | None = None) -> dict | None:
        """The manifest of ``snapshot`` (default: the published one)."""
        folder = snapshot or self.current_dir()
        if folder is None:
            return None
        try:
            return json.loads((folder / MANIFEST).read_text())
        except (OSError, ValueError):
            return None

    def published(self) -> list[dict]:
        """Manifests of every snapshot still kept, newest first: the published one, and those it
        followed (a folder with a manifest that ``current`` never named, from a publication
        killed before its rename, is not among them)."""
        current = self.manifest()
        if current is None:
            return []
        found = [current]
        for snapshot in current.get("published_before", []):
            manifest = self.manifest(self.run_dir(snapshot))
            if manifest is not None:
                found.append(manifest)
        return found

    def never_published_runs(self) -> list[str]:
        """Run ids with a version folder that never reached publication (no manifest: a
        selection without ``published_snapshot``, or a run that failed before it)."""
        return [p.name for p in self._run_dirs() if not (p / MANIFEST).exists()]

    def _run_dirs(self) -> list[Path]:
        runs = self.root / RUNS
        return sorted(p for p in runs.iterdir() if p.is_dir()) if runs.is_dir() else []

    # --- finding an item: the run's own version first, then the published snapshot ---------

    def find(self, item: str, lineage: list[str]) -> Path | None:
        """The file ``item`` (e.g. ``charts/chart_x.png``) as the run ``lineage[0]`` sees it: made
        by the run itself or the run it re-executes (``lineage``, newest first), else the
        published one; None when there is none."""
        for run_id in lineage:
            path = self.run_dir(run_id) / item
            if path.exists():
                return path
        current = self.current_dir()
        if current is not None and (current / item).exists():
            return current / item
        return None

    def find_published(self, item: str) -> Path | None:
        return self.find(item, [])

    def find_table(self, table: str, lineage: list[str]) -> str | None:
        """Where ``table`` is for the run ``lineage[0]`` (its own version first, then the
        published snapshot's), or None."""
        for run_id in lineage:
            for on_cluster in (False, True):
                location = self.table_location(run_id, table, on_cluster)
                if self._table_complete(location):
                    return location
        manifest = self.manifest()
        if manifest is not None:
            info = manifest["items"].get(f"{TABLES}/{table}")
            if info is not None:
                return info.get("location") or str(self.current_dir() / TABLES / table)
        return None

    def _table_complete(self, location: str) -> bool:
        if "://" not in location:
            return Path(location).is_dir()
        from fsspec.core import url_to_fs

        fs, path = url_to_fs(location)
        return fs.exists(f"{path}/{SUCCESS}")

    # --- what a run made ---------------------------------------------------------------------

    def run_items(self, run_id: str) -> dict[str, dict]:
        """Every complete item in ``run_id``'s own version: item -> {"run", and "location" for
        a table elsewhere, "sha256" for a model}."""
        items: dict[str, dict] = {}
        folder = self.run_dir(run_id)
        if folder.is_dir():
            for path in sorted(folder.rglob("*")):
                rel = path.relative_to(folder)
                parts = rel.parts
                if any(p.startswith(".") for p in parts) or parts[0] == MANIFEST:
                    continue  # temporary, or what describes the snapshot itself
                if parts[0].startswith(CATALOG):  # the catalog, and a reader's WAL beside it
                    continue
                if parts[0] == TABLES:
                    if len(parts) == 2 and path.is_dir():
                        items[rel.as_posix()] = {"run": run_id}
                    continue
                if path.is_file() and not path.name.endswith(DIGEST):
                    info = {"run": run_id}
                    digest = path.with_name(path.name + DIGEST)
                    if digest.exists():
                        info["sha256"] = digest.read_text().strip()
                    items[rel.as_posix()] = info
        if self.datasets:
            for table in self._remote_tables(run_id):
                items[f"{TABLES}/{table}"] = {
                    "run": run_id,
                    "location": self.table_location(run_id, table, on_cluster=True),
                }
        return items

    def _remote_tables(self, run_id: str) -> list[str]:
        from fsspec.core import url_to_fs

        fs, path = url_to_fs(f"{self.tables_root}/{RUNS}/{run_id}/{TABLES}")
        try:
            entries = fs.ls(path, detail=False)
        except FileNotFoundError:
            return []
        names = [e.rstrip("/").rsplit("/", 1)[-1] for e in entries]
        return [n for n in names if fs.exists(f"{path}/{n}/{SUCCESS}")]

    # --- publishing ----------------------------------------------------------------------------

    def publish(self, run_id: str, lineage: list[str], keep_days: float) -> dict:
        """Make ``run_id``'s version (with what the runs it re-executes made, ``lineage``,
        newest first) the published snapshot, in one step; remove versions older than
        ``keep_days`` first (so the new catalog names only snapshots still on disk). Returns
        the manifest, with the removed run ids under ``removed``.

        The caller holds the writer lock."""
        target = self.run_dir(run_id)
        current = self.current_dir()
        previous = self.manifest(current) if current is not None else None
        if previous is not None and previous["snapshot"] == run_id:  # published already
            earlier = previous.get("published_before", [])
        elif previous is not None:
            earlier = [previous["snapshot"], *previous.get("published_before", [])]
        else:
            earlier = []
        items: dict[str, dict] = {}
        origin: dict[str, Path] = {}
        if previous is not None:
            for item, info in previous["items"].items():
                items[item], origin[item] = info, current / item
        for source_run in reversed(lineage):  # oldest first: a later run's item wins
            for item, info in self.run_items(source_run).items():
                items[item], origin[item] = info, self.run_dir(source_run) / item
        # the snapshot's folder holds every item: carried over as hard links
        for item, info in items.items():
            source = origin[item]
            if "location" in info or _inside(source, target):
                continue
            if source.exists():
                link_or_copy(source, target / item)
                digest = source.with_name(source.name + DIGEST)
                if digest.exists():  # a model's digest travels with it
                    link_or_copy(digest, target / (item + DIGEST))
        manifest = {
            "snapshot": run_id,
            "runs": lineage,
            "published_at": time.time(),
            "items": items,
        }
        source_info = self.read_json(SOURCE, [run_id])  # the run's own, or carried over
        if source_info is not None:
            manifest["source"] = source_info
        removed = self.collect_garbage(keep_days, keep={run_id, *lineage})
        manifest["published_before"] = [s for s in earlier if self.run_dir(s).is_dir()][:MAX_KEPT]
        atomic_write_bytes(target / MANIFEST, json.dumps(manifest, indent=1).encode())
        self._write_catalog(target, manifest)
        self._point_current(run_id)  # the one step that publishes
        self._stable_paths()
        return manifest | {"removed": removed}

    def read_json(self, item: str, lineage: list[str]) -> dict | None:
        path = self.find(item, lineage)
        return json.loads(path.read_text()) if path is not None else None

    def _point_current(self, run_id: str) -> None:
        link = self.root / CURRENT
        tmp = self.root / f".{CURRENT}.{os.getpid()}.tmp"
        try:
            tmp.unlink(missing_ok=True)
            os.symlink(Path(RUNS) / run_id, tmp)  # relative: the folder can be moved
            os.replace(tmp, link)  # atomic: readers see the old snapshot or the new one
        except OSError as err:
            tmp.unlink(missing_ok=True)
            raise explain(err, "publish", link) from err

    def _stable_paths(self) -> None:
        """``<storage>/charts`` etc. as links into ``current``: the same path always shows the
        published files. A folder of an older layout is moved aside, not deleted."""
        for name in STABLE:
            path = self.root / name
            if path.is_symlink():
                continue
            if path.exists():  # an older layout's folder or DuckDB file: kept, out of the way
                path.rename(self.root / f"{name}.before-snapshots")
            os.symlink(Path(CURRENT) / name, path)

    # --- the catalog ---------------------------------------------------------------------------

    def _write_catalog(self, folder: Path, manifest: dict) -> Path:
        """The snapshot's catalog, ``<folder>/warehouse.duckdb``: views over its tables and its
        history, a schema of views per older snapshot still kept (time travel), and
        ``meta.published`` / ``meta.snapshots``."""
        import duckdb

        path = folder / CATALOG
        tmp = folder / f".{CATALOG}.tmp"
        for stale in (tmp, Path(f"{tmp}.wal")):
            stale.unlink(missing_ok=True)
        older = [
            m
            for m in (self.manifest(self.run_dir(s)) for s in manifest["published_before"])
            if m is not None
        ]
        try:
            with duckdb.connect(str(tmp)) as con:
                _describe_snapshot(con, manifest, folder, schema=None)
                con.execute("CREATE SCHEMA meta")  # about the snapshots, apart from the tables
                con.execute(
                    "CREATE TABLE meta.published AS SELECT ? AS snapshot, to_timestamp(?) AS "
                    "published_at, ? AS source_file, ? AS source_sha256",
                    [
                        manifest["snapshot"],
                        manifest["published_at"],
                        manifest.get("source", {}).get("path"),
                        manifest.get("source", {}).get("sha256"),
                    ],
                )
                con.execute(
                    "CREATE TABLE meta.snapshots (snapshot VARCHAR, schema_name VARCHAR, "
                    "published_at TIMESTAMPTZ, source_file VARCHAR, source_sha256 VARCHAR, "
                    "is_current BOOLEAN)"
                )
                for kept in [manifest, *older]:
                    schema = snapshot_schema(kept["snapshot"])
                    con.execute(f'CREATE SCHEMA "{schema}"')
                    try:
                        _describe_snapshot(con, kept, self.run_dir(kept["snapshot"]), schema=schema)
                    except duckdb.IOException:
                        if kept is manifest:
                            raise
                        # an older snapshot with files gone (removed by hand, or a clearing
                        # that was cut short): no time travel to it, and no obstacle to this
                        con.execute(f'DROP SCHEMA "{schema}" CASCADE')
                        continue
                    con.execute(
                        "INSERT INTO meta.snapshots VALUES (?, ?, to_timestamp(?), ?, ?, ?)",
                        [
                            kept["snapshot"],
                            schema,
                            kept["published_at"],
                            kept.get("source", {}).get("path"),
                            kept.get("source", {}).get("sha256"),
                            kept is manifest,
                        ],
                    )
            os.replace(tmp, path)
        except OSError as err:
            tmp.unlink(missing_ok=True)
            raise explain(err, "write the catalog", path) from err
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return path

    # --- clearing old versions -------------------------------------------------------------------

    def collect_garbage(self, keep_days: float, keep: set[str], min_published: int = 2) -> list:
        """Remove run folders older than ``keep_days`` that are not the published snapshot, not
        among the ``min_published`` newest published ones, and not in ``keep`` (the running
        run's lineage). A failed run's folder is kept as long, so it can be re-executed from its
        failure. Returns the run ids removed."""
        current = self.current_dir()
        newest = {m["snapshot"] for m in self.published()[:min_published]}
        cutoff = time.time() - keep_days * 86400
        removed = []
        for folder in self._run_dirs():
            run_id = folder.name
            if run_id in keep or run_id in newest or (current and folder == current):
                continue
            if folder.stat().st_mtime >= cutoff:
                # kept for re-execution; what a killed write left half-done can never complete
                for partial in list(folder.rglob(".*.tmp")):
                    if partial.is_dir():
                        shutil.rmtree(partial, ignore_errors=True)
                    else:
                        partial.unlink(missing_ok=True)
                continue
            shutil.rmtree(folder, ignore_errors=True)
            if self.datasets:
                from fsspec.core import url_to_fs

                fs, path = url_to_fs(f"{self.tables_root}/{RUNS}/{run_id}")
                if fs.exists(path):
                    fs.rm(path, recursive=True)
            removed.append(run_id)
        return removed


def snapshot_schema(snapshot: str) -> str:
    """The catalog schema of a kept snapshot: ``snapshot_`` and the run id's first 8 letters."""
    return f"snapshot_{snapshot.split('-')[0][:8]}"


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
        return True
    except ValueError:
        return False


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _describe_snapshot(con, manifest: dict, folder: Path, schema: str | None) -> None:
    """Views over one snapshot's tables and history, in ``schema`` (None: the main one)."""
    prefix = f'"{schema}".' if schema else ""
    history = []
    for item, info in sorted(manifest["items"].items()):
        parts = item.split("/")
        if parts[0] == TABLES:
            location = info.get("location") or str(folder / item)
            if "://" in location:
                continue  # object storage: read with Arrow or a DuckDB extension of your own
            files = _sql_text(f"{location}/*.parquet")
            con.execute(f'CREATE VIEW {prefix}"{parts[1]}" AS SELECT * FROM read_parquet({files})')
        elif parts[0] == "history" and item.endswith(".parquet"):
            history.append(str(folder / item))
    if history:
        files = "[" + ", ".join(_sql_text(f) for f in history) + "]"
        con.execute(
            f"CREATE VIEW {prefix}{HISTORY_VIEW} AS "
            f"SELECT * FROM read_parquet({files}, union_by_name = true)"
        )
        con.execute(
            f"CREATE VIEW {prefix}{LATEST_VIEW} AS SELECT * FROM {prefix}{HISTORY_VIEW} "
            f"WHERE snapshot_time = (SELECT max(snapshot_time) FROM {prefix}{HISTORY_VIEW})"
        )
