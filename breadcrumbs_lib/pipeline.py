"""Build (or load from cache) everything a study needs: foundation, heads, data, fine-tuned models.

:func:`prepare` is what the notebooks call. For the ``mini`` preset it pretrains the foundation
contrastively on a generated caption corpus, builds each task's zero-shot head, and fine-tunes
the image encoder once per task. Every artifact is cached under
``<cache_dir>/<preset>/<size>/<key>/`` as safetensors, where ``key`` hashes everything that
determines it (model config, recipe, seed, data version; for ``paper`` also the digest of the
pretrained weights, so that models fine-tuned from other weights are never reused); a re-run loads them, and
``recompute=True`` rebuilds them. Writes are atomic, so an interrupted run never leaves a
checkpoint that loads wrong.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .data import MINI_DATA_VERSION, Images, mini_split
from .devices import pick_device
from .mini_tasks import MINI_TASKS, pretraining_corpus
from .models import MODEL_CONFIG_DIR, ImageClassifier, create_clip, tokenizer_for, zero_shot_head
from .paper_data import check_paper_assets, load_pretrained_clip, load_split_datasets, loader
from .paper_tasks import PAPER_TASKS
from .paths import DEFAULT_CACHE_DIR
from .presets import Preset, get_preset
from .state_dicts import StateDict, check_same_layout, load_state_dict, save_state_dict, state_dict_digest
from .training import finetune, pretrain_clip, tokenize


@dataclass
class Workbench:
    """The artifacts of one preset and model size, ready for merging and evaluation."""

    preset: Preset
    size: str
    device: torch.device
    clip: nn.Module  # the foundation model (image and text towers)
    heads: dict[str, Tensor]  # task -> frozen zero-shot head (C, D)
    splits: dict[str, dict[str, Images]]  # task -> split -> images (in memory, or a loader)
    base: StateDict  # the foundation's image-encoder weights: theta
    finetuned: dict[str, StateDict]  # task -> fine-tuned image-encoder weights: theta'_t
    curves: dict[str, list[float]] = field(default_factory=dict)  # "pretraining" / task -> loss per step
    seconds: dict[str, float] = field(default_factory=dict)  # wall time of what was computed this run

    @property
    def tasks(self) -> list[str]:
        """The tasks prepared (all of the preset's, or the subset asked for)."""
        return list(self.heads)

    def classifier(self) -> ImageClassifier:
        """A classifier around a private copy of the foundation's image encoder (same
        architecture and options, e.g. QuickGELU for OpenAI weights)."""
        encoder = copy.deepcopy(self.clip.visual)
        encoder.load_state_dict(self.base)
        return ImageClassifier(encoder, next(iter(self.heads.values()))).to(self.device)


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
) -> Workbench:
    """Foundation, heads, splits and fine-tuned encoders for ``preset`` / ``size`` (cached).

    ``data_root``, ``weights`` (size -> CLIP checkpoint file) and ``finetuned_dir`` (holding
    ``<size>/<task>.safetensors`` or ``.pt`` encoder or CLIP state dicts) and ``download``
    (fetch CLIP's weights if they are not cached) serve the ``paper`` preset: see :mod:`.paper_data`.
    """
    preset = get_preset(preset) if isinstance(preset, str) else preset
    tasks = list(preset.tasks if tasks is None else tasks)
    unknown = sorted(set(tasks) - set(preset.tasks))
    if unknown:
        raise ValueError(f"unknown task(s) {unknown} for preset {preset.name!r}; expected some of {list(preset.tasks)}")
    model_name = preset.model_name(size)
    device = torch.device(device) if device is not None else pick_device()
    foundation_folder = Path(cache_dir) / preset.name / size / foundation_key(preset, model_name, seed)
    if preset.name == "paper":
        bench = _paper_workbench(preset, size, tasks, seed, device, data_root, (weights or {}).get(size), download)
        _load_finetuned(bench, finetuned_dir)
        # models fine-tuned here belong to these base weights: other weights (another file) get another folder
        foundation_folder = foundation_folder.with_name(f"{foundation_folder.name}-{state_dict_digest(bench.base)[:12]}")
    else:
        bench = _mini_workbench(preset, size, tasks, seed, device, foundation_folder, recompute, Path(cache_dir) / preset.name)
    _finetune_missing(bench, foundation_folder / f"finetuned-{finetuning_key(preset)}", recompute, seed)
    return bench


def _mini_workbench(preset: Preset, size: str, tasks: list[str], seed: int, device: torch.device, folder: Path,
                    recompute: bool, data_dir: Path) -> Workbench:
    model_name = preset.model_name(size)
    seconds: dict[str, float] = {}
    clip = _foundation(preset, model_name, seed, folder, recompute, device, seconds)
    curves = _read_curves(folder)
    tokenizer = tokenizer_for(model_name)
    heads = {task: zero_shot_head(clip, tokenizer, MINI_TASKS[task].classnames, MINI_TASKS[task].templates, device)
             for task in tasks}
    splits = {task: {split: mini_split(task, split, count, seed, data_dir) for split, count in preset.split_sizes.items()}
              for task in tasks}
    base = {key: value.detach().clone() for key, value in clip.visual.state_dict().items()}
    return Workbench(preset, size, device, clip, heads, splits, base, {}, curves, seconds)


def _paper_workbench(preset: Preset, size: str, tasks: list[str], seed: int, device: torch.device,
                     data_root: str | Path | None, weights: str | Path | None, download: bool) -> Workbench:
    model_name = preset.model_name(size)
    check_paper_assets(data_root, tasks, model_name, weights, download)
    clip, preprocess = load_pretrained_clip(model_name, weights, device=device, download=download)
    tokenizer = tokenizer_for(model_name)
    heads, splits = {}, {}
    for task in tasks:
        datasets, classnames = load_split_datasets(task, data_root, preprocess, seed)
        heads[task] = zero_shot_head(clip, tokenizer, classnames, PAPER_TASKS[task].templates, device)
        splits[task] = {name: loader(dataset, batch_size=preset.finetune.batch_size, shuffle=name == "train", seed=seed)
                        for name, dataset in datasets.items()}
    base = {key: value.detach().cpu().clone() for key, value in clip.visual.state_dict().items()}
    return Workbench(preset, size, device, clip, heads, splits, base, {}, {}, {})


def _load_finetuned(bench: Workbench, finetuned_dir: str | Path | None) -> None:
    """Take already fine-tuned models from ``finetuned_dir/<size>/<task>.{safetensors,pt}``
    (image-encoder state dicts, or whole CLIP state dicts whose ``visual.*`` part is used)."""
    if finetuned_dir is None:
        return
    for task in bench.tasks:
        for suffix in (".safetensors", ".pt"):
            path = Path(finetuned_dir) / bench.size / f"{task}{suffix}"
            if path.exists():
                state = load_state_dict(path)
                if any(key.startswith("visual.") for key in state):
                    state = {key[len("visual."):]: value for key, value in state.items() if key.startswith("visual.")}
                check_same_layout(bench.base, state, str(path))
                bench.finetuned[task] = state
                break


def _finetune_missing(bench: Workbench, folder: Path, recompute: bool, seed: int) -> None:
    """Fine-tune (and cache in ``folder``) every task that has no fine-tuned encoder yet."""
    bench.curves.update({task: curve for task, curve in _read_curves(folder).items() if task in bench.tasks})
    missing = []
    for task in bench.tasks:
        path = _finetuned_path(folder, task)
        if task in bench.finetuned:
            continue
        if path.exists() and not recompute:
            bench.finetuned[task] = load_state_dict(path)
        else:
            missing.append(task)
    classifier = bench.classifier() if missing else None
    for task in tqdm(missing, desc="fine-tuned models", leave=False, disable=not missing):
        start = time.perf_counter()
        classifier.encoder.load_state_dict(bench.base)
        classifier.set_head(bench.heads[task])
        bench.curves[task] = finetune(classifier, bench.splits[task]["train"], bench.preset.finetune, seed=seed,
                                      device=bench.device, description=f"fine-tuning {task}")
        bench.seconds[f"fine-tuning {task}"] = time.perf_counter() - start
        bench.finetuned[task] = {key: value.detach().cpu().clone() for key, value in classifier.encoder.state_dict().items()}
        save_state_dict(bench.finetuned[task], _finetuned_path(folder, task),
                        metadata={"task": task, "base": bench.preset.model_name(bench.size)})
        _write_curves(folder, {task: bench.curves[task]})


def _finetuned_path(folder: Path, task: str) -> Path:
    return folder / f"{task}.safetensors"


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
    images, captions = pretraining_corpus(preset.pretraining.corpus_per_class, seed, preset.pretraining.named_share)
    images = torch.from_numpy(images.transpose(0, 3, 1, 2).copy())
    tokens = tokenize(tokenizer_for(model_name), captions)
    curve = pretrain_clip(clip, images, tokens, preset.pretraining.optim, seed=seed, device=device)
    seconds["pretraining"] = time.perf_counter() - start
    save_state_dict(clip.state_dict(), path, metadata={"model": model_name})
    _write_curves(folder, {"pretraining": curve})
    return clip.eval()


def foundation_key(preset: Preset, model_name: str, seed: int) -> str:
    """A hash of what determines the foundation: model config, pretraining, seed and, for the
    generated worlds, the data version."""
    return _hash(_foundation_fields(preset, model_name, seed))


def finetuning_key(preset: Preset) -> str:
    """A hash of what determines the fine-tuned models on top of a foundation: the recipe and
    the split sizes (the training split's size among them)."""
    return _hash(_finetuning_fields(preset))


def artifact_key(preset: Preset, model_name: str, seed: int) -> str:
    """A hash of everything that determines the cached artifacts (foundation and fine-tuned
    models): what identifies a run's checkpoints in the results store."""
    return _hash({**_foundation_fields(preset, model_name, seed), **_finetuning_fields(preset)})


def _finetuning_fields(preset: Preset) -> dict[str, object]:
    return {"finetune": dataclasses.asdict(preset.finetune), "splits": preset.split_sizes}


def _foundation_fields(preset: Preset, model_name: str, seed: int) -> dict[str, object]:
    config_file = MODEL_CONFIG_DIR / f"{model_name}.json"
    generated = preset.pretraining is not None  # mini-like worlds: data made by mini_tasks, versioned
    return {
        "model": json.loads(config_file.read_text()) if config_file.exists() else model_name,
        "pretraining": dataclasses.asdict(preset.pretraining) if generated else None,
        "seed": seed,
        "data_version": MINI_DATA_VERSION if generated else None,
    }


def _hash(fields: dict[str, object]) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]


def _read_curves(folder: Path) -> dict[str, list[float]]:
    path = folder / "curves.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _write_curves(folder: Path, curves: dict[str, list[float]]) -> None:
    """Merge ``curves`` into ``folder/curves.json``, atomically."""
    merged = {**_read_curves(folder), **curves}
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / ".curves.json.tmp"
    tmp.write_text(json.dumps(merged))
    tmp.replace(folder / "curves.json")
