"""Image tensors for training and evaluation: labelled splits, normalisation, batches.

A split is stored as uint8 images ``(N, 3, H, W)`` and int64 labels; images are normalised with
CLIP's constants only when a batch is formed, so caches stay small and exact.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from .models import CLIP_MEAN, CLIP_STD


@dataclass(frozen=True)
class ImageSplit:
    """Images (uint8, ``(N, 3, H, W)``) and their labels (int64, ``(N,)``)."""

    images: Tensor
    labels: Tensor

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4 or self.images.shape[1] != 3:
            raise ValueError(f"images must be uint8 (N, 3, H, W), got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError(f"labels of shape {tuple(self.labels.shape)} do not match {self.images.shape[0]} images")

    def __len__(self) -> int:
        return self.images.shape[0]


def normalize(images: Tensor, device: torch.device | str = "cpu") -> Tensor:
    """uint8 ``(N, 3, H, W)`` images to float32, scaled to [0, 1] and normalised like CLIP."""
    mean = torch.tensor(CLIP_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, device=device).view(1, 3, 1, 1)
    return (images.to(device, non_blocking=True).float() / 255.0 - mean) / std


def shuffled_batches(num_items: int, batch_size: int, seed: int) -> Iterator[Tensor]:
    """An endless stream of index batches: seeded reshuffles of ``range(num_items)``."""
    generator = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(num_items, generator=generator)
        for start in range(0, num_items - batch_size + 1, batch_size):
            yield order[start:start + batch_size]
        if num_items < batch_size:
            yield order


#: Labelled images for training or evaluation: a generated in-memory split, or any iterable of
#: ``(normalised images, labels)`` batches such as a torch ``DataLoader`` over a real dataset.
Images = ImageSplit | Iterable[tuple[Tensor, Tensor]]


def training_batches(train: Images, batch_size: int, seed: int, device: torch.device | str) -> Iterator[tuple[Tensor, Tensor]]:
    """Endless ``(normalised images, labels)`` batches on ``device``: seeded reshuffles of an
    in-memory split, or repeated passes over a loader (whose own sampler shuffles)."""
    if isinstance(train, ImageSplit):
        for index in shuffled_batches(len(train), batch_size, seed):
            yield normalize(train.images[index], device), train.labels[index].to(device)
    else:
        while True:
            for images, labels in train:
                yield images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
