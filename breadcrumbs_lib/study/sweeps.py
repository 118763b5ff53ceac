"""The sweep engine: task subsets times a hyperparameter grid, evaluated into a results store.

    context = SweepContext(MINI, "B-32")
    sweep = Sweep("breadcrumbs", grid(alpha=[0.2, 0.4], beta=0.85, gamma=0.01), subsets="all")
    frame = run_sweep(sweep, context)             # local processes, outputs/mini/results.sqlite

:func:`run_sweep`

1. prepares the workbench once in the calling process (building the cache if needed, so that
   workers only ever load it; the same for data a method needs besides the weights, such as
   Fisher merging's Fishers) and registers the run, identified by the checkpoints' digests;
2. evaluates the fine-tuned models (the normalisers), then the zero-shot model and every merged
   model: one :class:`.sweep_units.Unit` per ``(method, hyperparameters, subset)``, submitted to
   a standard :class:`concurrent.futures.Executor`;
3. writes each unit's records as soon as it finishes, and skips units whose records are all
   stored: re-running an interrupted sweep finishes it, re-running a finished one costs nothing.

Units are submitted grouped by everything but ``alpha``, subsets in depth-first prefix order and
alphas innermost, so a worker's merger reuses its masks and partial sums from unit to unit.

Executors: ``None`` (default) is a pool of local processes, one per core; :class:`InlineExecutor`
runs units in the calling process; :func:`dask_executor` runs them on a Dask cluster (a local one
by default, or any scheduler address: e.g. Slurm through ``dask-jobqueue``). Any other
``concurrent.futures.Executor`` whose workers can import this library works too.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd
import psutil
from tqdm.auto import tqdm

from .. import __version__
from ..core.merging import check_hyperparameters, method_spec
from ..core.state_dicts import state_dict_digest
from ..worlds.workbench import AnyWorkbench, artifact_key
from .results_store import (
    ResultsStore,
    RunIdentity,
    default_store_path,
    hyperparameters_key,
    records_for,
    setting_of,
)
from .sweep_units import (
    FINETUNED,
    ZERO_SHOT,
    SweepContext,
    Unit,
    UnitResult,
    evaluate_unit,
    evaluation_splits,
    model_input,
    workbench_for,
)
from .task_subsets import all_subsets, canonical, parse_subset_name, subset_name
from .tuning import best_per_subset

Score = str | Sequence[str]  # "all", "observed", or task names


@dataclass(frozen=True)
class Sweep:
    """One merge ``method`` over a hyperparameter ``grid`` and task ``subsets``.

    ``subsets``: ``"all"`` (the ``2^T - 1`` non-empty ones) or a list of task-name lists.
    ``splits``: the evaluation splits (``"val"``, ``"test"``). ``score``: which tasks each merged
    model is scored on: ``"all"`` the workbench's tasks (Fig. 2a; the observed ones are a filter
    of it, Fig. 2b), ``"observed"`` only the subset's, or a list of task names.
    """

    method: str
    grid: Sequence[Mapping[str, Any]] = ({},)
    subsets: str | Sequence[Sequence[str]] = "all"
    splits: Sequence[str] = ("val", "test")
    score: Score = "all"

    def units(self, tasks: Sequence[str]) -> list[Unit]:
        """This sweep's units over the workbench's ``tasks``, in submission order."""
        subsets = all_subsets(tasks) if self.subsets == "all" else _ordered([canonical(s, tasks) for s in self.subsets], tasks)
        units = []
        for group in _groups_but_alpha(self.grid):
            for subset in subsets:
                for settings in group:
                    scored = _scored(self.score, subset, tasks)
                    units.append(Unit(self.method, tuple(sorted(settings.items())), subset, scored, tuple(self.splits)))
        return units

    def check(self, tasks: Sequence[str]) -> None:
        """``ValueError`` for an unknown method, hyperparameter, value or task, or no split: all
        that can be checked before the workbench is built (see :meth:`check_splits`)."""
        if not self.grid:
            raise ValueError(f"the grid of the {self.method!r} sweep is empty")
        for settings in self.grid:
            check_hyperparameters(self.method, settings)
        if not self.splits:
            raise ValueError(f"the {self.method!r} sweep names no split")
        if isinstance(self.subsets, str) and self.subsets != "all":
            raise ValueError(f"subsets must be 'all' or a list of task lists, got {self.subsets!r}")
        if self.subsets != "all":
            for subset in self.subsets:
                canonical(subset, tasks)
        if isinstance(self.score, str) and self.score not in ("all", "observed"):
            raise ValueError(f"score must be 'all', 'observed' or a list of tasks, got {self.score!r}")
        if not isinstance(self.score, str):
            canonical(self.score, tasks)

    def check_splits(self, splits: Sequence[str]) -> None:
        """``ValueError`` for a split the workbench does not have."""
        unknown = sorted(set(self.splits) - set(splits))
        if unknown:
            raise ValueError(f"unknown split(s) {unknown}; expected some of {list(splits)}")


def grid(**axes: Any) -> list[dict[str, Any]]:
    """Cartesian product of hyperparameter axes: ``grid(alpha=[0.1, 0.2], beta=0.85)`` ->
    ``[{"alpha": 0.1, "beta": 0.85}, {"alpha": 0.2, "beta": 0.85}]`` (scalars are one-value axes)."""
    names = list(axes)
    values = [value if isinstance(value, (list, tuple, range)) else [value] for value in axes.values()]
    return [dict(zip(names, combination)) for combination in itertools.product(*values)]


def run_sweep(
    sweeps: Sweep | Sequence[Sweep],
    context: SweepContext,
    *,
    store: ResultsStore | str | Path | None = None,
    executor: Executor | None = None,
    workers: int | None = None,
    progress: bool = True,
    on_result: Callable[[UnitResult], None] | None = None,
) -> pd.DataFrame:
    """Evaluate every unit of ``sweeps`` not yet in ``store`` and return the run's records.

    Args:
        sweeps: one :class:`Sweep` or several (run in order).
        context: which preset, size, seed and cache (see :class:`.SweepContext`).
        store: the results store (default ``outputs/<preset>/results.sqlite``).
        executor: where units run; ``None`` makes a pool of ``workers`` local processes
            (default: :func:`default_workers`) and shuts it down at the end.
        progress: show a progress bar.
        on_result: called in this process after each unit's records are committed.

    Returns:
        the records of the sweeps' units and of the baselines (``"finetuned"``, ``"zeroshot"``)
        on the sweeps' splits (see :meth:`.ResultsStore.frame`): exactly what was asked for, even
        when the store holds more of this run (other grids, subsets or splits evaluated before),
        so that a result never depends on what ran earlier.
    """
    sweeps = [sweeps] if isinstance(sweeps, Sweep) else list(sweeps)
    for sweep in sweeps:  # before any work: building the workbench may take minutes
        sweep.check(context.task_names)
    bench = workbench_for(context)
    splits = sorted({split for sweep in sweeps for split in sweep.splits}) or evaluation_splits(bench)
    for sweep in sweeps:
        sweep.check_splits(evaluation_splits(bench))
    store = store if isinstance(store, ResultsStore) else ResultsStore(store or default_store_path(context.preset.name))
    run_id = store.register_run(run_identity(context, bench))
    _prepare_inputs(sweeps, bench)

    baselines = [Unit(FINETUNED, (), (task,), (task,), tuple(splits)) for task in bench.tasks]
    merged = [Unit(ZERO_SHOT, (), (), tuple(bench.tasks), tuple(splits))]
    merged += [unit for sweep in sweeps for unit in sweep.units(bench.tasks)]
    with _executor_for(executor, workers or default_workers(bench, context), context) as (pool, worker_context):
        _execute(baselines, pool, worker_context, store, run_id, progress, on_result, "evaluating fine-tuned models")
        _execute(merged, pool, worker_context, store, run_id, progress, on_result,
                 " + ".join(sweep.method for sweep in sweeps))
    wanted = set().union(*(_expected_keys(unit) for unit in [*baselines, *merged]))
    frame = store.frame(run_id)
    keys = zip(frame["method"], frame["hyperparameters"], frame["subset"], frame["scored_task"], frame["split"])
    return frame[[key in wanted for key in keys]].reset_index(drop=True)


def _prepare_inputs(sweeps: Sequence[Sweep], bench: AnyWorkbench) -> None:
    """Compute (and cache) in this process the data the sweeps' methods need besides the weights
    (e.g. the Fishers), so that workers only ever load it."""
    for name in sorted({name for sweep in sweeps for name in method_spec(sweep.method).inputs}):
        for task in tqdm(bench.tasks, desc=f"merge inputs: {name}", leave=False):
            model_input(bench, name, task)


def run_selection_sweep(
    sweeps: Sweep | Sequence[Sweep],
    context: SweepContext,
    *,
    select_split: str = "val",
    report_split: str = "test",
    scope: str = "observed",
    **options: Any,
) -> pd.DataFrame:
    """The paper's protocol at a fraction of the cost: evaluate every setting of the grids on
    ``select_split`` only, choose each subset's best (see :func:`.tuning.best_per_subset`), and
    evaluate only the chosen settings on ``report_split``, on the tasks each sweep scores.

    With ``scope="observed"`` the choice reads only the subset's own tasks, so the selecting
    stage scores only those (a subset of ``k`` of ``T`` tasks costs ``k`` evaluations instead of
    ``T``); the reporting stage scores what each sweep asks for (all tasks for Fig. 2a).
    ``options`` go to :func:`run_sweep`."""
    sweeps = [sweeps] if isinstance(sweeps, Sweep) else list(sweeps)
    selecting = [replace(sweep, splits=(select_split,), score="observed" if scope == "observed" else sweep.score)
                 for sweep in sweeps]
    frame = run_sweep(selecting, context, **options)
    chosen = best_per_subset(frame[frame["method"].isin([s.method for s in sweeps])], select_split=select_split,
                             report_split=report_split, scope=scope)
    reporting = [
        Sweep(row.method, [setting_of(row.hyperparameters)], [parse_subset_name(row.subset)], (report_split,),
              next(s.score for s in sweeps if s.method == row.method))
        for row in chosen.itertuples()
    ]
    return run_sweep([*selecting, *reporting], context, **options)


def run_identity(context: SweepContext, bench: AnyWorkbench) -> RunIdentity:
    """What identifies the results of ``bench``: preset, size, seed, library version, recipe and
    the digests of the base and of every fine-tuned checkpoint."""
    base_digest, finetuned_digests = _checkpoint_digests(bench)
    return RunIdentity(
        preset=context.preset.name,
        size=context.size,
        seed=context.seed,
        library_version=__version__,
        artifact_key=artifact_key(context.preset, context.preset.model_name(context.size), context.seed),
        base_digest=base_digest,
        finetuned_digests=finetuned_digests,
    )


_DIGESTS: list[tuple[AnyWorkbench, str, dict[str, str]]] = []  # the last workbench digested


def _checkpoint_digests(bench: AnyWorkbench) -> tuple[str, dict[str, str]]:
    """SHA-256 digests of ``bench``'s base and fine-tuned models, computed once per workbench
    object: every sweep of a notebook calls this, and hashing ViT-L/14 checkpoints takes seconds."""
    if not _DIGESTS or _DIGESTS[0][0] is not bench:
        _DIGESTS[:] = [(bench, state_dict_digest(bench.base),
                        {task: state_dict_digest(state) for task, state in bench.finetuned.items()})]
    _, base_digest, finetuned_digests = _DIGESTS[0]
    return base_digest, dict(finetuned_digests)


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


# --------------------------------------------------------------------------------- internals
@contextmanager
def _executor_for(executor: Executor | None, workers: int, context: SweepContext):
    """``(executor, context)``: the given executor, or a local pool of ``workers`` processes that
    is shut down after, with torch / numba threads per worker set so that the workers share the
    cores."""
    if executor is not None:
        yield executor, context
        return
    pool = local_processes(workers)
    try:
        yield pool, replace(context, threads=threads_per_worker(workers))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _execute(units: list[Unit], executor: Executor, context: SweepContext, store: ResultsStore, run_id: str,
             progress: bool, on_result: Callable[[UnitResult], None] | None, description: str) -> None:
    """Submit the units whose records are not all stored; store each result as it comes."""
    stored = store.stored_keys(run_id)
    pending = [unit for unit in units if not _expected_keys(unit) <= stored]
    if not pending:
        return
    finetuned = {(task, split): accuracy for (_, task, split), accuracy in store.accuracies(run_id, FINETUNED).items()}
    futures = {executor.submit(evaluate_unit, context, unit): unit for unit in pending}
    try:
        bar = tqdm(total=len(pending), desc=description, disable=not progress, unit="model")
        with bar:
            for future in as_completed(futures):
                try:
                    result = future.result()
                except Exception as error:
                    raise RuntimeError(f"sweep unit failed: {futures[future]}") from error
                reference = result.accuracy if result.unit.method == FINETUNED else finetuned
                records = records_for(result.unit.method, result.unit.settings, result.unit.subset,
                                      result.accuracy, reference)
                store.write(run_id, records, merge_seconds=result.merge_seconds, eval_seconds=result.eval_seconds,
                            worker=result.worker)
                bar.update()
                if on_result is not None:
                    on_result(result)
    finally:
        for future in futures:
            future.cancel()


def _expected_keys(unit: Unit) -> set[tuple[str, str, str, str, str]]:
    key, name = hyperparameters_key(unit.settings), subset_name(unit.subset)
    return {(unit.method, key, name, task, split) for task in unit.scored for split in unit.splits}


def _groups_but_alpha(settings: Sequence[Mapping[str, Any]]) -> list[list[dict[str, Any]]]:
    """The grid split into groups that differ only in ``alpha``, in first-seen order."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for point in settings:
        rest = hyperparameters_key({k: v for k, v in point.items() if k != "alpha"})
        groups.setdefault(rest, []).append(dict(point))
    return list(groups.values())


def _ordered(subsets: list[tuple[str, ...]], tasks: Sequence[str]) -> list[tuple[str, ...]]:
    """Distinct ``subsets`` in depth-first prefix order, which is the lexicographic order of
    their task indices (a prefix comes before its extensions)."""
    index = {task: position for position, task in enumerate(tasks)}
    return sorted(set(subsets), key=lambda subset: [index[task] for task in subset])


def _scored(score: Score, subset: tuple[str, ...], tasks: Sequence[str]) -> tuple[str, ...]:
    if score == "all":
        return tuple(tasks)
    if score == "observed":
        return subset
    return canonical(score, tasks)


__all__ = [
    "InlineExecutor",
    "Sweep",
    "SweepContext",
    "dask_executor",
    "grid",
    "local_processes",
    "run_identity",
    "run_selection_sweep",
    "run_sweep",
]
