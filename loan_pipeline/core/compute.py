"""How heavy numeric work runs.

On the 2-core machines this project targets, scikit-learn's KMeans and LogisticRegression run
several times faster with one BLAS/OpenMP thread than with the default thread pools (measured:
KMeans on 200,000 x 9, n_init=10: 11.0 s with the default pools, 2.2 s with one thread; on
5,000 rows 0.41 s vs 0.01 s): the threads spend their time synchronising, not computing. So the
model code runs inside :func:`single_threaded`.
"""

from __future__ import annotations

from contextlib import contextmanager


@contextmanager
def single_threaded():
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield
