"""Device choice and seeding."""

from __future__ import annotations

import contextlib
import random

import numpy as np
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel


def pick_device() -> torch.device:
    """The best available device: CUDA, then Apple's MPS, then the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def supports_bf16_autocast(device: torch.device | str) -> bool:
    """Whether bfloat16 mixed precision pays on ``device``: always on CUDA; on the CPU only when
    it has native bf16 arithmetic (AVX-512 BF16 or AMX), where oneDNN's bf16 matrix products run
    about twice as fast as float32 ones (without it, bf16 is emulated and slower)."""
    kind = torch.device(device).type
    if kind == "cuda":
        return True
    if kind == "cpu":
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    return False


def bf16_autocast(device: torch.device | str) -> contextlib.AbstractContextManager:
    """bfloat16 autocast on ``device`` where :func:`supports_bf16_autocast`, else a no-op.

    Weights, gradients and optimiser state stay float32 (mixed precision): only the matrix
    products of the forward pass (and hence their backward) run in bfloat16. On the CPU,
    attention uses PyTorch's plain ("math") kernel: for the few tokens of the ``mini`` models,
    the CPU flash-attention kernel's bf16 backward costs several times more than the matrix
    products around it.
    """
    if not supports_bf16_autocast(device):
        return contextlib.nullcontext()
    kind = torch.device(device).type
    stack = contextlib.ExitStack()
    stack.enter_context(torch.autocast(kind, dtype=torch.bfloat16))
    if kind == "cpu":
        stack.enter_context(sdpa_kernel([SDPBackend.MATH]))
    return stack
