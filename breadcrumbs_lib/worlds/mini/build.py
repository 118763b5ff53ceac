"""Build the ``mini`` world's workbench: a CLIP pretrained here, contrastively, on a generated
caption corpus (cached), the zero-shot heads of the eight generated tasks, and their splits."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ...core.state_dicts import load_state_dict, save_state_dict
from ...modeling.models import create_clip, tokenizer_for, zero_shot_head
from ...modeling.training import pretrain_clip, tokenize
from ..presets import Preset
from ..workbench import Workbench, WorldOptions, read_curves, write_curves
from .data import mini_split, mini_task
from .glyph_pool import pool_corpus
from .tasks import pretraining_corpus


def build(preset: Preset, size: str, tasks: list[str], *, seed: int, device: torch.device, cache_dir: Path,
          folder: Path, recompute: bool, options: WorldOptions) -> tuple[Workbench, Path]:
    """The workbench (without fine-tuned models) and the folder of its foundation, ``folder``.

    Every image is generated here, so the paper world's ``options`` do not apply."""
    model_name = preset.model_name(size)
    seconds: dict[str, float] = {}
    clip = _foundation(preset, model_name, seed, folder, recompute, device, seconds)
    curves = read_curves(folder)
    tokenizer = tokenizer_for(model_name)
    definitions = {task: mini_task(task, seed) for task in tasks}
    heads = {task: zero_shot_head(clip, tokenizer, definition.classnames, definition.templates, device)
             for task, definition in definitions.items()}
    splits = {task: {split: mini_split(task, split, count, seed, cache_dir / preset.world)
                     for split, count in preset.split_sizes.items()} for task in tasks}
    base = {key: value.detach().clone() for key, value in clip.visual.state_dict().items()}
    classnames = {task: definition.classnames for task, definition in definitions.items()}
    return Workbench(preset, size, device, clip, heads, splits, base, {}, curves, seconds, classnames=classnames), folder


def _foundation(preset: Preset, model_name: str, seed: int, folder: Path, recompute: bool,
                device: torch.device, seconds: dict[str, float]) -> nn.Module:
    """The pretrained CLIP model: loaded from ``folder`` or pretrained now (and saved, with its
    loss curve)."""
    clip = create_clip(model_name, seed=seed, device=device)
    path = folder / "foundation.safetensors"
    if path.exists() and not recompute:
        clip.load_state_dict(load_state_dict(path))
        return clip.eval()
    start = time.perf_counter()
    recipe = preset.pretraining
    images, captions = pretraining_corpus(recipe.corpus_per_class, seed, recipe.named_share)
    if recipe.pool_classes:
        pool_images, pool_captions = pool_corpus(recipe.pool_classes, recipe.pool_per_class, seed, recipe.named_share)
        images, captions = np.concatenate([images, pool_images]), captions + pool_captions
    images = torch.from_numpy(images.transpose(0, 3, 1, 2).copy())
    tokens = tokenize(tokenizer_for(model_name), captions)
    curve = pretrain_clip(clip, images, tokens, preset.pretraining.optim, seed=seed, device=device)
    seconds["pretraining"] = time.perf_counter() - start
    save_state_dict(clip.state_dict(), path, metadata={"model": model_name})
    write_curves(folder, {"pretraining": curve})
    return clip.eval()


