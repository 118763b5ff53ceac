"""Merging fine-tuned models of one base: Model Breadcrumbs and the baselines it is compared to.

All methods share one shape: ``theta* = theta + alpha * combine(tau_1, ..., tau_T)`` where
``tau_t = theta'_t - theta`` (float32), and differ in ``combine``:

====================  =====================================================================
``task_arithmetic``   ``sum_t tau_t``                                      (Ilharco et al.)
``breadcrumbs``       ``sum_t m_t(beta, gamma) * tau_t``                   (Davari & Belilovsky)
``average``           ``(1/T) sum_t tau_t`` with alpha fixed to 1, i.e. ``mean_t theta'_t``
``ties``              trim each tau_t to its top ``density`` share by |tau|, elect a sign per
                      entry from the summed trimmed mass, average the entries that agree
                      with it (disjoint mean)                               (Yadav et al.)
``dare``              ``sum_t (d_t * tau_t) / (1 - p)``, ``d_t`` Bernoulli(1 - p) per entry
                      (random drop-and-rescale)                            (Yu et al.)
====================  =====================================================================

The fine-tuned models are visited one at a time (paths are loaded lazily), so the peak memory of
a merge is the base, the float32 running sum (the result) and one task vector with its mask.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from .masks import GRANULARITIES, breadcrumbs_masked, check_fractions, check_granularity
from .state_dicts import StateDict, StateDictSource, resolve_state_dict
from .task_vectors import TaskVector, check_coefficient, iter_task_vectors

Patterns = Iterable[str] | None


def merge(
    base: StateDictSource,
    finetuned: Sequence[StateDictSource],
    method: str,
    **hyperparameters: object,
) -> StateDict:
    """Merge fine-tuned models of ``base`` into one multi-task state dict.

    Args:
        base: the pre-trained state dict ``theta`` (or a checkpoint path).
        finetuned: fine-tuned state dicts ``theta'_t`` (or checkpoint paths, loaded one at a time).
        method: one of :data:`METHODS`: ``"task_arithmetic"``, ``"breadcrumbs"``, ``"average"``,
            ``"ties"``, ``"dare"``.
        **hyperparameters: the method's keyword arguments (see each function); every method also
            takes ``include`` / ``exclude`` glob patterns choosing which tensors are merged.

    Returns:
        a new state dict with the base's keys and dtypes. Tensors not merged (integer buffers,
        excluded names) are the base's own.

    Raises:
        ValueError: unknown method, unknown or missing hyperparameter, out-of-range value,
            empty model list, or incompatible models (keys, shapes, dtypes, non-finite values).
    """
    check_hyperparameters(method, hyperparameters)
    if isinstance(finetuned, (str, bytes, Mapping)) or not isinstance(finetuned, Sequence):
        raise ValueError("finetuned must be a list of state dicts or checkpoint paths")
    if len(finetuned) == 0:
        raise ValueError("cannot merge an empty list of fine-tuned models")
    return METHODS[method](resolve_state_dict(base), finetuned, **hyperparameters)


def check_hyperparameters(method: str, hyperparameters: Mapping[str, object]) -> None:
    """Raise ``ValueError`` unless ``hyperparameters`` is a complete, in-range setting of
    ``method`` (what :func:`merge` checks before it reads any model; sweeps call it up front)."""
    if method not in METHODS:
        raise ValueError(f"unknown merge method {method!r}; expected one of {sorted(METHODS)}")
    function = METHODS[method]
    _check_hyperparameter_names(method, function, hyperparameters)
    values = {**_defaults(function), **hyperparameters}
    if "alpha" in values:
        check_coefficient(values["alpha"], "alpha")
    if "beta" in values:
        check_fractions(values["beta"], values["gamma"])
    if "granularity" in values:
        check_granularity(values["granularity"], GRANULARITIES)
    if "density" in values:
        _check_density(values["density"])
    if "p" in values:
        _check_drop_rate(values["p"])
    if "seed" in values:
        _check_seed(values["seed"])


def task_arithmetic(
    base: Mapping[str, Tensor],
    finetuned: Sequence[StateDictSource],
    *,
    alpha: float,
    include: Patterns = None,
    exclude: Patterns = None,
) -> StateDict:
    """``theta + alpha * sum_t tau_t`` (Ilharco et al., 2023)."""
    total = TaskVector.sum_of(iter_task_vectors(base, finetuned, include=include, exclude=exclude))
    return total.apply_to(base, alpha)


def breadcrumbs(
    base: Mapping[str, Tensor],
    finetuned: Sequence[StateDictSource],
    *,
    alpha: float,
    beta: float,
    gamma: float,
    granularity: str = "tensor",
    include: Patterns = None,
    exclude: Patterns = None,
) -> StateDict:
    """Model Breadcrumbs: ``theta + alpha * sum_t m_t(beta, gamma) * tau_t``.

    ``alpha`` scales the merged sum; ``beta`` is the share of each group's smallest ``|tau|``
    masked, ``gamma`` the share of its largest ``|tau|`` masked (see :func:`breadcrumbs_mask`);
    ``granularity`` is ``"tensor"`` (paper), ``"row"`` (authors' code) or ``"global"``.
    The paper's ablations are settings of this: ``beta = 0`` masks only the top,
    ``gamma = 0`` only the bottom, ``beta = gamma = 0`` is exactly task arithmetic.
    """
    check_fractions(beta, gamma)
    check_granularity(granularity, GRANULARITIES)
    vectors = iter_task_vectors(base, finetuned, include=include, exclude=exclude,
                                **_masking(beta, gamma, granularity))
    return TaskVector.sum_of(vectors).apply_to(base, alpha)


def average(
    base: Mapping[str, Tensor],
    finetuned: Sequence[StateDictSource],
    *,
    include: Patterns = None,
    exclude: Patterns = None,
) -> StateDict:
    """Plain weight averaging: ``mean_t theta'_t = theta + (1/T) sum_t tau_t`` (float32 sum)."""
    total = TaskVector.sum_of(iter_task_vectors(base, finetuned, include=include, exclude=exclude))
    return total.apply_to(base, 1.0 / len(finetuned))


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
    """TIES-Merging (Yadav et al., 2023): trim, elect sign, disjoint mean; ``theta + alpha * tau_m``.

    1. Trim: keep the top ``density`` share of each ``tau_t`` by magnitude (a Breadcrumbs mask
       with ``beta = 1 - density, gamma = 0``), zero the rest. ``granularity="global"`` (the
       TIES paper's code) trims over the whole task vector; ``"tensor"`` / ``"row"`` per group.
    2. Elect: ``s = sign(sum_t trimmed_t)`` per entry.
    3. Disjoint mean: ``tau_m = sum_{t: sign(trimmed_t) = s} trimmed_t / #{t: sign(trimmed_t) = s}``
       (zero entries never agree; an entry no task agrees on stays 0).

    Two passes over the fine-tuned models (elect, then average) keep memory at one task vector.
    """
    _check_density(density)
    check_granularity(granularity, GRANULARITIES)
    trim = _masking(1.0 - density, 0.0, granularity)

    def trimmed_vectors() -> Iterable[TaskVector]:
        return iter_task_vectors(base, finetuned, include=include, exclude=exclude, **trim)

    elected = {key: total.sign() for key, total in TaskVector.sum_of(trimmed_vectors()).items()}
    agreeing_sum = {key: torch.zeros_like(sign) for key, sign in elected.items()}
    agreeing_count = {key: torch.zeros_like(sign) for key, sign in elected.items()}
    for vector in trimmed_vectors():
        for key, delta in vector.items():
            agrees = (delta.sign() == elected[key]) & (delta != 0)
            agreeing_sum[key].add_(delta * agrees)
            agreeing_count[key].add_(agrees)
        del vector  # release it before the next one is made
    disjoint_mean = {key: agreeing_sum[key] / agreeing_count[key].clamp(min=1.0) for key in elected}
    return TaskVector(disjoint_mean).apply_to(base, alpha)


def dare(
    base: Mapping[str, Tensor],
    finetuned: Sequence[StateDictSource],
    *,
    alpha: float,
    p: float,
    seed: int = 0,
    include: Patterns = None,
    exclude: Patterns = None,
) -> StateDict:
    """DARE (Yu et al., 2024) then task arithmetic: ``theta + alpha * sum_t d_t * tau_t / (1 - p)``.

    ``d_t`` keeps each entry independently with probability ``1 - p``. The random draws come
    from a CPU generator seeded by ``(seed, t)``, in key order, so results are reproducible and
    the same on every device. ``p = 0`` is exactly task arithmetic.
    """
    _check_drop_rate(p)
    _check_seed(seed)

    def drop_and_rescale(index: int, vector: TaskVector) -> TaskVector:
        generator = torch.Generator(device="cpu").manual_seed(_child_seed(int(seed), index))
        return TaskVector({key: _drop_and_rescale(delta, p, generator) for key, delta in vector.items()})

    vectors = iter_task_vectors(base, finetuned, include=include, exclude=exclude, transform=drop_and_rescale)
    return TaskVector.sum_of(vectors).apply_to(base, alpha)


METHODS: dict[str, Callable[..., StateDict]] = {
    "task_arithmetic": task_arithmetic,
    "breadcrumbs": breadcrumbs,
    "average": average,
    "ties": ties,
    "dare": dare,
}


def _masking(beta: float, gamma: float, granularity: str) -> dict[str, Callable]:
    """The :func:`iter_task_vectors` argument that masks every task vector with Breadcrumbs
    masks: per tensor as each is formed (``map_delta``, while it is in cache), or over the
    whole vector once it is formed (``transform``) when the ordering is ``"global"``."""
    if granularity == "global":
        return {"transform": lambda index, vector: vector.breadcrumbs(beta, gamma, granularity, inplace=True)}

    def mask(key: str, delta: Tensor) -> Tensor:  # delta was checked finite as it was formed
        return breadcrumbs_masked(delta, beta, gamma, granularity, inplace=True, check_finite=False)

    return {"map_delta": mask}


def _drop_and_rescale(delta: Tensor, p: float, generator: torch.Generator) -> Tensor:
    if p == 0.0:
        return delta
    keep = torch.rand(delta.shape, generator=generator) >= p
    return delta * keep.to(delta.device) / (1.0 - p)


def _child_seed(seed: int, index: int) -> int:
    """An independent 63-bit seed for model ``index`` derived from ``seed``."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1, dtype=np.uint64)[0] >> 1)


def _check_hyperparameter_names(method: str, function: Callable, given: Mapping[str, object]) -> None:
    parameters = inspect.signature(function).parameters
    accepted = [name for name, p in parameters.items() if p.kind is inspect.Parameter.KEYWORD_ONLY]
    required = [name for name in accepted if parameters[name].default is inspect.Parameter.empty]
    unknown = [name for name in given if name not in accepted]
    if unknown:
        raise ValueError(f"unknown hyperparameter(s) {unknown} for method {method!r}; it accepts {accepted}")
    missing = [name for name in required if name not in given]
    if missing:
        raise ValueError(f"method {method!r} needs hyperparameter(s) {missing}")


def _defaults(function: Callable) -> dict[str, object]:
    parameters = inspect.signature(function).parameters.values()
    return {p.name: p.default for p in parameters
            if p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is not inspect.Parameter.empty}


def _check_density(density: object) -> None:
    if isinstance(density, bool) or not isinstance(density, (int, float)) or not 0.0 < density <= 1.0:
        raise ValueError(f"density must lie in (0, 1], got density={density!r}")


def _check_drop_rate(p: object) -> None:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
        raise ValueError(f"drop rate p must lie in [0, 1), got p={p!r}")


def _check_seed(seed: object) -> None:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got seed={seed!r}")
