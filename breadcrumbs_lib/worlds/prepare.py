"""Build (or load from the cache) everything a study needs: foundation, heads, data, fine-tuned models.

:func:`prepare` is what the notebooks call. It hands the preset to its world's builder (the
preset's ``world``: ``"mini"`` pretrains a small CLIP on generated data, ``"paper"`` loads
open_clip's CLIP and the eight datasets, ``"text"`` pretrains a tiny T5 on Python's documentation,
``"paper-text"`` loads a Hugging Face T5 and four NLP datasets), then fine-tunes the model (image
encoder or T5) once per task that has no cached model (:func:`.workbench.finetune_missing`). A
re-run loads every artifact; ``recompute=True`` rebuilds them (see :mod:`.workbench` for the cache layout and its keys).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from ..modeling.devices import pick_device
from ..paths import DEFAULT_CACHE_DIR
from .mini import build as mini_world
from .paper import build as paper_world
from .paper import text_build as paper_text_world
from .presets import Preset, get_preset
from .text import build as text_world
from .workbench import AnyWorkbench, WorldOptions, finetune_missing, finetuning_key, foundation_key

#: world -> builder: ``(preset, size, tasks, *, seed, device, cache_dir, folder, recompute, options)``
#: -> ``(workbench without missing fine-tuned models, folder of its fine-tuned models' parent)``
BUILDERS: dict[str, Callable[..., tuple[AnyWorkbench, Path]]] = {"mini": mini_world.build, "paper": paper_world.build,
                                                                   "text": text_world.build,
                                                                   "paper-text": paper_text_world.build}


def prepare(
    preset: str | Preset = "mini",
    size: str = "B-32",
    *,
    seed: int = 0,
    recompute: bool = False,
    cache_dir: str | Path = DEFAULT_CACHE_DIR,
    device: str | torch.device | None = None,
    tasks: list[str] | None = None,
    data_root: str | Path | None = None,
    weights: dict[str, str | Path] | None = None,
    finetuned_dir: str | Path | None = None,
    download: bool = False,
) -> AnyWorkbench:
    """Foundation, heads (vision), splits and fine-tuned models for ``preset`` / ``size`` (cached).

    ``data_root``, ``weights`` (size -> CLIP checkpoint file) and ``finetuned_dir`` (holding
    ``<size>/<task>.safetensors`` or ``.pt`` encoder or CLIP state dicts) and ``download``
    (fetch CLIP's weights if they are not cached) serve the ``paper`` world: see :mod:`.paper.data`.
    The ``paper-text`` world reads ``data_root`` and ``weights`` (size -> a T5 folder): see
    :mod:`.paper.text_build`.
    """
    preset = get_preset(preset) if isinstance(preset, str) else preset
    if preset.world not in BUILDERS:
        raise ValueError(f"preset {preset.name!r} names an unknown world {preset.world!r}; expected one of {sorted(BUILDERS)}")
    tasks = list(preset.tasks if tasks is None else tasks)
    unknown = sorted(set(tasks) - set(preset.tasks))
    if unknown:
        raise ValueError(f"unknown task(s) {unknown} for preset {preset.name!r}; expected some of {list(preset.tasks)}")
    device = torch.device(device) if device is not None else pick_device()
    # by world, not preset: presets of one world with the same foundation (mini and many) share it
    folder = Path(cache_dir) / preset.world / size / foundation_key(preset, preset.model_name(size), seed)
    options = WorldOptions(data_root, dict(weights or {}), finetuned_dir, download)
    bench, folder = BUILDERS[preset.world](preset, size, tasks, seed=seed, device=device, cache_dir=Path(cache_dir),
                                           folder=folder, recompute=recompute, options=options)
    bench.folder, bench.seed = folder / f"finetuned-{finetuning_key(preset)}", seed
    finetune_missing(bench, recompute)
    return bench
