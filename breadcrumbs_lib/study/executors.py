"""Where a sweep's units run: standard :class:`concurrent.futures.Executor` objects.

``None`` in :func:`.sweeps.run_sweep` is a pool of :func:`local_processes` (one per core, or
fewer when their models would not fit in memory: :func:`default_workers`), each with
:func:`threads_per_worker` torch / numba threads; :class:`InlineExecutor` runs units in the
calling process; :func:`dask_executor` runs them on a Dask cluster (a local one by default, or
any scheduler address: e.g. Slurm through ``dask-jobqueue``). Any other executor whose workers
can import this library works too.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import psutil

from ..worlds.workbench import AnyWorkbench
from .sweep_units import SweepContext


class InlineExecutor(Executor):
    """A ``concurrent.futures.Executor`` that runs each call in the calling process, at submit
    time (for notebooks on one machine, debugging, and small sweeps)."""

    def submit(self, fn: Callable, /, *args: Any, **kwargs: Any) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as error:  # noqa: BLE001 - delivered through the future, as executors do
            if isinstance(error, KeyboardInterrupt):
                raise
            future.set_exception(error)
        return future


def default_workers(bench: AnyWorkbench, context: SweepContext, available: int | None = None) -> int:
    """How many local worker processes a sweep starts by default: one per core, fewer when their
    copies of the models would not fit in 80% of the memory ``available`` now (default: what the
    operating system reports), and one when the models run on a GPU (the workers would share it).

    A worker holds the base weights, every fine-tuned model and every Fisher the sweep loaded,
    three more copies of the base's size (the rest of the foundation, counted as large as the
    image encoder; the live model; a merged model) and up to ``context.cache_bytes`` of cached
    task vectors and partial sums."""
    if bench.device.type != "cpu":
        return 1
    base = sum(value.numel() * value.element_size() for value in bench.base.values())
    per_worker = base * (1 + len(bench.finetuned) + len(bench.fishers) + 3) + context.cache_bytes
    available = psutil.virtual_memory().available if available is None else available
    return max(1, min(os.cpu_count() or 1, int(0.8 * available) // per_worker))


def threads_per_worker(workers: int | None = None) -> int:
    """The torch / numba threads each of ``workers`` local processes (default: one per core) gets,
    so that together they use every core once."""
    cores = os.cpu_count() or 1
    return max(1, cores // (workers or cores))


def local_processes(workers: int | None = None) -> ProcessPoolExecutor:
    """A pool of ``workers`` fresh ("spawn") local processes (default: one per core) that leave
    Ctrl-C to the process that made them and exit when it dies, even by SIGKILL."""
    return ProcessPoolExecutor(max_workers=workers or os.cpu_count(), mp_context=multiprocessing.get_context("spawn"),
                               initializer=_start_pool_worker, initargs=(os.getpid(),))


def _start_pool_worker(parent: int, interval: float = 0.5) -> None:
    """In a pool worker: ignore SIGINT (the parent handles Ctrl-C and shuts the pool down), and
    exit at once when the parent is gone: pool workers otherwise wait forever on a queue that the
    dead parent can no longer close."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


@contextmanager
def dask_executor(address: str | None = None, *, n_workers: int | None = None) -> Iterator[Executor]:
    """A ``concurrent.futures`` executor on a Dask cluster: the scheduler at ``address``, or a
    local cluster of ``n_workers`` single-threaded worker processes (default: one per core).

    On Slurm, start workers with ``dask-jobqueue`` (``SLURMCluster``) and pass its scheduler
    address; every worker needs this library installed and the artifact cache readable.
    """
    from distributed import Client, LocalCluster  # optional dependency: pip install distributed

    cluster = None
    if address is None:
        cluster = LocalCluster(n_workers=n_workers or os.cpu_count(), threads_per_worker=1, processes=True,
                               dashboard_address=None)
        address = cluster.scheduler_address
    client = Client(address)
    try:
        yield client.get_executor()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


@contextmanager
def executor_for(executor: Executor | None, workers: int, context: SweepContext) -> Iterator[tuple[Executor, SweepContext]]:
    """``(executor, context)``: the given executor and context, or a pool of ``workers`` local
    processes (shut down after) with the context's threads per worker set so that the workers
    share the cores."""
    if executor is not None:
        yield executor, context
        return
    pool = local_processes(workers)
    try:
        yield pool, replace(context, threads=threads_per_worker(workers))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
