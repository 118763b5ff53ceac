"""Fisher merging (Matena & Raffel, 2022): each weight is the average of the fine-tuned models'
values, weighted by how much each model's predictions depend on it (its diagonal Fisher).

Unlike every other method here it needs data: one diagonal Fisher per fine-tuned model, estimated
on examples of that model's task (:func:`breadcrumbs_lib.modeling.fisher.diagonal_fisher`), given
to :func:`breadcrumbs_lib.merge` as ``fishers=[...]`` in the order of the fine-tuned models.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from numbers import Real

import torch
from torch import Tensor

from ..state_dicts import StateDict, StateDictSource, resolve_state_dict, select_keys
from ..task_vectors import TaskVector, iter_task_vectors
from .spec import Hyperparameter, MergeMethod, Patterns
from .task_arithmetic import check_alpha


def fisher(
    base: Mapping[str, Tensor],
    finetuned: Sequence[StateDictSource],
    *,
    fishers: Sequence[StateDictSource],
    alpha: float = 1.0,
    floor: float = 1e-6,
    scaling: Sequence[float] | None = None,
    include: Patterns = None,
    exclude: Patterns = None,
) -> StateDict:
    """Fisher-weighted averaging, written on task vectors:

        theta* = theta + alpha * sum_t w_t * tau_t,   w_t = lambda_t F~_t / sum_s lambda_s F~_s

    per entry, where ``F~_t = max(F_t, floor)`` is model ``t``'s diagonal Fisher floored (so an
    entry no model's Fisher sees falls back to the ``lambda``-weighted mean) and ``lambda_t`` is
    ``scaling[t]`` (default 1 for every model). With ``alpha = 1`` this is Matena & Raffel's merge
    ``sum_t lambda_t F~_t theta'_t / sum_t lambda_t F~_t``, because the weights sum to 1; other
    values of ``alpha`` scale the merged update like every other method's ``alpha``.

    Two passes of one model at a time: the sum of the weights ``sum_s lambda_s F~_s``, then the
    weighted task vectors.
    """
    _check_fishers(fishers, finetuned, scaling)
    lambdas = [1.0] * len(finetuned) if scaling is None else [float(value) for value in scaling]
    keys, _ = select_keys(base, include, exclude)

    def floored(index: int) -> dict[str, Tensor]:
        return _floored_fisher(fishers[index], base, keys, floor, f"Fisher #{index}")

    normaliser: dict[str, Tensor] = {key: torch.zeros(base[key].shape) for key in keys}
    for index in range(len(finetuned)):
        for key, value in floored(index).items():
            normaliser[key].add_(value, alpha=lambdas[index])
    merged = {key: torch.zeros(base[key].shape) for key in keys}
    for index, vector in enumerate(iter_task_vectors(base, finetuned, include=include, exclude=exclude)):
        weights = floored(index)
        for key, delta in vector.items():
            merged[key].add_(weights[key] * delta, alpha=lambdas[index])
        del vector, weights
    return TaskVector({key: merged[key] / normaliser[key] for key in keys}).apply_to(base, alpha)


def _floored_fisher(source: StateDictSource, base: Mapping[str, Tensor], keys: list[str], floor: float,
                    name: str) -> dict[str, Tensor]:
    """``max(F, floor)`` in float32 for each of ``keys``, after checking ``F`` against ``base``."""
    state = resolve_state_dict(source)
    missing = [key for key in keys if key not in state]
    if missing:
        raise ValueError(f"{name} has no entry for {len(missing)} merged tensor(s), first {missing[:3]}")
    out = {}
    for key in keys:
        value = state[key]
        if tuple(value.shape) != tuple(base[key].shape):
            raise ValueError(f"{name}: tensor {key!r} has shape {tuple(value.shape)}, the base's is {tuple(base[key].shape)}")
        value = value.float()
        if not bool(torch.isfinite(value).all()) or bool((value < 0).any()):
            raise ValueError(f"{name}: tensor {key!r} must be finite and non-negative")
        out[key] = value.clamp(min=floor)
    return out


def _check_fishers(fishers: object, finetuned: Sequence[StateDictSource], scaling: Sequence[float] | None) -> None:
    if isinstance(fishers, (str, bytes, Mapping)) or not isinstance(fishers, Sequence):
        raise ValueError("fishers must be a list of Fisher state dicts or paths, one per fine-tuned model")
    if len(fishers) != len(finetuned):
        raise ValueError(f"got {len(fishers)} Fisher(s) for {len(finetuned)} fine-tuned model(s): give one per model")
    if scaling is not None and len(scaling) != len(finetuned):
        raise ValueError(f"got {len(scaling)} scaling coefficient(s) for {len(finetuned)} fine-tuned model(s)")


def check_floor(value: object) -> None:
    """``floor`` is the least value a Fisher entry takes: a positive real number."""
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(float(value)) or not value > 0:
        raise ValueError(f"floor must be a positive real number, got floor={value!r}")


def check_scaling(value: object) -> None:
    """``scaling`` holds one positive weight ``lambda_t`` per model, or is ``None`` (all 1)."""
    if value is None:
        return
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Sequence) or not value or any(
            isinstance(v, bool) or not isinstance(v, Real) or not math.isfinite(float(v)) or not v > 0 for v in value):
        raise ValueError(f"scaling must be a list of positive numbers, one per fine-tuned model, got {value!r}")


SPEC = MergeMethod(
    name="fisher",
    display_name="Fisher merging",
    function=fisher,
    hyperparameters=(
        Hyperparameter("alpha", check_alpha, 1.0, "scale of the Fisher-weighted mean of the task vectors (1: Fisher merging)"),
        Hyperparameter("floor", check_floor, 1e-6, "least value of a Fisher entry (entries no Fisher sees are averaged)"),
        Hyperparameter("scaling", check_scaling, None, "one weight lambda_t per model (None: all 1)"),
    ),
    color="tab:olive",
    inputs=("fishers",),
)
