"""TIES-Merging (Yadav et al., 2023): trim, elect a sign, disjoint mean; ``theta + alpha * tau_m``."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

import torch
from torch import Tensor

from ..masks import GRANULARITIES, check_granularity
from ..state_dicts import StateDict, StateDictSource
from ..task_vectors import TaskVector, iter_task_vectors
from .breadcrumbs import masking
from .spec import Hyperparameter, MaskedForm, MergeMethod, Patterns
from .task_arithmetic import ALPHA


def ties(
    base: Mapping[str, Tensor],
    finetuned: Sequence[StateDictSource],
    *,
    alpha: float,
    density: float,
    granularity: str = "global",
    include: Patterns = None,
    exclude: Patterns = None,
) -> StateDict:
    """TIES-Merging: ``theta + alpha * tau_m``, where

    1. Trim: keep the top ``density`` share of each ``tau_t`` by magnitude (a Breadcrumbs mask
       with ``beta = 1 - density, gamma = 0``), zero the rest. ``granularity="global"`` (the
       TIES paper's code) trims over the whole task vector; ``"tensor"`` / ``"row"`` per group.
    2. Elect: ``s = sign(sum_t trimmed_t)`` per entry.
    3. Disjoint mean: ``tau_m = sum_{t: sign(trimmed_t) = s} trimmed_t / #{t: sign(trimmed_t) = s}``
       (zero entries never agree; an entry no task agrees on stays 0).

    Steps 2 and 3 are :func:`sign_elected_merge`, which ``breadcrumbs_ties`` shares.
    """
    check_density(density)
    check_granularity(granularity, GRANULARITIES)
    return sign_elected_merge(base, finetuned, alpha, masking(1.0 - density, 0.0, granularity),
                              include=include, exclude=exclude)


def sign_elected_merge(
    base: Mapping[str, Tensor],
    finetuned: Sequence[StateDictSource],
    alpha: float,
    mask: Mapping[str, Callable],
    *,
    include: Patterns = None,
    exclude: Patterns = None,
) -> StateDict:
    """Steps 2 and 3 of TIES on task vectors masked by ``mask`` (a
    :func:`.breadcrumbs.masking` argument): elect ``s = sign(sum_t masked_t)`` per entry, average
    the masked entries that agree with it, and return ``theta + alpha * tau_m``.

    Two passes over the fine-tuned models (elect, then average) keep memory at one task vector.
    """

    def masked_vectors() -> Iterable[TaskVector]:
        return iter_task_vectors(base, finetuned, include=include, exclude=exclude, **mask)

    elected = {key: total.sign() for key, total in TaskVector.sum_of(masked_vectors()).items()}
    agreeing_sum = {key: torch.zeros_like(sign) for key, sign in elected.items()}
    agreeing_count = {key: torch.zeros_like(sign) for key, sign in elected.items()}
    for vector in masked_vectors():
        for key, delta in vector.items():
            agrees = (delta.sign() == elected[key]) & (delta != 0)
            agreeing_sum[key].add_(delta * agrees)
            agreeing_count[key].add_(agrees)
        del vector  # release it before the next one is made
    disjoint_mean = {key: agreeing_sum[key] / agreeing_count[key].clamp(min=1.0) for key in elected}
    return TaskVector(disjoint_mean).apply_to(base, alpha)


def check_density(density: object) -> None:
    """``density``, the share of each task vector kept by the trim, lies in (0, 1]."""
    if isinstance(density, bool) or not isinstance(density, (int, float)) or not 0.0 < density <= 1.0:
        raise ValueError(f"density must lie in (0, 1], got density={density!r}")


SPEC = MergeMethod(
    name="ties",
    display_name="TIES",
    function=ties,
    hyperparameters=(
        ALPHA,
        Hyperparameter("density", check_density, meaning="share of each task vector kept by the trim"),
        Hyperparameter("granularity", lambda value: check_granularity(value, GRANULARITIES), "global",
                       "the group the trim orders: 'global' (TIES' code), 'tensor', 'row'"),
    ),
    color="tab:green",
    masked=lambda settings: MaskedForm(1.0 - settings["density"], 0.0, settings["granularity"], sign_elected_merge),
)
