"""Model files as they are published, opened to be read one tensor at a time.

:func:`open_checkpoint` takes a path and recognises

* a ``.safetensors`` file;
* a Hugging Face folder: ``*.safetensors.index.json`` (sharded safetensors), ``model.safetensors``,
  ``pytorch_model.bin.index.json`` (sharded torch files) or ``pytorch_model.bin``, and open_clip's
  files on the hub (``open_clip_model.safetensors``, ``open_clip_pytorch_model.bin``);
* a torch file (``.pt``, ``.pth``, ``.bin``, ``.ckpt``, ...) holding a state dict, or a checkpoint
  that wraps one under ``"state_dict"`` (open_clip's training checkpoints), loaded with
  ``weights_only=True`` and memory-mapped. A pickled whole model (the task_vectors release) is
  refused: unpickling it would run code from the file; ``breadcrumbs-convert --trust-pickle``
  turns one the user trusts into a state dict.

:func:`align_keys` matches a model's names to the base's across the prefixes that wrap the same
weights (``module.``, ``model.``, ``visual.``).
"""

from __future__ import annotations

import json
import os
import pickle
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from .safetensors_files import SafetensorsReader, TensorSpec

#: Folder layouts tried in order: (file name, format).
FOLDER_FILES = (
    ("model.safetensors", "safetensors"),
    ("open_clip_model.safetensors", "safetensors"),
    ("pytorch_model.bin.index.json", "torch-index"),
    ("pytorch_model.bin", "torch"),
    ("open_clip_pytorch_model.bin", "torch"),
)
#: Prefixes that wrap a whole model's names: DataParallel's ``module.``, wrappers' ``model.``.
WRAPPERS = ("module.", "model.")
#: How torch's ``weights_only`` loader words its refusal of a pickled object (and names it).
WEIGHTS_ONLY_REFUSAL = re.compile(r"Unsupported global: GLOBAL (\S+)")
#: The image tower of a CLIP model: its names with or without this prefix are the same weights.
TOWER = "visual."


class Checkpoint:
    """An opened model on disk: ``specs`` (name -> dtype and shape) and ``read(name)``."""

    path: Path
    format: str
    specs: dict[str, TensorSpec]

    def read(self, name: str) -> Tensor:
        raise NotImplementedError

    def close(self) -> None:
        pass

    @property
    def nbytes(self) -> int:
        return sum(spec.nbytes for spec in self.specs.values())


class SafetensorsCheckpoint(Checkpoint):
    """One or more ``.safetensors`` files, each tensor in one of them."""

    def __init__(self, path: Path, files: list[Path], index: Mapping[str, str] | None = None):
        self.path = path
        self.format = "safetensors" if index is None else f"safetensors, {len(files)} shards"
        self._readers: dict[str, SafetensorsReader] = {}
        try:
            for file in files:
                self._readers[file.name] = SafetensorsReader(file)
            self._index_tensors(index)
        except BaseException:
            self.close()
            raise

    def _index_tensors(self, index: Mapping[str, str] | None) -> None:
        """Which reader holds each tensor, checked against the Hugging Face index if there is one."""
        path = self.path
        self._where: dict[str, SafetensorsReader] = {}
        for reader in self._readers.values():
            for name in reader.specs:
                if name in self._where:
                    raise ValueError(f"{path}: tensor {name!r} is in both {self._where[name].path.name} and {reader.path.name}")
                self._where[name] = reader
        if index is not None:
            listed, found = set(index), set(self._where)
            if listed != found:
                raise ValueError(f"{path}: the index and the shards disagree: "
                                 f"listed but absent {sorted(listed - found)[:5]}, present but unlisted {sorted(found - listed)[:5]}")
            for name, file in index.items():
                if self._where[name].path.name != file:
                    raise ValueError(f"{path}: the index puts {name!r} in {file}, but it is in {self._where[name].path.name}")
        self.specs = {name: reader.specs[name] for name, reader in self._where.items()}

    def read(self, name: str) -> Tensor:
        return self._where[name].read(name)

    def close(self) -> None:
        for reader in self._readers.values():
            reader.close()


class TorchCheckpoint(Checkpoint):
    """A state dict in one or more torch files, memory-mapped (read on first touch).

    The pages of a mapped file that have been read count as resident memory until the
    checkpoint is closed (the kernel can still drop them: they are clean copies of the file), so
    a merge of torch files shows a resident size that grows with the models read; converted to
    safetensors (``breadcrumbs-convert``), the same merge stays at a few tensors."""

    def __init__(self, path: Path, files: list[Path]):
        self.path = path
        self.format = "torch" if len(files) == 1 else f"torch, {len(files)} shards"
        self._tensors: dict[str, Tensor] = {}
        for file in files:
            for name, tensor in _load_torch_state_dict(file).items():
                if name in self._tensors:
                    raise ValueError(f"{path}: tensor {name!r} appears in two shards")
                self._tensors[name] = tensor
        self.specs = {name: TensorSpec(t.dtype, tuple(t.shape)) for name, t in self._tensors.items()}

    def read(self, name: str) -> Tensor:
        return self._tensors[name]

    def close(self) -> None:
        self._tensors.clear()  # the last references to the mapped storages


def open_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Open the model at ``path`` (a file or a Hugging Face / open_clip folder; see the module)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model not found: {path}")
    if path.is_dir():
        return _open_folder(path)
    if path.name.endswith(".safetensors.index.json"):
        return _open_safetensors_index(path)
    if path.name.endswith(".bin.index.json"):
        return _open_torch_index(path)
    if path.suffix == ".safetensors":
        return SafetensorsCheckpoint(path, [path])
    return TorchCheckpoint(path, [path])


def _open_folder(folder: Path) -> Checkpoint:
    indexes = sorted(folder.glob("*.safetensors.index.json"))
    if len(indexes) > 1:
        raise ValueError(f"{folder}: more than one safetensors index ({', '.join(p.name for p in indexes)}): name the one to read")
    if indexes:
        return _open_safetensors_index(indexes[0])
    for name, kind in FOLDER_FILES:
        if (folder / name).is_file():
            file = folder / name
            if kind == "safetensors":
                return SafetensorsCheckpoint(folder, [file])
            return _open_torch_index(file) if kind == "torch-index" else TorchCheckpoint(folder, [file])
    singles = sorted(folder.glob("*.safetensors"))
    if len(singles) == 1:
        return SafetensorsCheckpoint(folder, singles)
    looked_for = ", ".join(["*.safetensors.index.json", *(name for name, _ in FOLDER_FILES), "one *.safetensors file"])
    raise FileNotFoundError(f"{folder}: no model files found (looked for {looked_for})")


def _read_index(path: Path) -> dict[str, str]:
    try:
        weight_map = json.loads(path.read_text())["weight_map"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise ValueError(f"{path}: not a Hugging Face index (a JSON object with a 'weight_map')") from error
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise ValueError(f"{path}: 'weight_map' must map tensor names to file names")
    missing = sorted({file for file in weight_map.values() if not (path.parent / file).is_file()})
    if missing:
        raise FileNotFoundError(f"{path}: shard(s) listed in the index are missing: {', '.join(missing)}")
    return weight_map


def _open_safetensors_index(path: Path) -> Checkpoint:
    weight_map = _read_index(path)
    files = [path.parent / file for file in sorted(set(weight_map.values()))]
    return SafetensorsCheckpoint(path.parent, files, weight_map)


def _open_torch_index(path: Path) -> Checkpoint:
    weight_map = _read_index(path)
    return TorchCheckpoint(path.parent, [path.parent / file for file in sorted(set(weight_map.values()))])


def _load_torch_state_dict(file: Path) -> dict[str, Tensor]:
    try:
        state = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:  # an old (non-zip) torch file cannot be memory-mapped
        state = _load_weights_only(file, mmap=False)
    except Exception as error:
        raise _load_error(file, error) from error
    return state_dict_in(state, file)


def state_dict_in(loaded: object, file: Path) -> dict[str, Tensor]:
    """The state dict a loaded torch file holds: the object itself, or the one it wraps under
    ``"state_dict"`` (open_clip's and Lightning's training checkpoints); ``ValueError`` naming
    ``file`` if it is not a mapping of names to tensors."""
    if isinstance(loaded, Mapping) and isinstance(loaded.get("state_dict"), Mapping):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, Mapping):
        raise ValueError(f"{file}: holds a {type(loaded).__name__}, not a state dict (a mapping of names to tensors)")
    for name, value in loaded.items():
        if not isinstance(value, Tensor):
            raise ValueError(f"{file}: entry {name!r} is a {type(value).__name__}, not a tensor")
    return dict(loaded)


def read_checkpoint(path: str | os.PathLike) -> dict[str, Tensor]:
    """Every tensor of the model at ``path`` (see :func:`open_checkpoint`), in memory."""
    checkpoint = open_checkpoint(path)
    try:
        return {name: checkpoint.read(name) for name in checkpoint.specs}
    finally:
        checkpoint.close()


def _load_weights_only(file: Path, mmap: bool) -> object:
    try:
        return torch.load(file, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as error:
        raise _load_error(file, error) from error


def _load_error(file: Path, error: Exception) -> ValueError:
    """Why ``file`` did not load: pickled objects that ``weights_only`` refused, or not a torch file."""
    refused = WEIGHTS_ONLY_REFUSAL.search(str(error)) if isinstance(error, pickle.UnpicklingError) else None
    if refused:
        return _pickle_error(file, refused.group(1))
    return ValueError(f"{file}: not a readable torch file, nor safetensors by its name ({type(error).__name__} "
                      f"from torch.load)")


def _pickle_error(file: Path, named: str) -> ValueError:
    return ValueError(
        f"{file}: not a weights-only torch file. It holds pickled Python objects (it names {named}; a whole "
        f"model, as the task_vectors release publishes, is one), and unpickling would run code from the file, "
        f"so it is refused. If you trust its source, convert it to a state dict first: "
        f"`breadcrumbs-convert --trust-pickle {file} {file.with_suffix('.safetensors')}`.")


@dataclass(frozen=True)
class KeyMap:
    """How a model's names read as the base's: ``model_name(base_name)``; ``note`` says what was
    recognised (``""``: the same names)."""

    base_prefix: str
    model_prefix: str
    note: str

    def model_name(self, base_name: str) -> str:
        return self.model_prefix + base_name[len(self.base_prefix):]


def align_keys(base: Mapping[str, TensorSpec], model: Mapping[str, TensorSpec], model_name: str,
               *, allow_extra: bool = False) -> KeyMap:
    """Match ``model``'s tensor names to ``base``'s and check their shapes.

    Names may differ by a prefix that wraps a whole model (``module.``, ``model.``, repeated) and
    by the image tower's ``visual.``; anything else is a mismatch (``allow_extra``: ``model`` may
    hold more tensors than ``base``, as a Fisher of every weight does for a merge of some).
    Raises ``ValueError`` naming the first names that differ (missing, unexpected) or the first
    tensor whose shape or kind (floating point or not) differs.
    """
    base_wrap, model_wrap = _wrapper(base), _wrapper(model)
    candidates = [(base_wrap, model_wrap), (base_wrap + TOWER, model_wrap), (base_wrap, model_wrap + TOWER)]
    for base_prefix, model_prefix in candidates:
        if _names_match(base, model, base_prefix, model_prefix, allow_extra):
            keymap = KeyMap(base_prefix, model_prefix, _note(base_prefix, model_prefix))
            _check_shapes(base, model, keymap, model_name)
            return keymap
    missing = sorted(set(_strip(base, base_wrap)) - set(_strip(model, model_wrap)))
    unexpected = [] if allow_extra else sorted(set(_strip(model, model_wrap)) - set(_strip(base, base_wrap)))
    raise ValueError(f"{model_name} has different tensors from the base: {len(missing)} missing (first "
                     f"{[base_wrap + n for n in missing[:3]]}), {len(unexpected)} unexpected (first "
                     f"{[model_wrap + n for n in unexpected[:3]]})")


def _wrapper(names: Mapping[str, object]) -> str:
    prefix = ""
    while names:
        wrapper = next((w for w in WRAPPERS if all(n.startswith(prefix + w) for n in names)), None)
        if wrapper is None:
            return prefix
        prefix += wrapper
    return prefix


def _strip(names: Mapping[str, object], prefix: str) -> list[str]:
    return [name[len(prefix):] for name in names if name.startswith(prefix)]


def _names_match(base: Mapping[str, object], model: Mapping[str, object], base_prefix: str, model_prefix: str,
                 allow_extra: bool) -> bool:
    if not all(n.startswith(base_prefix) for n in base):
        return False
    if allow_extra:
        return set(_strip(base, base_prefix)) <= set(_strip(model, model_prefix))
    if not all(n.startswith(model_prefix) for n in model):
        return False
    return set(_strip(base, base_prefix)) == set(_strip(model, model_prefix))


def _note(base_prefix: str, model_prefix: str) -> str:
    if base_prefix == model_prefix:
        return "" if not base_prefix else f"names under {base_prefix!r}, as the base's"
    return f"names read as {model_prefix!r} + name, the base's as {base_prefix!r} + name"


def _check_shapes(base: Mapping[str, TensorSpec], model: Mapping[str, TensorSpec], keymap: KeyMap, model_name: str) -> None:
    for name, spec in base.items():
        other = model[keymap.model_name(name)]
        if other.shape != spec.shape:
            raise ValueError(f"{model_name}: tensor {keymap.model_name(name)!r} has shape {list(other.shape)}, "
                             f"the base's {name!r} has {list(spec.shape)}")
        if other.dtype.is_floating_point != spec.dtype.is_floating_point:
            raise ValueError(f"{model_name}: tensor {keymap.model_name(name)!r} is {other.dtype}, the base's is {spec.dtype}")
