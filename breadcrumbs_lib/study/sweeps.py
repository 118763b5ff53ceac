"""The sweep engine: task subsets times a hyperparameter grid, evaluated into a results store.

    context = SweepContext(MINI, "B-32")
    sweep = Sweep("breadcrumbs", grid(alpha=[0.2, 0.4], beta=0.85, gamma=0.01), subsets="all")
    frame = run_sweep(sweep, context)             # local processes, outputs/mini/results.sqlite

:func:`run_sweep`

1. prepares the workbench once in the calling process (building the cache if needed, so that
   workers only ever load it; the same for data a method needs besides the weights, such as
   Fisher merging's Fishers) and registers the run, identified by the checkpoints' digests
   (:mod:`.run_identity`);
2. evaluates the fine-tuned models (the normalisers), then the zero-shot model and every merged
   model: one :class:`.sweep_units.Unit` per ``(method, hyperparameters, subset)`` of each
   :class:`.sweep_spec.Sweep`, submitted to a standard :class:`concurrent.futures.Executor`
   (:mod:`.executors`);
3. writes each unit's records as soon as it finishes, and skips units whose records are all
   stored: re-running an interrupted sweep finishes it, re-running a finished one costs nothing.

This module is the sweep API in one import: it also exports the spec (``Sweep``, ``grid``), the
context and the executors.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Executor, as_completed
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from ..core.merging import method_spec
from ..worlds.workbench import AnyWorkbench
from .executors import InlineExecutor, dask_executor, default_workers, executor_for, local_processes
from .results_store import ResultsStore, default_store_path, records_for, setting_of
from .run_identity import run_identity
from .sweep_spec import Sweep, grid
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
from .task_subsets import parse_subset_name
from .tuning import best_per_subset


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
            (default: :func:`.executors.default_workers`) and shuts it down at the end.
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
    with executor_for(executor, workers or default_workers(bench, context), context) as (pool, worker_context):
        _execute(baselines, pool, worker_context, store, run_id, progress, on_result, "evaluating fine-tuned models")
        _execute(merged, pool, worker_context, store, run_id, progress, on_result,
                 " + ".join(sweep.method for sweep in sweeps))
    wanted = set().union(*(unit.record_keys() for unit in [*baselines, *merged]))
    frame = store.frame(run_id)
    keys = zip(frame["method"], frame["hyperparameters"], frame["subset"], frame["scored_task"], frame["split"])
    return frame[[key in wanted for key in keys]].reset_index(drop=True)


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


def _prepare_inputs(sweeps: Sequence[Sweep], bench: AnyWorkbench) -> None:
    """Compute (and cache) in this process the data the sweeps' methods need besides the weights
    (e.g. the Fishers), so that workers only ever load it."""
    for name in sorted({name for sweep in sweeps for name in method_spec(sweep.method).inputs}):
        for task in tqdm(bench.tasks, desc=f"merge inputs: {name}", leave=False):
            model_input(bench, name, task)


def _execute(units: list[Unit], executor: Executor, context: SweepContext, store: ResultsStore, run_id: str,
             progress: bool, on_result: Callable[[UnitResult], None] | None, description: str) -> None:
    """Submit the units whose records are not all stored; store each result as it comes."""
    stored = store.stored_keys(run_id)
    pending = [unit for unit in units if not unit.record_keys() <= stored]
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
