"""Build the text world's workbench: a tokenizer and a tiny T5 pretrained here on Python's own
documentation (both cached), and the prompted splits of the four text tasks.

The foundation's folder (``<cache>/text/<size>/<foundation key>/``) holds ``tokenizer.json``,
``foundation.safetensors`` (the T5's weights, each shared tensor once) and the loss curves; the
fine-tuned T5s go in its ``finetuned-<key>/`` folder like every world's (:mod:`..workbench`).
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import torch

from ...core.state_dicts import load_state_dict, save_state_dict
from ...modeling.text_models import TextTokenizer, create_t5, load_t5_weights, save_tokenizer, t5_weights
from ...modeling.text_training import pretrain_t5
from ..presets import Preset, TextPretraining
from ..workbench import WorldOptions, read_curves, write_curves
from .corpus import reference_sentences
from .tasks import SPLITS, TEXT_TASKS, sentence_pools, text_examples
from .workbench import TextWorkbench


def build(preset: Preset, size: str, tasks: list[str], *, seed: int, device: torch.device, cache_dir: Path,
          folder: Path, recompute: bool, options: WorldOptions) -> tuple[TextWorkbench, Path]:
    """The workbench (without fine-tuned models) and the folder of its foundation, ``folder``.

    Every sentence is read from the standard library here, so the paper world's ``options`` do not apply."""
    recipe = preset.pretraining
    if not isinstance(recipe, TextPretraining):
        raise ValueError(f"preset {preset.name!r}: the text world needs a TextPretraining recipe, got {type(recipe).__name__}")
    unknown = [split for split in preset.split_sizes if split not in SPLITS]
    if unknown:
        raise ValueError(f"preset {preset.name!r}: unknown split(s) {unknown}; expected some of {SPLITS}")
    seconds: dict[str, float] = {}
    texts, questions = pretraining_corpus(recipe, seed)
    tokenizer = _tokenizer(folder, texts, recipe.vocab_size, recompute)
    model = _foundation(preset.model_name(size), tokenizer, texts, questions, recipe, seed, folder, recompute, device,
                        seconds)
    splits = {task: {split: text_examples(task, split, count, seed) for split, count in preset.split_sizes.items()}
              for task in tasks}
    base = {name: value.cpu() for name, value in t5_weights(model).items()}
    definitions = {task: TEXT_TASKS[task] for task in tasks}
    bench = TextWorkbench(preset, size, device, model, tokenizer, definitions, splits, base, {}, max_length=recipe.max_length,
                          curves=read_curves(folder), seconds=seconds, seed=seed)
    return bench, folder


def pretraining_corpus(recipe: TextPretraining, seed: int) -> tuple[list[str], list[tuple[str, str]]]:
    """``(texts, questions)`` of the foundation's corpus (see :class:`..presets.TextPretraining`).

    Texts: the language reference, every sentence of the ``train`` pool, and the captions not
    turned into questions; questions: ``(prompt, answer)`` pairs. Every task's captions are drawn
    from the ``train`` pool on their own stream, so no validation or test sentence is read."""
    texts = list(reference_sentences())
    pool = sentence_pools(seed)["train"]
    texts += [sentence for area in sorted(pool) for sentence in pool[area]]
    questions: list[tuple[str, str]] = []
    rng = random.Random(f"captions-{seed}")
    for name, task in TEXT_TASKS.items():
        examples = text_examples(name, "train", recipe.captions_per_class, seed, stream="pretraining")
        for text, label in zip(examples.texts, examples.labels):
            if rng.random() < recipe.answer_share:
                questions.append((task.render(text), task.labels[label]))
            else:
                texts.append(task.caption(text, label))
    return texts, questions


def _tokenizer(folder: Path, texts: list[str], vocab_size: int, recompute: bool) -> TextTokenizer:
    path = folder / "tokenizer.json"
    if path.exists() and not recompute:
        return TextTokenizer.from_json(path.read_text())
    tokenizer = TextTokenizer.train(texts, vocab_size)
    folder.mkdir(parents=True, exist_ok=True)
    save_tokenizer(tokenizer, path)
    return tokenizer


def _foundation(model_name: str, tokenizer: TextTokenizer, texts: list[str], questions: list[tuple[str, str]],
                recipe: TextPretraining, seed: int, folder: Path, recompute: bool, device: torch.device,
                seconds: dict[str, float]) -> torch.nn.Module:
    """The pretrained T5: loaded from ``folder`` or pretrained now (and saved, with its loss curve)."""
    model = create_t5(model_name, tokenizer.vocab_size, seed=seed).to(device)
    path = folder / "foundation.safetensors"
    if path.exists() and not recompute:
        load_t5_weights(model, load_state_dict(path))
        return model.eval()
    start = time.perf_counter()
    curve = pretrain_t5(model, tokenizer, texts, recipe.optim, seed=seed, questions=questions,
                        max_length=recipe.max_length)
    seconds["pretraining"] = time.perf_counter() - start
    save_state_dict(t5_weights(model), path, metadata={"model": model_name})
    write_curves(folder, {"pretraining": curve})
    return model.eval()
