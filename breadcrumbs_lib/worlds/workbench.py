"""The workbench of a study, what identifies its cached artifacts, and the fine-tuning every world shares.

A :class:`Workbench` holds one preset and model size: the foundation, the frozen zero-shot heads,
the splits, and the fine-tuned image encoders. Every artifact is cached under
``<cache_dir>/<world>/<size>/<foundation key>/`` (the foundation) and its
``finetuned-<fine-tuning key>/`` folder (one safetensors file per task), with the Fishers of the
fine-tuned models (for Fisher merging, estimated when first asked for) in its
``fisher-<Fisher key>/`` folder, where each key hashes everything that determines it (model
config, recipe, seed, data version, Fisher recipe); writes are atomic, so an interrupted run
never leaves a checkpoint that loads wrong.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..core.state_dicts import StateDict, load_state_dict, read_metadata, save_state_dict
from ..modeling.data import Images
from ..modeling.evaluation import Evaluator
from ..modeling.fisher import FisherConfig, diagonal_fisher
from ..modeling.models import MODEL_CONFIG_DIR, ImageClassifier
from ..modeling.training import finetune
from .mini.glyph_pool import pool_classes
from .presets import Preset


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
    folder: Path | None = None  # where the fine-tuned models are cached (None: nothing is cached)
    seed: int = 0
    fishers: dict[str, StateDict] = field(default_factory=dict)  # task -> Fisher of theta'_t, once asked for
    fisher_seconds: dict[str, float] = field(default_factory=dict)  # task -> seconds its Fisher took to estimate
    classnames: dict[str, tuple[str, ...]] = field(default_factory=dict)  # task -> the class names its head reads

    @property
    def tasks(self) -> list[str]:
        """The tasks prepared (all of the preset's, or the subset asked for)."""
        return list(self.heads)

    def num_classes(self, task: str) -> int:
        return int(self.heads[task].shape[0])

    def evaluators(self, splits: Sequence[str]) -> dict[str, Evaluator]:
        """One :class:`.Evaluator` per split (of every task), all sharing one live classifier: load
        weights into one of them and every split scores them."""
        classifier = self.classifier()
        return {split: Evaluator(classifier, self.heads, {task: self.splits[task][split] for task in self.tasks})
                for split in splits}

    def finetune_task(self, task: str) -> tuple[StateDict, list[float]]:
        """``task``'s image encoder fine-tuned from the foundation (head frozen, the preset's recipe,
        this workbench's seed) and its loss per step."""
        classifier = self.classifier()
        classifier.set_head(self.heads[task])
        curve = finetune(classifier, self.splits[task]["train"], self.preset.finetune, seed=self.seed,
                         device=self.device, description=f"fine-tuning {task}")
        return {key: value.detach().cpu().clone() for key, value in classifier.encoder.state_dict().items()}, curve

    def classifier(self) -> ImageClassifier:
        """A classifier around a private copy of the foundation's image encoder (same
        architecture and options, e.g. QuickGELU for OpenAI weights)."""
        encoder = copy.deepcopy(self.clip.visual)
        encoder.load_state_dict(self.base)
        return ImageClassifier(encoder, next(iter(self.heads.values()))).to(self.device)

    def fisher(self, task: str) -> StateDict:
        """The diagonal Fisher of ``task``'s fine-tuned encoder on its training split, estimated
        as the preset's :class:`..modeling.fisher.FisherConfig` says (:func:`cached_fisher`)."""
        def estimate() -> StateDict:
            classifier = self.classifier()
            classifier.encoder.load_state_dict(self.finetuned[task])
            classifier.set_head(self.heads[task])
            return diagonal_fisher(classifier, self.splits[task]["train"], self.preset.fisher, of=classifier.encoder,
                                   seed=self.seed, device=self.device, description=f"Fisher of {task}")
        return cached_fisher(self, task, estimate)

    def fisher_folder(self) -> Path:
        """Where the Fishers of the fine-tuned models are cached: beside them, keyed by the recipe."""
        return fisher_folder(self.folder, self.preset.fisher)


def cached_fisher(bench: AnyWorkbench, task: str, estimate: Callable[[], StateDict]) -> StateDict:
    """``bench.fishers[task]``: from memory, from the cache (:func:`fisher_folder` of
    ``bench.folder``), or ``estimate()`` now and cached, with the seconds it took in
    ``bench.fisher_seconds[task]`` (read back from the file's metadata when it comes from the cache)."""
    if task not in bench.fishers:
        path = None if bench.folder is None else fisher_folder(bench.folder, bench.preset.fisher) / f"{task}.safetensors"
        if path is not None and path.exists():
            bench.fishers[task] = load_state_dict(path)
            bench.fisher_seconds[task] = float(read_metadata(path).get("seconds", "nan"))
        else:
            start = time.perf_counter()
            bench.fishers[task] = estimate()
            bench.fisher_seconds[task] = bench.seconds[f"Fisher of {task}"] = time.perf_counter() - start
            if path is not None:
                save_state_dict(bench.fishers[task], path, metadata={
                    "task": task, "seconds": f"{bench.fisher_seconds[task]:.4f}", **_text(bench.preset.fisher)})
    return bench.fishers[task]


def fisher_folder(folder: Path | None, config: FisherConfig) -> Path:
    """``<fine-tuned models' folder>/fisher-<key of the Fisher recipe>/``."""
    if folder is None:
        raise ValueError("this workbench has no cache folder")
    return folder / f"fisher-{_hash(dataclasses.asdict(config))}"


class WorldEvaluator(Protocol):
    """What the study engine asks of an evaluator, whatever the modality (:class:`.Evaluator` for
    images, :class:`...modeling.text_evaluation.TextEvaluator` for text)."""

    def load(self, weights: Mapping[str, Tensor]) -> None: ...

    def correct(self, task: str) -> Tensor: ...

    def accuracy(self, task: str) -> float: ...

    def evaluate(self, weights: Mapping[str, Tensor] | None = None, tasks: list[str] | None = None) -> dict[str, float]: ...


class AnyWorkbench(Protocol):
    """What the study engine (sweeps, fidelity study, merging) reads of a world's workbench: the
    vision worlds' :class:`Workbench` and the text world's :class:`.text.workbench.TextWorkbench`.
    ``base`` and ``finetuned`` are the weights task vectors are taken over (the image encoder's; the
    whole T5's, each shared tensor once); ``splits`` maps task -> split -> that world's data."""

    preset: Preset
    size: str
    device: torch.device
    splits: dict[str, dict[str, Any]]
    base: StateDict
    finetuned: dict[str, StateDict]
    curves: dict[str, list[float]]
    seconds: dict[str, float]
    folder: Path | None
    seed: int
    fishers: dict[str, StateDict]
    fisher_seconds: dict[str, float]

    @property
    def tasks(self) -> list[str]: ...

    def num_classes(self, task: str) -> int: ...

    def evaluators(self, splits: Sequence[str]) -> dict[str, WorldEvaluator]: ...

    def finetune_task(self, task: str) -> tuple[StateDict, list[float]]: ...

    def fisher(self, task: str) -> StateDict: ...


@dataclass(frozen=True)
class WorldOptions:
    """What a world may take from the caller besides preset, size and seed: the ``paper``
    world's dataset folder, CLIP checkpoint files (size -> file), already fine-tuned models and
    whether it may download CLIP's weights. Generated worlds need none of them."""

    data_root: str | Path | None = None
    weights: dict[str, str | Path] = field(default_factory=dict)
    finetuned_dir: str | Path | None = None
    download: bool = False


def finetune_missing(bench: AnyWorkbench, recompute: bool) -> None:
    """Fine-tune (with the workbench's seed, and cache in its folder) every task that has no
    fine-tuned encoder yet."""
    folder = bench.folder
    if folder is None:
        raise ValueError("this workbench has no cache folder to fine-tune into")
    bench.curves.update({task: curve for task, curve in read_curves(folder).items() if task in bench.tasks})
    missing = []
    for task in bench.tasks:
        path = finetuned_path(folder, task)
        if task in bench.finetuned:
            continue
        if path.exists() and not recompute:
            bench.finetuned[task] = load_state_dict(path)
        else:
            missing.append(task)
    for task in tqdm(missing, desc="fine-tuned models", leave=False, disable=not missing):
        start = time.perf_counter()
        bench.finetuned[task], bench.curves[task] = bench.finetune_task(task)
        bench.seconds[f"fine-tuning {task}"] = time.perf_counter() - start
        save_state_dict(bench.finetuned[task], finetuned_path(folder, task),
                        metadata={"task": task, "base": bench.preset.model_name(bench.size)})
        write_curves(folder, {task: bench.curves[task]})
        for stale in folder.glob(f"fisher-*/{task}.safetensors"):  # the Fishers of the model replaced
            stale.unlink()
        bench.fishers.pop(task, None)
        bench.fisher_seconds.pop(task, None)


def finetuned_path(folder: Path, task: str) -> Path:
    """Where a world's cache folder keeps the fine-tuned model of ``task``."""
    return folder / f"{task}.safetensors"


def foundation_key(preset: Preset, model_name: str, seed: int) -> str:
    """A hash of what determines the foundation: model config, pretraining, seed and, for the
    generated worlds, the data version."""
    return _hash(_foundation_fields(preset, model_name, seed))


def finetuning_key(preset: Preset) -> str:
    """A hash of what determines the fine-tuned models on top of a foundation: the recipe and
    the split sizes (the training split's size among them)."""
    return _hash(_finetuning_fields(preset))


def artifact_key(preset: Preset, model_name: str, seed: int) -> str:
    """A hash of everything that determines the cached artifacts (foundation, fine-tuned models
    and their Fishers): what identifies a run's checkpoints in the results store."""
    return _hash({**_foundation_fields(preset, model_name, seed), **_finetuning_fields(preset),
                  "fisher": dataclasses.asdict(preset.fisher)})


def _finetuning_fields(preset: Preset) -> dict[str, object]:
    return {"finetune": _fields(preset.finetune), "splits": preset.split_sizes}


def _foundation_fields(preset: Preset, model_name: str, seed: int) -> dict[str, object]:
    config_file = MODEL_CONFIG_DIR / f"{model_name}.json"
    generated = preset.generated  # worlds whose data is generated here, versioned
    return {
        "model": json.loads(config_file.read_text()) if config_file.exists() else model_name,
        "pretraining": _pretraining_fields(preset.pretraining) if generated else None,
        "seed": seed,
        "data_version": preset.pretraining.data_version() if generated else None,
    }


def _pretraining_fields(pretraining: object) -> dict[str, object]:
    """The pretraining recipe as the foundation key reads it. With the glyph pool, the key holds
    the pool's characters too (the pool follows from the installed fonts, which another version of
    matplotlib may change); without it, the corpus is the one from before the pool existed, so its
    key leaves the pool's fields out and caches built then stay valid."""
    fields = _fields(pretraining)
    if fields.get("pool_classes"):
        fields["pool"] = "".join(glyph.char for glyph in pool_classes(fields["pool_classes"]))
    else:
        fields.pop("pool_classes", None)
        fields.pop("pool_per_class", None)
    return fields


def _text(config: object) -> dict[str, str]:
    return {name: str(value) for name, value in _fields(config).items()}


#: Settings added after caches were first keyed, with the value that means "off": a key leaves
#: them out while they are off, so the caches built before them keep their keys.
_ADDED_WHEN_OFF = {"grad_clip": None}


def _fields(config: object) -> dict[str, object]:
    """``dataclasses.asdict(config)``, nested configs included, without :data:`_ADDED_WHEN_OFF`
    settings that are off."""
    def without_off(items: list[tuple[str, object]]) -> dict[str, object]:
        return {k: v for k, v in items if not (k in _ADDED_WHEN_OFF and v == _ADDED_WHEN_OFF[k])}

    return dataclasses.asdict(config, dict_factory=without_off)


def _hash(fields: dict[str, object]) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]


def read_curves(folder: Path) -> dict[str, list[float]]:
    path = folder / "curves.json"
    return json.loads(path.read_text()) if path.exists() else {}


def write_curves(folder: Path, curves: dict[str, list[float]]) -> None:
    """Merge ``curves`` into ``folder/curves.json``, atomically."""
    merged = {**read_curves(folder), **curves}
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / ".curves.json.tmp"
    tmp.write_text(json.dumps(merged))
    tmp.replace(folder / "curves.json")
