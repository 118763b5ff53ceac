"""Loading, checking and atomically saving state dicts (safetensors or torch files).

A *state dict* here is a mapping from parameter names to tensors. Checkpoints are read with
``safetensors`` (``.safetensors``) or ``torch.load(weights_only=True)`` (anything else), never by
unpickling arbitrary objects. Every check raises ``ValueError`` naming the file, key, shape,
dtype or value at fault.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Union

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor

StateDict = dict[str, Tensor]
StateDictSource = Union[Mapping[str, Tensor], str, os.PathLike]

_MAX_NAMES_SHOWN = 5


def load_state_dict(path: str | os.PathLike, *, check_finite: bool = True) -> StateDict:
    """Read a checkpoint file into a ``{name: tensor}`` dict on the CPU.

    ``.safetensors`` files are read with safetensors; other files with
    ``torch.load(..., weights_only=True)``. A torch file holding ``{"state_dict": {...}}`` is
    unwrapped. With ``check_finite`` (default), NaN or inf in any floating tensor is an error.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        state = load_file(str(path), device="cpu")
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # unpickling errors come in many types
            raise ValueError(f"{path}: not a weights-only torch checkpoint ({error})") from error
        if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
            state = state["state_dict"]
    if not isinstance(state, Mapping):
        raise ValueError(f"{path}: expected a mapping of names to tensors, got {type(state).__name__}")
    for key, value in state.items():
        if not isinstance(value, Tensor):
            raise ValueError(f"{path}: entry {key!r} is a {type(value).__name__}, not a tensor")
    state = dict(state)
    if check_finite:
        check_all_finite(state, source=str(path))
    return state


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The text metadata of a ``.safetensors`` file (empty if it has none), without its tensors."""
    path = Path(path)
    if path.suffix != ".safetensors" or not path.is_file():
        raise ValueError(f"{path}: not a .safetensors file")
    with safe_open(str(path), framework="pt") as handle:
        return dict(handle.metadata() or {})


def resolve_state_dict(source: StateDictSource, *, check_finite: bool = True) -> Mapping[str, Tensor]:
    """A state dict given either as a mapping (returned as is) or as a checkpoint path (loaded)."""
    if isinstance(source, Mapping):
        return source
    if isinstance(source, (str, os.PathLike)):
        return load_state_dict(source, check_finite=check_finite)
    raise ValueError(f"expected a state dict or a checkpoint path, got {type(source).__name__}")


#: The process's file-creation mask (read once: reading it means setting it).
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def save_state_dict(state: Mapping[str, Tensor], path: str | os.PathLike, metadata: dict[str, str] | None = None) -> Path:
    """Write ``state`` as safetensors, atomically: a crash never leaves a partial file at ``path``.

    The data goes to a temporary file in the same folder, is flushed to disk, then renamed over
    ``path`` (``os.replace`` is atomic on POSIX and Windows).
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"{path}: state dicts are saved as .safetensors")
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {key: value.detach().to("cpu").contiguous().clone() for key, value in state.items()}
    handle, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    os.chmod(tmp_name, 0o666 & ~_UMASK)  # mkstemp makes it private; the saved file gets the usual mode
    try:
        save_file(tensors, tmp_name, metadata=metadata)
        with open(tmp_name, "rb+") as file:
            os.fsync(file.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


def state_dict_digest(state: Mapping[str, Tensor]) -> str:
    """A SHA-256 hex digest of a state dict's content: every name, dtype, shape and byte, in
    sorted name order. Equal digests mean equal weights; results are keyed by it."""
    digest = hashlib.sha256()
    for key in sorted(state):
        update_digest(digest, key, state[key])
    return digest.hexdigest()


def update_digest(digest: "hashlib._Hash", key: str, tensor: Tensor) -> None:
    """Feed one named tensor to ``digest`` as :func:`state_dict_digest` does (name, dtype, shape,
    bytes): fed in name order, tensor by tensor, it gives the same digest."""
    tensor = tensor.detach().cpu().contiguous()
    digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
    if tensor.numel():
        digest.update(memoryview(tensor.reshape(-1).view(torch.uint8).numpy()))


def check_all_finite(state: Mapping[str, Tensor], source: str = "state dict") -> None:
    """Raise ``ValueError`` naming the first floating tensor that holds NaN or inf."""
    for key, value in state.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            bad = int((~torch.isfinite(value)).sum())
            raise ValueError(f"{source}: tensor {key!r} of shape {tuple(value.shape)} has {bad} non-finite values")


def check_same_layout(
    reference: Mapping[str, Tensor], other: Mapping[str, Tensor], other_name: str, reference_name: str = "the base"
) -> None:
    """Raise ``ValueError`` unless ``other`` has exactly ``reference``'s keys and shapes."""
    missing = [key for key in reference if key not in other]
    extra = [key for key in other if key not in reference]
    if missing or extra:
        raise ValueError(
            f"{other_name} has different keys from {reference_name}: "
            f"missing {_names(missing)}, unexpected {_names(extra)}"
        )
    for key, value in reference.items():
        if other[key].shape != value.shape:
            raise ValueError(
                f"{other_name}: shape mismatch for {key!r}: "
                f"{tuple(other[key].shape)} vs {reference_name} {tuple(value.shape)}"
            )


def select_keys(
    state: Mapping[str, Tensor],
    include: Iterable[str] | None = None,
    exclude: Iterable[str] | None = None,
) -> tuple[list[str], list[str]]:
    """Split the keys of ``state`` into ``(merged, carried)``.

    ``merged``: floating-point tensors whose name matches an ``include`` glob pattern (all, if
    ``include`` is None) and no ``exclude`` pattern. ``carried``: everything else, taken from the
    base unchanged. A non-float tensor matched by an explicit ``include`` is an error, since it
    cannot be merged; unmatched non-float tensors (integer buffers) are carried.
    """
    include = None if include is None else list(include)
    exclude = [] if exclude is None else list(exclude)
    merged, carried = [], []
    for key, value in state.items():
        wanted = (include is None or _matches(key, include)) and not _matches(key, exclude)
        if wanted and not value.is_floating_point():
            if include is not None:
                raise ValueError(f"tensor {key!r} has dtype {value.dtype}: only floating-point tensors can be merged")
            wanted = False
        (merged if wanted else carried).append(key)
    return merged, carried


def _matches(key: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(key, pattern) for pattern in patterns)


def _names(keys: list[str]) -> str:
    if not keys:
        return "none"
    shown = ", ".join(repr(key) for key in keys[:_MAX_NAMES_SHOWN])
    more = len(keys) - _MAX_NAMES_SHOWN
    return f"[{shown}{f', ... {more} more' if more > 0 else ''}]"
