"""The fine-tuned-minus-base difference of one tensor, in float32, with a finiteness check:
formed on its own, or added into a running sum without being stored."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .cpu_kernels import add_difference_counting_non_finite, n_chunks, subtract_counting_non_finite


def float32_difference(finetuned: Tensor, base: Tensor) -> tuple[Tensor, bool]:
    """``(delta, finite)``: ``finetuned - base`` in float32, and whether all of it is finite.

    Contiguous float32 CPU tensors take one numba pass that subtracts and counts non-finite
    entries together (torch needs a subtraction and then a sum); it runs on the thread pool of
    the numba kernels that mask the delta next, so a merge's per-tensor loop stays on one pool.
    Other dtypes and devices use torch (fp16/bf16 upcast first).
    """
    finetuned, base = finetuned.detach(), base.detach()
    if (finetuned.dtype == base.dtype == torch.float32 and finetuned.device.type == base.device.type == "cpu"
            and finetuned.is_contiguous() and base.is_contiguous()):
        delta = torch.empty(finetuned.shape, dtype=torch.float32)
        non_finite = subtract_counting_non_finite(
            finetuned.reshape(-1).numpy(), base.reshape(-1).numpy(), delta.view(-1).numpy(),
            n_chunks(delta.numel()),
        )
        return delta, non_finite == 0
    delta = finetuned.to(torch.float32) - base.to(torch.float32)
    return delta, math.isfinite(float(delta.sum())) or bool(torch.isfinite(delta).all())


def add_float32_difference(total: Tensor, finetuned: Tensor, base: Tensor) -> bool:
    """``total += finetuned - base`` (``total`` float32, same shape); returns whether every
    difference was finite. The same bits as ``total.add_(float32_difference(...)[0])``: on
    contiguous float32 CPU tensors in one numba pass that never stores the difference, otherwise
    through :func:`float32_difference`."""
    finetuned, base = finetuned.detach(), base.detach()
    if (finetuned.dtype == base.dtype == torch.float32 and total.device.type == finetuned.device.type
            == base.device.type == "cpu" and total.is_contiguous() and finetuned.is_contiguous() and base.is_contiguous()):
        non_finite = add_difference_counting_non_finite(
            total.view(-1).numpy(), finetuned.reshape(-1).numpy(), base.reshape(-1).numpy(), n_chunks(total.numel()),
        )
        return non_finite == 0
    delta, finite = float32_difference(finetuned, base)
    total.add_(delta.to(total.device))
    return finite
