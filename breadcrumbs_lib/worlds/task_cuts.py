"""A pool of classes cut by a seed into a sequence of small tasks: what the many-task worlds share.

Both the ``mini`` many-task world (the glyph pool) and the paper's (ImageNet-1k) shuffle their
``class_count`` classes by the seed and cut them into tasks of ``classes_per_task``: task
``<prefix>017`` is the 18th slice of the shuffled classes, in the order the tasks are merged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TaskCut:
    """How one world cuts its class pool into tasks (``what`` and ``sequence`` name it in errors)."""

    prefix: str
    class_count: int
    classes_per_task: int
    what: str  # e.g. "many-task name"
    sequence: str  # e.g. "the many-task world"

    @property
    def task_count(self) -> int:
        return self.class_count // self.classes_per_task

    def names(self, count: int | None = None) -> tuple[str, ...]:
        """The names of the first ``count`` tasks (default: all), in the order they are merged."""
        count = self.task_count if count is None else count
        if not 1 <= count <= self.task_count:
            raise ValueError(f"{self.sequence} has {self.task_count} tasks; asked for {count}")
        return tuple(f"{self.prefix}{index:03d}" for index in range(count))

    def holds(self, name: str) -> bool:
        """Whether ``name`` is of this world's form (``<prefix>...``)."""
        return name.startswith(self.prefix)

    def index(self, name: str) -> int:
        """The position of task ``name`` in the sequence (``ValueError`` for an unknown name)."""
        if name not in self.names():
            raise ValueError(f"unknown {self.what} {name!r}; expected {self.prefix}000 to "
                             f"{self.prefix}{self.task_count - 1:03d}")
        return int(name[len(self.prefix):])

    def classes(self, name: str, seed: int) -> tuple[int, ...]:
        """The pool indices of task ``name``'s classes in the sequence of ``seed``."""
        index = self.index(name)
        order = np.random.default_rng([seed, 15485863]).permutation(self.class_count)
        return tuple(int(c) for c in order[index * self.classes_per_task:(index + 1) * self.classes_per_task])
