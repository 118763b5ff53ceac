"""Model Breadcrumbs masks: drop the smallest and the largest shares of a task vector, per group.

Paper (Davari & Belilovsky, "Model Breadcrumbs", section 3): inside each layer of the task vector
``tau = theta' - theta``, order the entries by ``|tau|``; mask the smallest ``beta`` share and the
largest ``gamma`` share; keep the rest. The merged model is ``theta + alpha * sum_t m_t * tau_t``.

Counts are exact: a group of ``n`` entries loses ``floor(beta * n)`` smallest and
``floor(gamma * n)`` largest entries and keeps ``n - floor(beta * n) - floor(gamma * n)``.
Ties in ``|tau|`` are broken by flat index (lower index = smaller), see :mod:`.selection`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .selection import middle_band_mask

#: Groups a single tensor can be split into. ``"global"`` (one group over a whole task vector)
#: is offered by :meth:`breadcrumbs_lib.TaskVector.breadcrumbs_masks`.
TENSOR_GRANULARITIES = ("tensor", "row")
GRANULARITIES = ("tensor", "row", "global")


def check_fractions(beta: float, gamma: float) -> None:
    """Raise ``ValueError`` unless ``0 <= beta < 1``, ``0 <= gamma < 1`` and ``beta + gamma < 1``."""
    for name, value in (("beta", beta), ("gamma", gamma)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{name} must be a number in [0, 1), got {value!r}")
        if not (0.0 <= value < 1.0):
            raise ValueError(f"{name} must lie in [0, 1), got {name}={value}")
    if not beta + gamma < 1.0:
        raise ValueError(f"beta + gamma must be < 1 (something must be kept), got beta={beta}, gamma={gamma}")


def check_granularity(granularity: str, allowed: tuple[str, ...] = GRANULARITIES) -> None:
    """Raise ``ValueError`` unless ``granularity`` is one of ``allowed``."""
    if granularity not in allowed:
        hint = ""
        if granularity == "global" and "global" not in allowed:
            hint = " ('global' orders a whole task vector: use TaskVector.breadcrumbs_masks)"
        raise ValueError(f"unknown granularity {granularity!r}; expected one of {allowed}{hint}")


def band_counts(n: int, beta: float, gamma: float) -> tuple[int, int]:
    """``(floor(beta * n), floor(gamma * n))``: how many smallest / largest entries a group loses."""
    return math.floor(beta * n), math.floor(gamma * n)


def magnitude_band_mask(magnitudes: Tensor, beta: float, gamma: float) -> Tensor:
    """Keep-mask of a ``(G, m)`` group matrix of magnitudes: drop ``floor(beta*m)`` smallest
    and ``floor(gamma*m)`` largest entries of every row."""
    n_low, n_high = band_counts(magnitudes.shape[1], beta, gamma)
    return middle_band_mask(magnitudes, n_low, n_high)


def breadcrumbs_mask(delta: Tensor, beta: float, gamma: float, granularity: str = "tensor") -> Tensor:
    """Boolean keep-mask of Model Breadcrumbs for one tensor of a task vector.

    Within each group of ``n`` entries, entries are ordered by ``|delta|`` (ties: lower flat
    index counts as smaller). The ``floor(beta * n)`` smallest and the ``floor(gamma * n)``
    largest are masked (False); the other ``n - floor(beta*n) - floor(gamma*n)`` are kept (True).

    Args:
        delta: a task-vector tensor ``theta' - theta`` of any floating dtype (fp16/bf16 are
            ordered exactly, through a float32 copy of ``|delta|``). Must be finite.
        beta: share of each group masked from the bottom (negligible perturbations), in [0, 1).
        gamma: share of each group masked from the top (outliers), in [0, 1); beta + gamma < 1.
        granularity: ``"tensor"`` (the paper: the whole tensor, i.e. one layer, is one group) or
            ``"row"`` (each slice along the last dimension is a group, as in the authors'
            published code; a 1-d tensor is then a single group).

    Returns:
        bool tensor of ``delta``'s shape and device. 0-d tensors are never masked.

    Other conventions: mergekit's ``breadcrumbs`` takes ``density = 1 - beta - gamma`` (the kept
    share) and the same ``gamma``. The authors' code calls the *kept* share ``beta``:
    their ``(beta, gamma)`` is ``(1 - beta - gamma, gamma)`` here. The paper's "85% sparsity"
    means ``beta + gamma = 0.85``.

    Cost: O(n) per group (selection, never a full sort), no ``torch.quantile``; any size.
    """
    check_fractions(beta, gamma)
    check_granularity(granularity, TENSOR_GRANULARITIES)
    if not delta.is_floating_point():
        raise ValueError(f"delta must be a floating-point tensor, got dtype {delta.dtype}")
    if delta.dim() == 0:
        return torch.ones_like(delta, dtype=torch.bool)
    if not bool(torch.isfinite(delta.sum(dtype=torch.float32))):
        bad = int((~torch.isfinite(delta)).sum())
        if bad:
            raise ValueError(f"delta of shape {tuple(delta.shape)} has {bad} non-finite entries")
    magnitudes = delta.detach().abs().to(torch.float32)
    groups = magnitudes.reshape(1, -1) if granularity == "tensor" else magnitudes.reshape(-1, delta.shape[-1])
    return magnitude_band_mask(groups, beta, gamma).reshape(delta.shape)
