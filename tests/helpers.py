"""Test helpers: small random models."""

from __future__ import annotations

import torch


def small_model(seed: int, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """A tiny state dict with the kinds of entries real ones have (matrices, biases, a 0-d scale,
    an integer buffer)."""
    generator = torch.Generator().manual_seed(seed)
    return {
        "layer.weight": torch.randn(6, 5, generator=generator).to(dtype),
        "layer.bias": torch.randn(6, generator=generator).to(dtype),
        "norm.weight": torch.randn(5, generator=generator).to(dtype),
        "logit_scale": torch.randn((), generator=generator).to(dtype),
        "counter": torch.tensor(7, dtype=torch.int64),
    }


def finetune_of(base: dict[str, torch.Tensor], seed: int, scale: float = 0.1) -> dict[str, torch.Tensor]:
    """``base`` plus a seeded perturbation of every floating tensor."""
    generator = torch.Generator().manual_seed(seed)
    out = {}
    for key, value in base.items():
        if value.is_floating_point():
            noise = torch.randn(value.shape, generator=generator)
            out[key] = (value.float() + scale * noise).to(value.dtype)
        else:
            out[key] = value.clone()
    return out
