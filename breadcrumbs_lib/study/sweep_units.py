"""The unit of work of a sweep: one model (merged, zero-shot or fine-tuned), evaluated.

A unit is independent of every other: :func:`evaluate_unit` takes a small, picklable
:class:`SweepContext` (which preset, size, seed and cache to load) and a :class:`Unit` (which
model, which tasks and splits to score), and returns the accuracies. It runs in whatever process
an executor puts it in: the calling process, a local process pool, or a Dask worker on another
machine. Each process keeps one :class:`_Worker` per context, built on its first unit: the
workbench (loaded from the artifact cache), one live model into which weights are loaded in
place, and a :class:`.SubsetMerger` whose caches make consecutive units cheap.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pickle
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numba
import torch

from ..paths import DEFAULT_CACHE_DIR
from ..worlds.prepare import prepare
from ..worlds.presets import Preset
from ..worlds.workbench import AnyWorkbench
from .results_store import hyperparameters_key
from .subset_merging import DEFAULT_CACHE_BYTES, SubsetMerger
from .task_subsets import Subset, subset_name

ZERO_SHOT = "zeroshot"  # the foundation model itself: empty subset
FINETUNED = "finetuned"  # one task's fine-tuned model: subset = (task,)
BASELINES = (ZERO_SHOT, FINETUNED)


@dataclass(frozen=True)
class SweepContext:
    """Everything a worker needs to rebuild the workbench of a sweep (see :func:`.prepare`).

    ``threads`` sets torch's and numba's thread count in the worker (None: leave the default).
    ``cache_bytes`` bounds each worker's cache of per-task vectors.
    """

    preset: Preset
    size: str = "B-32"
    seed: int = 0
    cache_dir: str = str(DEFAULT_CACHE_DIR)
    tasks: tuple[str, ...] | None = None
    device: str | None = None
    data_root: str | None = None
    weights: tuple[tuple[str, str], ...] = ()
    finetuned_dir: str | None = None
    download: bool = False
    threads: int | None = None
    cache_bytes: int = DEFAULT_CACHE_BYTES

    def prepare(self) -> AnyWorkbench:
        """The workbench: from the artifact cache, or built (and cached) now."""
        return prepare(self.preset, self.size, seed=self.seed, cache_dir=self.cache_dir, device=self.device,
                       tasks=None if self.tasks is None else list(self.tasks), data_root=self.data_root,
                       weights=dict(self.weights) or None, finetuned_dir=self.finetuned_dir, download=self.download)

    @property
    def task_names(self) -> tuple[str, ...]:
        """The tasks the workbench holds, in order: ``tasks``, or all of the preset's."""
        return tuple(self.preset.tasks if self.tasks is None else self.tasks)

    @property
    def key(self) -> str:
        """Identifies the workbench a worker holds (threads and cache size aside)."""
        fields = dataclasses.replace(self, threads=None, cache_bytes=0)
        return hashlib.sha256(pickle.dumps(fields)).hexdigest()


@dataclass(frozen=True)
class Unit:
    """One model to evaluate: ``method`` (a merge method, ``"zeroshot"`` or ``"finetuned"``) with
    ``hyperparameters`` on ``subset``, scored on ``scored`` tasks for each of ``splits``."""

    method: str
    hyperparameters: tuple[tuple[str, Any], ...]  # sorted (name, value) pairs: hashable
    subset: Subset
    scored: tuple[str, ...]
    splits: tuple[str, ...]

    @property
    def settings(self) -> dict[str, Any]:
        return dict(self.hyperparameters)

    def record_keys(self) -> set[tuple[str, str, str, str, str]]:
        """The store keys ``(method, hyperparameters, subset, scored task, split)`` of this unit's
        records: when all are stored, the unit is done."""
        key, name = hyperparameters_key(self.settings), subset_name(self.subset)
        return {(self.method, key, name, task, split) for task in self.scored for split in self.splits}


@dataclass
class UnitResult:
    """Accuracies of one unit, ``(task, split) -> accuracy``, and where its time went."""

    unit: Unit
    accuracy: dict[tuple[str, str], float]
    merge_seconds: float
    eval_seconds: float
    worker: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")


def evaluate_unit(context: SweepContext, unit: Unit) -> UnitResult:
    """Build (or reuse) this process's worker for ``context`` and evaluate ``unit``."""
    return _worker_for(context).run(unit)


_WORKBENCHES: dict[str, AnyWorkbench] = {}
_WORKERS: dict[str, _Worker] = {}


def workbench_for(context: SweepContext) -> AnyWorkbench:
    """This process's workbench for ``context`` (prepared once; one held at a time)."""
    if context.key not in _WORKBENCHES:
        _WORKBENCHES.clear()  # release the previous one first
        _WORKERS.clear()
        _WORKBENCHES[context.key] = context.prepare()
    return _WORKBENCHES[context.key]


def _worker_for(context: SweepContext) -> _Worker:
    if context.threads is not None:
        torch.set_num_threads(context.threads)
        numba.set_num_threads(min(context.threads, numba.config.NUMBA_NUM_THREADS))
    bench = workbench_for(context)
    if context.key not in _WORKERS:
        _WORKERS[context.key] = _Worker(context, bench)
    return _WORKERS[context.key]


class _Worker:
    """A workbench, its evaluators per split (sharing one live model) and a subset merger."""

    def __init__(self, context: SweepContext, bench: AnyWorkbench):
        self.bench = bench
        self.evaluators = bench.evaluators(evaluation_splits(bench))  # one live model shared by all splits
        self.merger = SubsetMerger(self.bench.base, self.bench.finetuned, cache_bytes=context.cache_bytes,
                                   inputs=lambda name, task: model_input(self.bench, name, task))

    def run(self, unit: Unit) -> UnitResult:
        start = time.perf_counter()
        state = self._weights(unit)
        merged = time.perf_counter()
        accuracy = {}
        for split in unit.splits:
            if split not in self.evaluators:
                raise ValueError(f"unknown split {split!r}; the workbench has {sorted(self.evaluators)}")
            evaluator = self.evaluators[split]
            if split == unit.splits[0]:
                evaluator.load(state)  # all evaluators share the live model
            for task in unit.scored:
                accuracy[(task, split)] = evaluator.accuracy(task)
        return UnitResult(unit, accuracy, merged - start, time.perf_counter() - merged)

    def _weights(self, unit: Unit) -> Mapping[str, torch.Tensor]:
        if unit.method == ZERO_SHOT:
            return self.bench.base
        if unit.method == FINETUNED:
            (task,) = unit.subset
            return self.bench.finetuned[task]
        return self.merger.merged(unit.subset, unit.method, unit.settings)


@dataclass(frozen=True)
class ModelInput:
    """Data a merge method needs besides the weights, one item per fine-tuned model (a spec's
    ``inputs``), as a workbench provides it: ``get(bench, task)`` is the item, ``examples(bench)``
    how many task examples one item reads, ``seconds(bench, task)`` how long making it took."""

    get: Callable[[AnyWorkbench, str], Any]
    examples: Callable[[AnyWorkbench], int]
    seconds: Callable[[AnyWorkbench, str], float]


#: Every merge input a workbench provides, by name.
MODEL_INPUTS: dict[str, ModelInput] = {
    "fishers": ModelInput(get=lambda bench, task: bench.fisher(task),
                          examples=lambda bench: bench.preset.fisher.examples,
                          seconds=lambda bench, task: bench.fisher_seconds[task]),
}


def model_input(bench: AnyWorkbench, name: str, task: str) -> Any:
    """``bench``'s item of the merge input ``name`` for ``task``'s model (e.g. its Fisher)."""
    return model_input_provider(name).get(bench, task)


def model_input_provider(name: str) -> ModelInput:
    """How workbenches provide the merge input ``name`` (``ValueError`` if none does)."""
    if name not in MODEL_INPUTS:
        raise ValueError(f"no workbench provides the merge input {name!r}; it provides {sorted(MODEL_INPUTS)}")
    return MODEL_INPUTS[name]


def evaluation_splits(bench: AnyWorkbench) -> list[str]:
    """The splits a workbench can score (all but ``"train"``)."""
    first = next(iter(bench.splits.values()))
    return [name for name in first if name != "train"]

