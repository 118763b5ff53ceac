"""Merging many task subsets of one set of fine-tuned models, fast and exactly.

A sweep merges the same fine-tuned models again and again: every subset of the tasks, times a
hyperparameter grid. For the additive methods,

    theta* = theta + alpha * sum_{t in S} f(tau_t)

with ``f`` the identity (task arithmetic, averaging) or the Breadcrumbs mask ``m_t(beta, gamma)``
(each method says so in its spec: :attr:`..core.methods.spec.MergeMethod.additive`), two things
can be shared between merges:

* ``f(tau_t)`` depends only on the task and on the settings (its
  :attr:`..core.methods.spec.Additive.key`), never on alpha or on the other tasks: :class:`SubsetMerger` computes each once and keeps it in a cache bounded in
  bytes (least recently used out first).
* the sum over ``S``: the merger keeps a stack of partial sums ``f(tau_{t1})``,
  ``f(tau_{t1}) + f(tau_{t2})``, ... for the last subset; a new subset reuses the longest common
  prefix and adds the rest, one addition per task. Walked in the depth-first prefix order of
  :func:`.task_subsets.all_subsets`, every subset costs one addition.

Because a partial sum is only ever extended (never "un-added"), each sum is the same
left-to-right float32 sum that :func:`breadcrumbs_lib.merge` forms: the merged weights are bit
for bit those of ``merge(base, [theta'_t for t in S], method, ...)``, whatever order the subsets
come in. Other methods (TIES, DARE, Fisher merging, or any ``include``/``exclude`` pattern) go
through :func:`breadcrumbs_lib.merge` itself, with the data a method needs besides the weights
(its spec's ``inputs``, e.g. Fisher merging's ``fishers``) from the merger's ``inputs`` provider.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

from torch import Tensor

from ..core.merging import merge, method_spec
from ..core.methods.spec import Additive
from ..core.state_dicts import StateDict
from ..core.task_vectors import TaskVector
from .task_subsets import Subset

DEFAULT_CACHE_BYTES = 4 << 30
_TASK_VECTOR = Additive(("task_vector",), None, None)  # f = identity: the plain task vector


class SubsetMerger:
    """Merged state dicts of subsets of ``finetuned`` (task -> state dict) onto ``base``.

    ``cache_bytes`` bounds the cache of per-task vectors ``f(tau_t)``; the stack of partial sums
    (at most one vector per task) comes on top of it. ``computed`` counts the vectors formed
    (cache misses). ``inputs(name, task)`` gives a method's per-model data (see the module
    docstring); without it, such methods cannot be merged.
    """

    def __init__(self, base: Mapping[str, Tensor], finetuned: Mapping[str, Mapping[str, Tensor]],
                 *, cache_bytes: int = DEFAULT_CACHE_BYTES, inputs: Callable[[str, str], Any] | None = None):
        self.base = base
        self.finetuned = finetuned
        self.inputs = inputs
        self.cache_bytes = cache_bytes
        self.computed = 0
        self._cache: OrderedDict[tuple[str, tuple], TaskVector] = OrderedDict()
        self._cached_bytes = 0
        self._stack: list[tuple[str, TaskVector]] = []  # (task, sum of f(tau) up to that task)
        self._stack_key: tuple | None = None  # the Additive.key of the sums on the stack

    @property
    def cached_bytes(self) -> int:
        """Bytes held by the cache of per-task vectors."""
        return self._cached_bytes

    @property
    def cached_vectors(self) -> int:
        """How many per-task vectors the cache holds."""
        return len(self._cache)

    def merged(self, subset: Subset, method: str, hyperparameters: Mapping[str, Any]) -> StateDict:
        """Exactly ``merge(base, [finetuned[t] for t in subset], method, **hyperparameters)``."""
        spec = method_spec(method)
        form = spec.additive_form(hyperparameters)
        unknown = [task for task in subset if task not in self.finetuned]
        if unknown or not subset:
            raise ValueError(f"cannot merge subset {subset}: no fine-tuned model for {unknown or 'an empty subset'}")
        if form is None:
            if spec.inputs and self.inputs is None:
                raise ValueError(f"method {method!r} needs {list(spec.inputs)}, and this merger has no inputs provider")
            data = {name: [self.inputs(name, task) for task in subset] for name in spec.inputs}
            return merge(self.base, [self.finetuned[task] for task in subset], method, **hyperparameters, **data)
        total = self._subset_sum(subset, form)
        return total.apply_to(self.base, 1.0 / len(subset) if form.alpha is None else form.alpha)

    def vector(self, task: str, form: Additive) -> TaskVector:
        """``f(tau_task)`` for the ``f`` of ``form`` (cached by task and ``form.key``)."""
        key = (task, form.key)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        if form.transform is None:
            vector = TaskVector.from_state_dicts(self.base, self.finetuned[task], name=f"fine-tuned model of {task!r}")
        else:
            vector = form.transform(self.vector(task, _TASK_VECTOR))
        self.computed += 1
        self._remember(key, vector)
        return vector

    def _subset_sum(self, subset: Subset, form: Additive) -> TaskVector:
        """``sum_{t in subset} f(tau_t)``, left to right, extending the stack of partial sums."""
        if form.key != self._stack_key:
            self._stack, self._stack_key = [], form.key
        shared = 0
        while shared < min(len(subset), len(self._stack)) and self._stack[shared][0] == subset[shared]:
            shared += 1
        del self._stack[shared:]
        for task in subset[shared:]:
            vector = self.vector(task, form)
            self._stack.append((task, vector if not self._stack else self._stack[-1][1] + vector))
        return self._stack[-1][1]

    def _remember(self, key: tuple[str, tuple], vector: TaskVector) -> None:
        size = _nbytes(vector)
        self._cache[key] = vector
        self._cached_bytes += size
        while self._cached_bytes > self.cache_bytes and len(self._cache) > 1:
            _, dropped = self._cache.popitem(last=False)
            self._cached_bytes -= _nbytes(dropped)


def _nbytes(vector: TaskVector) -> int:
    return sum(delta.numel() * delta.element_size() for delta in vector.values())
