"""Test helpers: a brute-force reference for Breadcrumbs masks and small random models."""

from __future__ import annotations

import math

import torch


def reference_band_mask(values: torch.Tensor, beta: float, gamma: float) -> torch.Tensor:
    """The definition, by a full stable sort: rank entries of a 1-D tensor by |x| (ties by
    index), keep ranks [floor(beta*n), n - floor(gamma*n))."""
    magnitudes = values.detach().to(torch.float64).abs().reshape(-1)
    n = magnitudes.numel()
    order = torch.argsort(magnitudes, stable=True)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(n)
    n_low, n_high = math.floor(beta * n), math.floor(gamma * n)
    return ((rank >= n_low) & (rank < n - n_high)).reshape(values.shape)


def reference_row_mask(values: torch.Tensor, beta: float, gamma: float) -> torch.Tensor:
    rows = values.reshape(-1, values.shape[-1])
    return torch.stack([reference_band_mask(row, beta, gamma) for row in rows]).reshape(values.shape)


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
