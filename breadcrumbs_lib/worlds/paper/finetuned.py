"""Already fine-tuned image encoders for the ``paper`` world, from the layouts people have.

``finetuned_dir/<size>/`` holds one entry per task, named after the task in any case and with
or without separators (``SUN397``, ``sun397``, ``stanford-cars`` for Cars, ``resisc45``):

* a file (``.safetensors``, ``.pt``, ``.pth``, ``.bin``) or a Hugging Face folder, read by
  :func:`breadcrumbs_lib.checkpoints.open_checkpoint` (pickled whole models, such as the
  task_vectors release's ``finetuned.pt``, are refused with the command that converts them);
* holding open_clip's image-tower names (with or without ``visual.``, or a whole CLIP model whose
  ``visual.`` part is taken), or Hugging Face's CLIP vision names (FusionBench's fine-tunes),
  converted by :mod:`breadcrumbs_lib.checkpoints.clip_names`. A bare ``CLIPVisionModel`` has no
  projection: it takes the base's, which those fine-tunes leave frozen.

An entry that names no task of the paper, or that cannot be read, is an error naming it: a model
the user put there is never skipped in silence. Entries of paper tasks outside the run, and hidden
entries (``.DS_Store``), are left.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from torch import Tensor

from ...checkpoints.sources import read_checkpoint
from ...checkpoints.clip_names import HF_TOWER, hf_clip_vision_to_open_clip
from ...core.state_dicts import StateDict, check_same_layout
from .tasks import PAPER_TASKS

#: Other names of a task, as published fine-tunes call them (normalised: lower case, letters and digits).
ALIASES = {"stanfordcars": "Cars"}
SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")
_OPEN_CLIP_TOWER = "visual."


def read_finetuned_dir(folder: str | Path, size: str, tasks: Sequence[str], base: Mapping[str, Tensor]) -> dict[str, StateDict]:
    """The fine-tuned image encoders of ``tasks`` found in ``folder/size`` (see the module), each
    checked against ``base`` (the foundation's image encoder, open_clip's names without ``visual.``)."""
    where = Path(folder) / size
    if not where.is_dir():
        raise FileNotFoundError(f"finetuned_dir {folder} has no folder {size}/ for the models of size {size}")
    found: dict[str, StateDict] = {}
    for entry in sorted(where.iterdir()):
        if entry.name.startswith("."):
            continue
        task = task_of(entry, tasks)
        if task not in tasks:
            continue
        if task in found:
            raise ValueError(f"{where}: more than one model for {task} (one of them {entry.name})")
        state = to_open_clip_encoder(read_checkpoint(entry), base, str(entry))
        check_same_layout(base, state, str(entry))
        found[task] = state
    return found


def task_of(entry: Path, tasks: Sequence[str] = ()) -> str:
    """The task an entry of a ``finetuned_dir`` folder is named after: one of the paper's eight or
    of ``tasks`` (the run's: the many-task sequence's ImageNet tasks); ``ValueError`` if none."""
    stem = entry.name if entry.is_dir() else entry.name.removesuffix(entry.suffix)
    if entry.is_file() and entry.suffix not in SUFFIXES:
        raise ValueError(f"{entry}: not a model file (expected {', '.join(SUFFIXES)} or a Hugging Face folder)")
    key = re.sub(r"[^a-z0-9]", "", stem.lower())
    names = {re.sub(r"[^a-z0-9]", "", name.lower()): name for name in (*PAPER_TASKS, *tasks)} | ALIASES
    if key not in names:
        raise ValueError(f"{entry}: its name is none of the paper's tasks ({', '.join(PAPER_TASKS)}) nor of this "
                         f"run's; name each model after its task")
    return names[key]


def to_open_clip_encoder(state: Mapping[str, Tensor], base: Mapping[str, Tensor], source: str) -> StateDict:
    """``state`` under the names of ``base``: open_clip's image tower without ``visual.``."""
    if any(key.startswith((HF_TOWER, "embeddings.")) for key in state):
        projection = None if "visual_projection.weight" in state else base.get("proj")
        state = hf_clip_vision_to_open_clip(state, projection=None if projection is None else projection.t())
    if any(key.startswith(_OPEN_CLIP_TOWER) for key in state):
        state = {key[len(_OPEN_CLIP_TOWER):]: value for key, value in state.items() if key.startswith(_OPEN_CLIP_TOWER)}
    return dict(state)

