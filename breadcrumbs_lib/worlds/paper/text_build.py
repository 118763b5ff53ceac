"""Build the ``paper-text`` world's workbench: a pretrained T5 (``t5-small`` or ``t5-base``) and its
tokenizer from a local folder, and the four language tasks of :mod:`.text_tasks`.

Nothing is downloaded. The model folder is ``weights[size]`` if given, else
``<data_root>/<model name>``, as ``save_pretrained`` writes it (``config.json``, the weights as
``model.safetensors`` or ``pytorch_model.bin``) with the fast tokenizer's ``tokenizer.json``.
:func:`check_text_assets` names everything missing before any work.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ...core.state_dicts import state_dict_digest
from ...modeling.text_models import TextTokenizer, t5_weights
from ..presets import Preset
from ..text.workbench import TextWorkbench
from ..workbench import WorldOptions
from .data import PaperAssetsMissing
from .text_tasks import PAPER_TEXT_TASKS, load_text_task, split_files

HOW_TO_PROVIDE_TEXT = (
    "The paper-text preset reads its inputs from disk and downloads nothing:\n"
    "  * T5: pass weights={size: '/path/to/t5-base'} (a folder written by save_pretrained, with tokenizer.json), "
    "or put it at <data_root>/t5-base;\n"
    "  * datasets: pass data_root=/path holding ag_news/{train,test}.jsonl, sst2/{train,validation}.jsonl, "
    "rte/{train,validation}.jsonl and mrpc/{train,validation}.jsonl (datasets' to_json writes them)."
)
MAX_LENGTH = 256  # tokens per prompt


def model_folder(model_name: str, data_root: str | Path | None, weights: str | Path | None) -> Path | None:
    """Where the T5 is read from: ``weights``, else ``<data_root>/<model_name>`` (None: neither given)."""
    if weights is not None:
        return Path(weights)
    return None if data_root is None else Path(data_root) / model_name


def check_text_assets(data_root: str | Path | None, tasks: list[str], model_name: str,
                      weights: str | Path | None = None) -> None:
    """Raise :class:`.PaperAssetsMissing` naming every missing input: the T5 folder's files and
    each task's two files."""
    missing = []
    folder = model_folder(model_name, data_root, weights)
    if folder is None:
        missing.append(f"T5 {model_name} (no weights folder and no data_root given)")
    else:
        wanted = [folder / "config.json", folder / "tokenizer.json"]
        missing += [f"T5 {model_name}: {path}" for path in wanted if not path.is_file()]
        if not any((folder / name).is_file() for name in ("model.safetensors", "pytorch_model.bin")):
            missing.append(f"T5 {model_name}: weights {folder / 'model.safetensors'}")
    if data_root is None:
        missing.append("data_root (no dataset folder given)")
    else:
        for task in tasks:
            missing += [f"dataset {PAPER_TEXT_TASKS[task].folder} ({path})"
                        for path in split_files(task, data_root).values() if not path.is_file()]
    if missing:
        raise PaperAssetsMissing("the paper-text preset is missing: " + "; ".join(missing) + ".\n" + HOW_TO_PROVIDE_TEXT)


def build(preset: Preset, size: str, tasks: list[str], *, seed: int, device: torch.device, cache_dir: Path,
          folder: Path, recompute: bool, options: WorldOptions) -> tuple[TextWorkbench, Path]:
    """The workbench and the folder its fine-tuned models go to: ``folder`` suffixed with the digest
    of the T5's weights, so models fine-tuned from other weights are never reused."""
    from transformers import T5ForConditionalGeneration

    model_name = preset.model_name(size)
    weights = options.weights.get(size)
    check_text_assets(options.data_root, tasks, model_name, weights)
    path = model_folder(model_name, options.data_root, weights)
    model = T5ForConditionalGeneration.from_pretrained(path, local_files_only=True).to(device).eval()
    tokenizer = TextTokenizer.from_json((path / "tokenizer.json").read_text())
    splits = {task: load_text_task(task, options.data_root, seed) for task in tasks}
    definitions = {task: PAPER_TEXT_TASKS[task].definition for task in tasks}
    base = {name: value.cpu() for name, value in t5_weights(model).items()}
    bench = TextWorkbench(preset, size, device, model, tokenizer, definitions, splits, base, {}, max_length=MAX_LENGTH,
                          seed=seed)
    return bench, folder.with_name(f"{folder.name}-{state_dict_digest(base)[:12]}")
