"""Task arithmetic (Ilharco et al., 2023): ``theta + alpha * sum_t tau_t``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor

from ..state_dicts import StateDict, StateDictSource
from ..task_vectors import check_coefficient, sum_task_vectors
from .spec import Additive, Hyperparameter, MergeMethod, Patterns


def task_arithmetic(
    base: Mapping[str, Tensor],
    finetuned: Sequence[StateDictSource],
    *,
    alpha: float,
    include: Patterns = None,
    exclude: Patterns = None,
) -> StateDict:
    """``theta + alpha * sum_t tau_t``."""
    total = sum_task_vectors(base, finetuned, include=include, exclude=exclude)
    return total.apply_to(base, alpha)


def check_alpha(value: object) -> None:
    """``alpha`` scales the merged sum of (masked) task vectors: any finite real number."""
    check_coefficient(value, "alpha")


ALPHA = Hyperparameter("alpha", check_alpha, meaning="scale of the summed task vectors")

SPEC = MergeMethod(
    name="task_arithmetic",
    display_name="task arithmetic",
    function=task_arithmetic,
    hyperparameters=(ALPHA,),
    color="tab:blue",
    additive=lambda settings: Additive(("task_vector",), None, settings["alpha"]),
)
