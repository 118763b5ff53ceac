"""``breadcrumbs-convert IN OUT.safetensors``: a checkpoint to a safetensors state dict.

``IN`` is whatever :func:`breadcrumbs_lib.checkpoints.open_checkpoint` reads: a ``.safetensors``
file, a Hugging Face folder (sharded or not) or a torch file; every tensor is read. A weights-only
torch file (a state dict) converts as is. A pickled whole model, as the task_vectors release
publishes (``<Dataset>/finetuned.pt``, ``zeroshot.pt``), is unpickled only with
``--trust-pickle``, because unpickling runs code named by the file: its module's ``state_dict()``
is what is written. Such a pickle names its classes by module path (the
task_vectors release: ``src.modeling``), so that code must be importable, e.g. with
``PYTHONPATH=path/to/task_vectors``.

``--names`` renames a CLIP image tower after reading (see
:mod:`breadcrumbs_lib.checkpoints.clip_names`): ``open_clip`` turns a Hugging Face
``CLIPVisionModel`` / ``CLIPVisionModelWithProjection`` / ``CLIPModel`` (FusionBench's fine-tunes,
``tanganke/clip-vit-base-patch32_<dataset>``) into open_clip's ``visual.`` names, the ``paper``
preset's; ``hf-clip`` does the inverse. A bare ``CLIPVisionModel`` has no projection: ``--projection
FILE`` takes ``visual_projection.weight`` from FILE (the base Hugging Face CLIP model, e.g.
``openai/clip-vit-base-patch32``'s ``model.safetensors``), else the output has no ``visual.proj``.
Without ``--names`` the names stay as they are.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from ..checkpoints.clip_names import HF_PROJECTION, hf_clip_vision_to_open_clip, open_clip_to_hf_clip_vision
from ..checkpoints.sources import open_checkpoint, read_checkpoint, state_dict_in
from ..core.state_dicts import save_state_dict

#: ``--names``: the naming to convert to.
NAMINGS = ("open_clip", "hf-clip")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="breadcrumbs-convert", description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="a .safetensors file, a Hugging Face folder, or a torch checkpoint: "
                                                  "a state dict, or a pickled model with --trust-pickle")
    parser.add_argument("out", type=Path, help="the .safetensors file to write")
    parser.add_argument("--trust-pickle", action="store_true",
                        help="unpickle SOURCE even if it holds Python objects (runs code the file names: only for files you trust)")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    parser.add_argument("--names", choices=NAMINGS, default=None,
                        help="rename a CLIP image tower: to open_clip's names (from Hugging Face's) or to Hugging Face's "
                             "(hf-clip, from open_clip's); default: keep the names")
    parser.add_argument("--projection", type=Path, default=None, metavar="FILE",
                        help="with --names open_clip, for a bare CLIPVisionModel: the base Hugging Face CLIP model "
                             f"(safetensors, torch file or folder) whose {HF_PROJECTION} becomes visual.proj")
    args = parser.parse_args(argv)
    try:
        state = convert(args.source, args.out, trust_pickle=args.trust_pickle, overwrite=args.overwrite,
                        names=args.names, projection=args.projection)
    except (OSError, ValueError) as error:
        print(f"breadcrumbs-convert: error: {error}", file=sys.stderr)
        return 1
    print(f"wrote {args.out} ({len(state)} tensors)")
    return 0


def convert(source: Path, out: Path, *, trust_pickle: bool = False, overwrite: bool = False,
            names: str | None = None, projection: Path | None = None) -> dict[str, Tensor]:
    """Read ``source`` (see the module), rename it to ``names`` (one of :data:`NAMINGS`, or None:
    as they are) and write the state dict to ``out``; returns the state dict written."""
    if out.suffix != ".safetensors":
        raise ValueError(f"{out}: the output must be a .safetensors file")
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists: pass --overwrite to replace it")
    if not source.exists():
        raise FileNotFoundError(f"checkpoint not found: {source}")
    if projection is not None and names != "open_clip":
        raise ValueError("--projection supplies a Hugging Face projection: it needs --names open_clip")
    if names not in (None, *NAMINGS):
        raise ValueError(f"unknown naming {names!r}: expected one of {', '.join(NAMINGS)}")
    # without trust, open_checkpoint refuses pickled objects, naming --trust-pickle
    state = _trusted_state_dict(source) if trust_pickle else read_checkpoint(source)
    if names is not None:
        state = _rename(state, names, None if projection is None else _read_projection(projection), source)
    save_state_dict(state, out, metadata={"format": "pt", "converted_from": source.name})
    return state


def _rename(state: dict[str, Tensor], names: str, projection: Tensor | None, source: Path) -> dict[str, Tensor]:
    try:
        if names == "open_clip":
            return hf_clip_vision_to_open_clip(state, projection=projection)
        return open_clip_to_hf_clip_vision(state)
    except ValueError as error:
        raise ValueError(f"{source}: {error}") from error


def _read_projection(file: Path) -> Tensor:
    checkpoint = open_checkpoint(file)
    try:
        if HF_PROJECTION not in checkpoint.specs:
            raise ValueError(f"{file}: no {HF_PROJECTION!r}; --projection takes a Hugging Face CLIPModel "
                             f"or CLIPVisionModelWithProjection")
        return checkpoint.read(HF_PROJECTION)
    finally:
        checkpoint.close()


def _trusted_state_dict(source: Path) -> dict[str, Tensor]:
    if not source.is_file():
        raise ValueError(f"{source}: --trust-pickle reads one torch file, not a folder")
    try:
        loaded = torch.load(source, map_location="cpu", weights_only=False)
    except ModuleNotFoundError as error:
        raise ValueError(f"{source}: the pickle names Python module {error.name!r}, which is not importable here. "
                         f"Put the code that defined the model on PYTHONPATH (for the task_vectors release: "
                         f"PYTHONPATH=path/to/task_vectors) and run again") from error
    return state_dict_in(loaded.state_dict() if isinstance(loaded, torch.nn.Module) else loaded, source)


if __name__ == "__main__":
    sys.exit(main())
