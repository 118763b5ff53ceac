"""What a sweep is: one merge method, a hyperparameter grid and task subsets, as units of work.

    sweep = Sweep("breadcrumbs", grid(alpha=[0.2, 0.4], beta=0.85, gamma=0.01), subsets="all")
    sweep.units(tasks)  # one Unit per (hyperparameters, subset), in submission order

Units come grouped by everything but ``alpha``, subsets in depth-first prefix order and alphas
innermost, so that a worker's merger reuses its masks and partial sums from unit to unit.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..core.merging import check_hyperparameters
from .results_store import hyperparameters_key
from .sweep_units import Unit
from .task_subsets import all_subsets, canonical

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
