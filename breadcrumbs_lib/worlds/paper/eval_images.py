"""The ``paper`` world's evaluation images, decoded once.

A sweep scores hundreds of merged models on the same validation and test images. Read through a
loader, every image file would be decoded, resized and cropped again for every model; here each
split goes through open_clip's evaluation transform once, up to its last two steps (``ToTensor``
and ``Normalize``, which :func:`breadcrumbs_lib.modeling.data.normalize` applies batch by batch
with the same mean and standard deviation, bit for bit), and is kept as one uint8 tensor
``(N, 3, H, W)`` on disk. Sweep workers read it memory-mapped, so they share its pages, and the
:class:`~breadcrumbs_lib.modeling.evaluation.Evaluator` copies it to the GPU when it fits.

Each split is one folder (``images.npy``, ``labels.npy``), written under a temporary name and
renamed when complete, so a crash never leaves a half-written split behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import transforms as T
from tqdm.auto import tqdm

from ...modeling.data import ImageSplit
from ...modeling.models import CLIP_MEAN, CLIP_STD
from .data import Transformed, loader


def uint8_transform(transform: Callable) -> T.Compose:
    """``transform`` (open_clip's evaluation preprocessing: a ``Compose`` that ends with
    ``ToTensor`` and ``Normalize`` with CLIP's mean and standard deviation) without those two
    steps, giving uint8 ``(3, H, W)`` tensors instead: ``normalize`` of its output equals
    ``transform``'s output exactly."""
    steps = list(getattr(transform, "transforms", ()))
    if len(steps) < 2 or not isinstance(steps[-2], T.ToTensor) or not isinstance(steps[-1], T.Normalize):
        raise ValueError(f"the evaluation transform must be a Compose ending with ToTensor and Normalize "
                         f"(open_clip's); got {transform!r}")
    normalize_step = steps[-1]
    if not (np.allclose(normalize_step.mean, CLIP_MEAN) and np.allclose(normalize_step.std, CLIP_STD)):
        raise ValueError(f"the evaluation transform normalises with mean {normalize_step.mean} and std "
                         f"{normalize_step.std}, not CLIP's {CLIP_MEAN} and {CLIP_STD}, which the evaluator applies")
    return T.Compose([*steps[:-2], T.PILToTensor()])


def split_key(task: str, split: str, seed: int, data_root: str | Path, size: int, transform: Callable) -> str:
    """The folder name of one cached split: what it was read from and how (dataset, split, seed of
    the split, dataset folder, number of images, the transform's steps)."""
    fields = {"task": task, "split": split, "seed": seed, "data_root": str(Path(data_root).resolve()),
              "size": size, "transform": repr(transform)}
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]
    return f"{task}-{split}-{digest}"


def cached_split(dataset: Dataset, transform: Callable, folder: Path, *, recompute: bool = False,
                 batch_size: int = 256, progress: bool = True) -> ImageSplit:
    """``dataset``'s images through ``uint8_transform(transform)`` and its labels, as one
    memory-mapped :class:`ImageSplit`, decoded into ``folder`` on first use (or when
    ``recompute``)."""
    if recompute or not (folder / "images.npy").is_file():
        _write(dataset, uint8_transform(transform), folder, batch_size, progress, replace=recompute)
    return read_split(folder)


def read_split(folder: Path) -> ImageSplit:
    """A split written by :func:`cached_split`, its images memory-mapped (copy on write: pages
    are read when used and never written back)."""
    images = torch.from_numpy(np.load(folder / "images.npy", mmap_mode="c"))
    labels = torch.from_numpy(np.load(folder / "labels.npy"))
    return ImageSplit(images, labels)


def _write(dataset: Dataset, transform: Callable, folder: Path, batch_size: int, progress: bool,
           replace: bool) -> None:
    if len(dataset) == 0:
        raise ValueError(f"no images to decode for {folder.name}: the split is empty")
    folder.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}-"))
    try:
        shape = tuple(transform(dataset[0][0]).shape)
        images = np.lib.format.open_memmap(partial / "images.npy", mode="w+", dtype=np.uint8,
                                           shape=(len(dataset), *shape))
        labels = np.empty(len(dataset), dtype=np.int64)
        start = 0
        batches = loader(Transformed(dataset, transform), batch_size=batch_size, shuffle=False, seed=0)
        with tqdm(total=len(dataset), unit="img", desc=f"decoding {folder.name}", disable=not progress) as bar:
            for batch, targets in batches:
                images[start:start + len(batch)] = batch.numpy()
                labels[start:start + len(batch)] = targets.numpy()
                start += len(batch)
                bar.update(len(batch))
        images.flush()
        del images
        np.save(partial / "labels.npy", labels)
        if folder.exists() and not replace:  # another process wrote the same split first
            shutil.rmtree(partial)
            return
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(partial, folder)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
