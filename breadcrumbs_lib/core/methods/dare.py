"""DARE (Yu et al., 2024) then task arithmetic: ``theta + alpha * sum_t d_t * tau_t / (1 - p)``."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from ..state_dicts import StateDict, StateDictSource
from ..task_vectors import TaskVector, sum_task_vectors
from .spec import Hyperparameter, MergeMethod, Patterns
from .task_arithmetic import ALPHA


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
    """``theta + alpha * sum_t d_t * tau_t / (1 - p)``: random drop and rescale, then task arithmetic.

    ``d_t`` keeps each entry independently with probability ``1 - p``. Each tensor's draws come
    from a CPU generator seeded by ``(seed, t, name)``, so results are reproducible, the same on
    every device, and the same whether the tensors are merged together or one at a time (as the
    streaming merge of :mod:`breadcrumbs_lib.checkpoints` does). ``p = 0`` is exactly task
    arithmetic.
    """
    check_drop_rate(p)
    check_seed(seed)

    def drop_and_rescale(index: int, vector: TaskVector) -> TaskVector:
        return TaskVector({key: _drop_and_rescale(delta, p, _generator(int(seed), index, key)) for key, delta in vector.items()})

    return sum_task_vectors(base, finetuned, include=include, exclude=exclude, transform=drop_and_rescale).apply_to(base, alpha)


def check_drop_rate(p: object) -> None:
    """``p``, the probability of dropping an entry, lies in [0, 1)."""
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
        raise ValueError(f"drop rate p must lie in [0, 1), got p={p!r}")


def check_seed(seed: object) -> None:
    """The seed of the drops is a non-negative integer."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got seed={seed!r}")


def _drop_and_rescale(delta: Tensor, p: float, generator: torch.Generator) -> Tensor:
    if p == 0.0:
        return delta
    keep = torch.rand(delta.shape, generator=generator) >= p
    return delta * keep.to(delta.device) / (1.0 - p)


def _generator(seed: int, index: int, key: str) -> torch.Generator:
    """A CPU generator for tensor ``key`` of model ``index``, with an independent 63-bit seed
    derived from ``seed``, the index and the tensor's name."""
    name = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little")
    child = int(np.random.SeedSequence([seed, index, name]).generate_state(1, dtype=np.uint64)[0] >> 1)
    return torch.Generator(device="cpu").manual_seed(child)


SPEC = MergeMethod(
    name="dare",
    display_name="DARE",
    function=dare,
    hyperparameters=(
        ALPHA,
        Hyperparameter("p", check_drop_rate, meaning="probability of dropping each entry"),
        Hyperparameter("seed", check_seed, 0, "seed of the drops (one stream per model)"),
    ),
    color="tab:purple",
    equivalent_to=lambda settings: "task_arithmetic" if settings["p"] == 0 else None,
)
