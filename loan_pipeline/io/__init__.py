"""The Dagster side of storage: the IO managers, and a run's view of its own version.

- ``runs``: where a run writes (its version folder), what it reads, the writer lock it holds.
- ``tables``: the table IO manager (Parquet, locally or on a Dask cluster's workers).
- ``models``: the model IO manager (pickles verified by SHA-256 before loading).
- ``baseline``: the drift baseline, a snapshot's profiles and its frozen risk model, kept in
  every snapshot.
- ``handoff``: outputs handed between the steps of one in-process run; the columns an input
  asks for.

The storage itself (version folders, publishing, the catalog, the lock, atomic files) is
``loan_pipeline.store``, which knows nothing of Dagster.
"""
