"""Model Breadcrumbs masks: drop the smallest and the largest shares of a task vector, per group.

Paper (Davari & Belilovsky, "Model Breadcrumbs", section 3): inside each layer of the task vector
``tau = theta' - theta``, order the entries by ``|tau|``; mask the smallest ``beta`` share and the
largest ``gamma`` share; keep the rest. The merged model is ``theta + alpha * sum_t m_t * tau_t``.

Counts are exact: a group of ``n`` entries loses ``floor(beta * n)`` smallest and
``floor(gamma * n)`` largest entries and keeps ``n - floor(beta * n) - floor(gamma * n)``.
Ties in ``|tau|`` are broken by flat index (lower index = smaller).

:func:`reference_breadcrumbs_mask` is that definition, written as plainly as it reads (a full
stable sort). :func:`breadcrumbs_mask` computes the same mask in O(n) per group, by selection
(:mod:`._accel.selection`), and takes ``backend="reference"`` to run the definition instead.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
from torch import Tensor

from ._accel import NonFiniteValuesError, RankBand, band_mask, find_band, masked_outside_ranks

#: Groups a single tensor can be split into. ``"global"`` (one group over a whole task vector)
#: is offered by :meth:`breadcrumbs_lib.TaskVector.breadcrumbs_masks`.
TENSOR_GRANULARITIES = ("tensor", "row")
GRANULARITIES = ("tensor", "row", "global")
#: How :func:`breadcrumbs_mask` computes: ``"fast"`` (selection, O(n): a numba kernel for one
#: group on the CPU, ``torch.kthvalue`` for many groups or other devices, chosen by the
#: selection itself), ``"reference"`` (the definition, a full sort), ``"auto"`` (the fast path;
#: both are exact, so the choice is one of speed only).
BACKENDS = ("auto", "fast", "reference")


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


def find_breadcrumbs_band(groups: Tensor, beta: float, gamma: float) -> RankBand:
    """Locate the kept band of a ``(G, m)`` float32 group matrix: ranks
    ``[floor(beta*m), m - floor(gamma*m))`` by ``|x|``. ``ValueError`` if an entry is not finite."""
    n_low, n_high = band_counts(groups.shape[1], beta, gamma)
    return find_band(groups, n_low, n_high)


def reference_breadcrumbs_mask(delta: Tensor, beta: float, gamma: float, granularity: str = "tensor") -> Tensor:
    """The definition of the Breadcrumbs keep-mask, by a full stable sort (O(n log n)).

    In each group (the whole tensor, or each slice along the last dimension for ``"row"``),
    rank the ``n`` entries by ``|delta|``, ties by flat index (a stable sort); keep the ranks
    ``[floor(beta * n), n - floor(gamma * n))``. 0-d and empty tensors are kept whole;
    ``delta`` must be finite. Values are compared in float32 (exact for fp16, bf16 and fp32
    deltas; float64 entries equal in float32 count as ties). :func:`breadcrumbs_mask` returns the
    same mask, faster."""
    check_fractions(beta, gamma)
    check_granularity(granularity, TENSOR_GRANULARITIES)
    if delta.dim() == 0 or delta.numel() == 0:
        return torch.ones_like(delta, dtype=torch.bool)
    magnitudes = delta.detach().to(torch.float32).abs()
    groups = magnitudes.reshape(1, -1) if granularity == "tensor" else magnitudes.reshape(-1, delta.shape[-1])
    n = groups.shape[1]
    order = torch.argsort(groups, dim=1, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(n, device=delta.device).expand_as(order))
    n_low, n_high = band_counts(n, beta, gamma)
    return ((rank >= n_low) & (rank < n - n_high)).reshape(delta.shape)


def breadcrumbs_mask(delta: Tensor, beta: float, gamma: float, granularity: str = "tensor", *,
                     backend: str = "auto") -> Tensor:
    """Boolean keep-mask of Model Breadcrumbs for one tensor of a task vector.

    Within each group of ``n`` entries, entries are ordered by ``|delta|`` (ties: lower flat
    index counts as smaller). The ``floor(beta * n)`` smallest and the ``floor(gamma * n)``
    largest are masked (False); the other ``n - floor(beta*n) - floor(gamma*n)`` are kept (True).

    Args:
        delta: a task-vector tensor ``theta' - theta`` of any floating dtype (ordered in
            float32: exactly for fp16/bf16/fp32). Must be finite.
        beta: share of each group masked from the bottom (negligible perturbations), in [0, 1).
        gamma: share of each group masked from the top (outliers), in [0, 1); beta + gamma < 1.
        granularity: ``"tensor"`` (the paper: the whole tensor, i.e. one layer, is one group) or
            ``"row"`` (each slice along the last dimension is a group, as in the authors'
            published code; a 1-d tensor is then a single group).
        backend: ``"auto"`` or ``"fast"`` (selection, below) or ``"reference"``
            (:func:`reference_breadcrumbs_mask`, the definition); both give the same mask.

    Returns:
        bool tensor of ``delta``'s shape and device. 0-d tensors are never masked.

    Other conventions: mergekit's ``breadcrumbs`` takes ``density = 1 - beta - gamma`` (the kept
    share) and the same ``gamma``. The authors' code calls the *kept* share ``beta``:
    their ``(beta, gamma)`` is ``(1 - beta - gamma, gamma)`` here. The paper's "85% sparsity"
    means ``beta + gamma = 0.85``.

    Cost (the fast path): O(n) per group (selection, never a full sort), no ``torch.quantile``;
    any size. The reference backend sorts: O(n log n).
    """
    _check_backend(backend)
    groups = _groups(delta, beta, gamma, granularity)
    if backend == "reference":
        non_finite = 0 if groups is None else int((~torch.isfinite(groups)).sum())
        if non_finite:
            raise ValueError(f"delta of shape {tuple(delta.shape)} has {non_finite} non-finite entries")
        return reference_breadcrumbs_mask(delta, beta, gamma, granularity)
    if groups is None:
        return torch.ones_like(delta, dtype=torch.bool)
    with _naming_non_finite(delta):
        return band_mask(groups, find_breadcrumbs_band(groups, beta, gamma)).reshape(delta.shape)


def breadcrumbs_masked(
    delta: Tensor,
    beta: float,
    gamma: float,
    granularity: str = "tensor",
    *,
    inplace: bool = False,
    check_finite: bool = True,
    backend: str = "auto",
) -> Tensor:
    """``breadcrumbs_mask(delta, ...) * delta`` as float32, in one fused pass where possible.

    With ``inplace=True`` the masked entries of ``delta`` (which must then be a contiguous
    float32 tensor) are zeroed in place and ``delta`` is returned: merging uses this on
    temporary task vectors to save an allocation per tensor. ``check_finite=False`` skips the
    finiteness check for a caller that has just made it (merging, as it forms each delta);
    non-finite entries then give an unspecified result or error. ``backend`` is
    :func:`breadcrumbs_mask`'s (``"reference"`` forms the mask by the definition, then multiplies).
    """
    _check_backend(backend)
    if inplace and (delta.dtype != torch.float32 or not delta.is_contiguous()):
        raise ValueError(f"inplace masking needs a contiguous float32 tensor, got {delta.dtype}")
    if backend == "reference":
        keep = breadcrumbs_mask(delta, beta, gamma, granularity, backend="reference")
        return delta.masked_fill_(~keep, 0.0) if inplace else delta.to(torch.float32) * keep
    groups = _groups(delta, beta, gamma, granularity)
    if groups is None:
        return delta if inplace else delta.to(torch.float32, copy=True)
    n_low, n_high = band_counts(groups.shape[1], beta, gamma)
    with _naming_non_finite(delta):
        masked = masked_outside_ranks(groups, n_low, n_high, out=groups if inplace else None, check_finite=check_finite)
    return delta if inplace else masked.reshape(delta.shape)  # in place, groups is a view of delta


def _check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")


@contextlib.contextmanager
def _naming_non_finite(delta: Tensor) -> Iterator[None]:
    """Re-raise the selection's finiteness error as a ``ValueError`` naming ``delta``'s shape."""
    try:
        yield
    except NonFiniteValuesError as error:
        raise ValueError(f"delta of shape {tuple(delta.shape)} has {error.count} non-finite entries") from None


def _groups(delta: Tensor, beta: float, gamma: float, granularity: str) -> Tensor | None:
    """Validate the arguments and view ``delta`` as a float32 ``(G, m)`` group matrix
    (``None`` for tensors that are never masked: 0-d or empty). Finiteness is checked by the
    selection itself (:func:`._accel.selection.find_band`), in its own pass over the values."""
    check_fractions(beta, gamma)
    check_granularity(granularity, TENSOR_GRANULARITIES)
    if not delta.is_floating_point():
        raise ValueError(f"delta must be a floating-point tensor, got dtype {delta.dtype}")
    if delta.dim() == 0 or delta.numel() == 0:
        return None
    values = delta.detach().to(torch.float32).contiguous()
    return values.reshape(1, -1) if granularity == "tensor" else values.reshape(-1, delta.shape[-1])
