"""Subsets of tasks, named and ordered the way sweeps walk them.

A subset is a tuple of task names in the preset's task order (Table 1's for ``paper``, the
world's own for ``mini``), so ``("digits", "signs")`` and ``("signs", "digits")`` are the same
subset, written one way. The merged model of a subset adds the task vectors in that order.

:func:`all_subsets` lists the ``2^T - 1`` non-empty subsets in *depth-first prefix order*:
``(a,), (a, b), (a, b, c), (a, c), (b,), (b, c), (c,)``. Every subset after the first extends an
earlier one, its *parent* (the subset without its last task), by exactly one task vector, so a
walk in this order builds each running sum with a single addition from a stack of partial sums,
and the sum it builds is bit for bit the left-to-right sum that :func:`breadcrumbs_lib.merge`
forms.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterable, Sequence

Subset = tuple[str, ...]
SEPARATOR = "+"


def all_subsets(tasks: Sequence[str], sizes: Iterable[int] | None = None) -> list[Subset]:
    """The non-empty subsets of ``tasks`` (of the given ``sizes``, default all) in depth-first
    prefix order."""
    _check_unique(tasks)
    wanted = set(range(1, len(tasks) + 1) if sizes is None else sizes)
    found: list[Subset] = []

    def extend(prefix: Subset, start: int) -> None:
        for index in range(start, len(tasks)):
            subset = prefix + (tasks[index],)
            if len(subset) in wanted:
                found.append(subset)
            extend(subset, index + 1)

    extend((), 0)
    return found


def pairs(tasks: Sequence[str]) -> list[Subset]:
    """All ``T (T - 1) / 2`` two-task subsets, in order."""
    _check_unique(tasks)
    return list(itertools.combinations(tasks, 2))


def prefixes(tasks: Sequence[str]) -> list[Subset]:
    """``(t1,), (t1, t2), ..., (t1, ..., tT)``: tasks added one at a time (Fig. 3)."""
    _check_unique(tasks)
    return [tuple(tasks[:k]) for k in range(1, len(tasks) + 1)]


def sample_by_size(tasks: Sequence[str], per_size: int | None, seed: int = 0) -> list[Subset]:
    """At most ``per_size`` subsets of each size ``1..T``, drawn without replacement by a
    generator seeded with ``seed`` (every subset of a size when it has no more than
    ``per_size``; ``per_size=None``: all ``2^T - 1``), in depth-first prefix order.

    For studies that cannot afford every subset (Fig. 4 on larger models): each number of tasks
    keeps up to ``per_size`` points, and the same tasks and seed always give the same sample.
    """
    if per_size is None:
        return all_subsets(tasks)
    if isinstance(per_size, bool) or not isinstance(per_size, int) or per_size < 1:
        raise ValueError(f"per_size must be a positive integer or None, got {per_size!r}")
    generator = random.Random(seed)
    chosen: set[Subset] = set()
    for size in range(1, len(tasks) + 1):
        of_size = all_subsets(tasks, sizes=[size])
        chosen.update(of_size if len(of_size) <= per_size else generator.sample(of_size, per_size))
    return [subset for subset in all_subsets(tasks) if subset in chosen]


def canonical(subset: Iterable[str], tasks: Sequence[str]) -> Subset:
    """``subset`` as a tuple in the order of ``tasks``; ``ValueError`` for an unknown or repeated
    task, or an empty subset."""
    subset = list(subset)
    unknown = [task for task in subset if task not in tasks]
    if unknown:
        raise ValueError(f"unknown task(s) {unknown} in subset {subset}; expected some of {list(tasks)}")
    if len(set(subset)) != len(subset):
        raise ValueError(f"subset {subset} names a task twice")
    if not subset:
        raise ValueError("a subset must hold at least one task")
    return tuple(task for task in tasks if task in subset)


def subset_name(subset: Iterable[str]) -> str:
    """``"digits+signs"``: how a subset is written in results tables."""
    return SEPARATOR.join(subset)


def parse_subset_name(name: str) -> Subset:
    """Inverse of :func:`subset_name` (``""`` is the empty subset of a zero-shot record)."""
    return tuple(name.split(SEPARATOR)) if name else ()


def _check_unique(tasks: Sequence[str]) -> None:
    if len(set(tasks)) != len(tasks):
        raise ValueError(f"task names must be unique, got {list(tasks)}")
