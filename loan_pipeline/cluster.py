"""The Dask side of storage: the process's client, and tables kept as partitioned Parquet.

Used only when ``DASK_SCHEDULER_ADDRESS`` is set (``settings.DaskClusterResource``). A table of
one row per borrower is written on the cluster by the workers themselves, one Parquet file per
partition, into the run's own version (``loan_pipeline.store``): the storage folder's
``runs/<run_id>/tables/<table>/``, or the same path under ``LOAN_PIPELINE_DATASETS`` (any fsspec
URL the workers can reach). Nothing a run writes is seen by readers until the run publishes.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from loan_pipeline import settings
from loan_pipeline.core.partitions import is_dask

if TYPE_CHECKING:
    import pandas as pd

# about this much memory (pandas) per partition when a table made in this process is written
PARTITION_BYTES = 128 * 2**20

_lock = threading.Lock()
_clients: dict[str, object] = {}


def client_for(address: str):
    """The process's client of the scheduler at ``address``, made once, and made Dask's default
    each time it is asked for, so every ``compute`` and ``persist`` that follows runs on that
    cluster (a process that talks to two clusters, as the tests do, never mixes them)."""
    from distributed import Client
    from distributed.client import _set_global_client

    with _lock:
        client = _clients.get(address)
        if client is None or client.status in ("closing", "closed"):
            client = Client(address, set_as_default=True, timeout="30s")
            client.register_plugin(_copy_on_write_plugin(), name="loan-pipeline-copy-on-write")
            _clients[address] = client
        _set_global_client(client)
        return client


def _copy_on_write_plugin():
    """A worker plugin that runs each worker's pandas with copy-on-write, as the Dagster process
    runs its steps (``io.tables``): a partition's column selections copy nothing until written.
    Registered by name, so a worker that joins later (a killed one replaced) gets it too."""
    from distributed.diagnostics.plugin import WorkerPlugin

    class CopyOnWrite(WorkerPlugin):
        def setup(self, worker) -> None:
            import pandas as pd

            pd.set_option("mode.copy_on_write", True)

    return CopyOnWrite()


def client():
    """The client of the configured cluster (``DASK_SCHEDULER_ADDRESS``)."""
    address = settings.dask_scheduler_address()
    if address is None:
        raise RuntimeError("no Dask cluster: DASK_SCHEDULER_ADDRESS is not set")
    return client_for(address)


def close_clients() -> None:
    """Close every client this process made (tests; a long-lived process never needs to)."""
    with _lock:
        for made in _clients.values():
            made.close()
        _clients.clear()


def _fs(url: str):
    from fsspec.core import url_to_fs

    return url_to_fs(url)


def to_dask(frame: pd.DataFrame):
    """A pandas frame as a Dask frame of about ``PARTITION_BYTES`` per partition."""
    import dask.dataframe as dd

    size = int(frame.memory_usage(index=False, deep=False).sum())
    return dd.from_pandas(frame, npartitions=max(1, -(-size // PARTITION_BYTES)), sort=False)


def write_dataset(frame, location: str) -> dict:
    """Write ``frame`` (Dask, or pandas made in this process) on the workers as the table at
    ``location`` (a folder of the run's version, or a URL), a file per partition, all or
    nothing: on a local disk into a temporary folder renamed into place; on object storage,
    complete once ``_SUCCESS`` is written. Returns its row count and rows per partition."""
    import dask

    from loan_pipeline.store.files import atomic_folder
    from loan_pipeline.store.snapshots import SUCCESS

    client()  # computations below run on the cluster
    if not is_dask(frame):
        frame = to_dask(frame)

    def write(target: str) -> list[int]:
        parts = frame.to_parquet(
            str(target),
            write_index=False,
            compute=False,
            name_function=lambda i: f"part.{i:05d}.parquet",
        )
        lengths = frame.map_partitions(len, meta=(None, "int64"))
        _, rows = dask.compute(parts, lengths)
        return [int(n) for n in rows]

    if "://" in location:
        fs, root = _fs(location)
        if fs.exists(root):
            fs.rm(root, recursive=True)
        rows = write(location)
        fs.pipe_file(f"{root}/{SUCCESS}", b"")
    else:
        from pathlib import Path

        def write_whole(target: Path) -> list[int]:
            rows = write(target)
            (target / SUCCESS).touch()  # as on object storage: complete, wherever it is
            return rows

        rows = atomic_folder(Path(location), write_whole)
    return {"rows": sum(rows), "partition_rows": rows, "url": location}


def _parquet_files(location: str) -> tuple:
    fs, root = _fs(location)
    files = sorted(f for f in fs.ls(root, detail=False) if f.endswith(".parquet"))
    return fs, files


def read_dataset(location: str, columns: list[str] | None = None):
    """The table at ``location`` as a Dask frame (only ``columns``, if given): exactly one
    partition per file, in the order written, so tables made from the same partitions line up
    partition by partition."""
    import dask.dataframe as dd
    import pyarrow.parquet as pq

    client()
    fs, files = _parquet_files(location)
    schema = pq.read_schema(files[0], filesystem=fs)
    if columns is not None:
        schema = pa_select(schema, columns)
    meta = _read_part(None, schema=schema)
    return dd.from_map(_read_part, files, fs=fs, columns=columns, meta=meta, enforce_metadata=False)


def arrow_dataset(location: str):
    """The table at ``location`` as a pyarrow dataset (scanned lazily, a file at a time:
    DuckDB can query it wherever the files are)."""
    import pyarrow.dataset as ds

    fs, files = _parquet_files(location)
    return ds.dataset(files, format="parquet", filesystem=fs)


def pa_select(schema, columns: list[str]):
    import pyarrow as pa

    return pa.schema([schema.field(c) for c in columns], metadata=schema.metadata)


def _read_part(path, fs=None, columns=None, schema=None) -> pd.DataFrame:
    """One partition: one Parquet file as pandas with Arrow-backed text (None: the empty frame
    of ``schema``)."""
    import pyarrow.parquet as pq

    from loan_pipeline.store.tables import arrow_to_pandas

    if path is None:
        return arrow_to_pandas(schema.empty_table())
    return arrow_to_pandas(pq.read_table(path, columns=columns, filesystem=fs))


def _bucket_repeats(k: int, *buckets: list) -> pd.DataFrame:
    """The repeated ids of hash bucket ``k``, from every block's buckets."""
    from loan_pipeline.core.ingest_blocks import find_repeats

    return find_repeats([b[k] for b in buckets])


def _first_error(futures: list) -> None:
    """Wait for ``futures``; raise the error of the earliest one (in block order) that failed,
    so a broken file gets the message a whole-file read gives."""
    from distributed import wait

    wait(futures)
    for future in futures:
        if future.status == "error":
            raise future.exception()


def read_loan_book_on_cluster(
    path,
    block_bytes: int,
    *,
    max_bytes: int | None,
    max_quarantine_share: float,
    min_rows: int,
):
    """The loan book read in blocks on the workers (``core.ingest_blocks``: the same parsing
    and rules as a whole-file read, and the same result): ``(raw, validated, quarantined,
    counts)``, the first two Dask frames of one partition per block, held on the workers; the
    quarantine table (small) and the counts here. A broken file, or too many bad rows, raises
    the whole-file read's error before anything is returned."""
    import dask.dataframe as dd

    from loan_pipeline.core import ingest_blocks as blocks_
    from loan_pipeline.core.ingest_header import inspect_header, source_path
    from loan_pipeline.core.ingest_quarantine import quarantine_table
    from loan_pipeline.core.ingest_verdict import block_counts, check_book, combine_counts

    c = client()
    path = source_path(path)
    header = inspect_header(path, max_bytes)
    blocks = blocks_.plan_blocks(path, block_bytes)
    n = len(blocks)
    lines = c.map(blocks_.count_lines, [path] * n, blocks, pure=False)
    _first_error(lines)
    blocks = blocks_.number_blocks(blocks, c.gather(lines))
    reads = c.map(blocks_.read_block, [path] * n, [header] * n, blocks, pure=False)
    _first_error(reads)
    # repeated ids across blocks: each block's ids hashed into one bucket per worker, each
    # bucket searched on its own
    n_buckets = max(1, len(c.scheduler_info()["workers"]))
    buckets = c.map(_ids_in_buckets, reads, n_buckets=n_buckets)
    repeats = c.gather([c.submit(_bucket_repeats, k, *buckets) for k in range(n_buckets)])
    splits = c.map(blocks_.split_block, reads, blocks_.repeats_by_block(repeats, blocks))
    _first_error(splits)
    counts = combine_counts(c.gather(c.map(block_counts, reads, splits)), header)
    check_book(path, counts, max_quarantine_share=max_quarantine_share, min_rows=min_rows)
    quarantined = blocks_.concat_frames(c.gather(c.map(quarantine_table, reads, splits)))
    raw = c.map(_frame_of, reads)
    valid = c.map(_valid_of, splits)
    return (
        dd.from_delayed(raw, meta=c.submit(_empty, raw[0]).result(), verify_meta=False),
        dd.from_delayed(valid, meta=c.submit(_empty, valid[0]).result(), verify_meta=False),
        quarantined,
        counts,
    )


def _ids_in_buckets(read, n_buckets: int) -> list:
    from loan_pipeline.core.ingest_blocks import block_ids, id_buckets

    return id_buckets(block_ids(read), n_buckets)


def _frame_of(read) -> pd.DataFrame:
    return read.frame


def _valid_of(split) -> pd.DataFrame:
    return split.valid


def _empty(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.iloc[:0]
