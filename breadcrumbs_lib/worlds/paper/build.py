"""Build the ``paper`` world's workbench: open_clip's pretrained CLIP, the zero-shot heads, the
training loaders and the once-decoded validation and test images of the eight vision datasets
(or of the ImageNet tasks of the many-task sequence), and any already fine-tuned models the user
gives."""

from __future__ import annotations

from pathlib import Path

import torch

from ...core.state_dicts import state_dict_digest
from ...modeling.models import tokenizer_for, zero_shot_head
from ..presets import Preset
from ..workbench import Workbench, WorldOptions
from .data import Transformed, check_paper_assets, load_pretrained_clip, load_task, loader
from .eval_images import cached_split, split_key
from .finetuned import read_finetuned_dir


def build(preset: Preset, size: str, tasks: list[str], *, seed: int, device: torch.device, cache_dir: Path,
          folder: Path, recompute: bool, options: WorldOptions) -> tuple[Workbench, Path]:
    """The workbench (with the fine-tuned models of ``options.finetuned_dir``, if any) and the
    folder its own fine-tuned models go to: ``folder`` suffixed with the digest of the base
    weights, so that models fine-tuned from other weights (another file) are never reused.
    The validation and test images are decoded once into ``cache_dir/paper/eval-images``
    (:mod:`.eval_images`; again when ``recompute``)."""
    bench = _workbench(preset, size, tasks, seed, device, options.data_root, options.weights.get(size), options.download,
                       images_dir=cache_dir / "paper" / "eval-images", recompute=recompute)
    _load_finetuned(bench, options.finetuned_dir)
    return bench, folder.with_name(f"{folder.name}-{state_dict_digest(bench.base)[:12]}")


def _workbench(preset: Preset, size: str, tasks: list[str], seed: int, device: torch.device,
               data_root: str | Path | None, weights: str | Path | None, download: bool, *,
               images_dir: Path, recompute: bool = False) -> Workbench:
    model_name = preset.model_name(size)
    check_paper_assets(data_root, tasks, model_name, weights, download)
    clip, train_transform, eval_transform = load_pretrained_clip(model_name, weights, device=device, download=download)
    tokenizer = tokenizer_for(model_name)
    heads, splits, classnames = {}, {}, {}
    for task in tasks:
        datasets, names, templates = load_task(task, data_root, seed)  # images as read, transformed per split
        heads[task] = zero_shot_head(clip, tokenizer, names, templates, device)
        classnames[task] = tuple(names)
        splits[task] = {"train": loader(Transformed(datasets["train"], train_transform),
                                        batch_size=preset.finetune.batch_size, shuffle=True, seed=seed)}
        for name in ("val", "test"):
            key = split_key(task, name, seed, data_root, len(datasets[name]), eval_transform)
            splits[task][name] = cached_split(datasets[name], eval_transform, images_dir / key, recompute=recompute)
    base = {key: value.detach().cpu().clone() for key, value in clip.visual.state_dict().items()}
    return Workbench(preset, size, device, clip, heads, splits, base, {}, {}, {}, classnames=classnames)


def _load_finetuned(bench: Workbench, finetuned_dir: str | Path | None) -> None:
    """Take already fine-tuned models from ``finetuned_dir/<size>/`` (see :mod:`.finetuned`)."""
    if finetuned_dir is not None:
        bench.finetuned.update(read_finetuned_dir(finetuned_dir, bench.size, bench.tasks, bench.base))


