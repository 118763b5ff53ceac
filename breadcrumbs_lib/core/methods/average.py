"""Weight averaging: ``mean_t theta'_t = theta + (1/T) sum_t tau_t``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor

from ..state_dicts import StateDict, StateDictSource
from ..task_vectors import sum_task_vectors
from .spec import Additive, MergeMethod, Patterns


def average(
    base: Mapping[str, Tensor],
    finetuned: Sequence[StateDictSource],
    *,
    include: Patterns = None,
    exclude: Patterns = None,
) -> StateDict:
    """Plain weight averaging: ``mean_t theta'_t = theta + (1/T) sum_t tau_t`` (float32 sum)."""
    total = sum_task_vectors(base, finetuned, include=include, exclude=exclude)
    return total.apply_to(base, 1.0 / len(finetuned))


SPEC = MergeMethod(
    name="average",
    display_name="average",
    function=average,
    hyperparameters=(),
    color="tab:gray",
    additive=lambda settings: Additive(("task_vector",), None, None),
)
