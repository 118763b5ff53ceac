"""``breadcrumbs-convert IN OUT.safetensors``: a checkpoint to a safetensors state dict.

A weights-only torch file (a state dict) converts as is. A pickled whole model, as the
task_vectors release publishes (``<Dataset>/finetuned.pt``, ``zeroshot.pt``), is unpickled only
with ``--trust-pickle``, because unpickling runs code named by the file: its module's
``state_dict()`` is what is written. Such a pickle names its classes by module path (the
task_vectors release: ``src.modeling``), so that code must be importable, e.g. with
``PYTHONPATH=path/to/task_vectors``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor

from ..checkpoints.sources import TorchCheckpoint
from ..core.state_dicts import save_state_dict


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="breadcrumbs-convert", description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="a torch checkpoint: a state dict, or a pickled model with --trust-pickle")
    parser.add_argument("out", type=Path, help="the .safetensors file to write")
    parser.add_argument("--trust-pickle", action="store_true",
                        help="unpickle SOURCE even if it holds Python objects (runs code the file names: only for files you trust)")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    args = parser.parse_args(argv)
    try:
        state = convert(args.source, args.out, trust_pickle=args.trust_pickle, overwrite=args.overwrite)
    except (OSError, ValueError) as error:
        print(f"breadcrumbs-convert: error: {error}", file=sys.stderr)
        return 1
    print(f"wrote {args.out} ({len(state)} tensors)")
    return 0


def convert(source: Path, out: Path, *, trust_pickle: bool = False, overwrite: bool = False) -> dict[str, Tensor]:
    """Read ``source`` (see the module) and write its state dict to ``out``; returns the state dict."""
    if out.suffix != ".safetensors":
        raise ValueError(f"{out}: the output must be a .safetensors file")
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists: pass --overwrite to replace it")
    if not source.is_file():
        raise FileNotFoundError(f"checkpoint not found: {source}")
    state = _trusted_state_dict(source) if trust_pickle else _weights_only_state_dict(source)
    save_state_dict(state, out, metadata={"format": "pt", "converted_from": source.name})
    return state


def _weights_only_state_dict(source: Path) -> dict[str, Tensor]:
    checkpoint = TorchCheckpoint(source, [source])  # refuses pickled objects, naming --trust-pickle
    return {name: checkpoint.read(name) for name in checkpoint.specs}


def _trusted_state_dict(source: Path) -> dict[str, Tensor]:
    try:
        loaded = torch.load(source, map_location="cpu", weights_only=False)
    except ModuleNotFoundError as error:
        raise ValueError(f"{source}: the pickle names Python module {error.name!r}, which is not importable here. "
                         f"Put the code that defined the model on PYTHONPATH (for the task_vectors release: "
                         f"PYTHONPATH=path/to/task_vectors) and run again") from error
    if isinstance(loaded, torch.nn.Module):
        loaded = loaded.state_dict()
    elif isinstance(loaded, Mapping) and isinstance(loaded.get("state_dict"), Mapping):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, Mapping):
        raise ValueError(f"{source}: holds a {type(loaded).__name__}, neither a model nor a state dict")
    state = {}
    for name, value in loaded.items():
        if not isinstance(value, Tensor):
            raise ValueError(f"{source}: entry {name!r} is a {type(value).__name__}, not a tensor")
        state[name] = value
    return state


if __name__ == "__main__":
    sys.exit(main())
