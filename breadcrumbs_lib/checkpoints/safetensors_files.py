"""The safetensors format, read and written one tensor at a time.

A ``.safetensors`` file is an 8-byte little-endian header length ``N``, ``N`` bytes of JSON
(``{name: {"dtype": "BF16", "shape": [...], "data_offsets": [begin, end]}, "__metadata__":
{...}}``, offsets counted from the end of the header), then the tensors' bytes, little-endian and
contiguous. :class:`SafetensorsReader` reads the header once and each tensor with a positioned
read into a fresh buffer; :class:`SafetensorsWriter` writes a header planned from the tensors'
dtypes and shapes, then each tensor's bytes as it comes. Neither maps the file into memory:
mapped pages that have been read count as the process's resident memory until the file is
closed, which would make a streaming merge of several models as large as the models.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

#: safetensors' dtype names and torch's dtypes, both ways.
DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool, "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2,
}
DTYPE_NAMES: dict[torch.dtype, str] = {dtype: name for name, dtype in DTYPES.items()}

_LENGTH = struct.Struct("<Q")
_MAX_HEADER_BYTES = 100_000_000  # safetensors' own limit


@dataclass(frozen=True)
class TensorSpec:
    """A tensor's dtype and shape, without its values."""

    dtype: torch.dtype
    shape: tuple[int, ...]

    @property
    def numel(self) -> int:
        count = 1
        for size in self.shape:
            count *= size
        return count

    @property
    def nbytes(self) -> int:
        return self.numel * torch.empty((), dtype=self.dtype).element_size()

    def as_meta(self) -> Tensor:
        """A tensor on the ``meta`` device with this dtype and shape (no storage)."""
        return torch.empty(self.shape, dtype=self.dtype, device="meta")


@dataclass(frozen=True)
class _Entry:
    spec: TensorSpec
    offset: int  # absolute, in the file


class SafetensorsReader:
    """One ``.safetensors`` file, opened: its tensors' specs and metadata from the header, and
    each tensor read on demand (``read(name)``, a new CPU tensor each call)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._file = open(self.path, "rb")
        try:
            self._entries, self.metadata = _parse_header(self._file, self.path)
        except BaseException:
            self._file.close()
            raise

    @property
    def specs(self) -> dict[str, TensorSpec]:
        return {name: entry.spec for name, entry in self._entries.items()}

    def read(self, name: str) -> Tensor:
        entry = self._entries[name]
        buffer = torch.empty(entry.spec.nbytes, dtype=torch.uint8)
        if entry.spec.nbytes:
            view, done = memoryview(buffer.numpy()), 0
            while done < len(view):
                count = os.preadv(self._file.fileno(), [view[done:]], entry.offset + done)
                if count == 0:
                    raise ValueError(f"{self.path}: file ends inside tensor {name!r}")
                done += count
        return buffer.view(entry.spec.dtype).reshape(entry.spec.shape)

    def close(self) -> None:
        self._file.close()


def _parse_header(file, path: Path) -> tuple[dict[str, _Entry], dict[str, str]]:
    size = os.fstat(file.fileno()).st_size
    head = file.read(_LENGTH.size)
    if len(head) < _LENGTH.size:
        raise ValueError(f"{path}: not a safetensors file (shorter than its 8-byte header length)")
    (length,) = _LENGTH.unpack(head)
    if length > min(_MAX_HEADER_BYTES, size - _LENGTH.size):
        raise ValueError(f"{path}: not a safetensors file (header length {length:,} for a file of {size:,} bytes)")
    try:
        header = json.loads(file.read(length))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: the safetensors header is not valid JSON ({error})") from error
    if not isinstance(header, dict):
        raise ValueError(f"{path}: the safetensors header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    start, entries = _LENGTH.size + length, {}
    for name, info in header.items():
        try:
            kind, shape, (begin, end) = info["dtype"], tuple(int(n) for n in info["shape"]), info["data_offsets"]
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{path}: tensor {name!r} has a malformed header entry {info!r}") from error
        if kind not in DTYPES:
            raise ValueError(f"{path}: tensor {name!r} has dtype {kind}, which this reader does not support "
                             f"(it reads {', '.join(DTYPES)})")
        dtype = DTYPES[kind]
        spec = TensorSpec(dtype, shape)
        if end - begin != spec.nbytes or begin < 0 or start + end > size:
            raise ValueError(f"{path}: tensor {name!r} ({info['dtype']}, shape {list(shape)}) has data offsets "
                             f"[{begin}, {end}], which do not fit its size ({spec.nbytes} bytes) or the file ({size:,} bytes)")
        entries[name] = _Entry(spec, start + begin)
    return dict(sorted(entries.items(), key=lambda item: item[1].offset)), dict(metadata)


class SafetensorsWriter:
    """Write one ``.safetensors`` file whose tensors (names, dtypes, shapes, in order) are known
    before their values: the header goes first, then ``write(name, tensor)`` appends each tensor,
    in the planned order. ``close()`` checks that all were written and syncs the file to disk."""

    def __init__(self, path: str | os.PathLike, layout: Mapping[str, TensorSpec], metadata: Mapping[str, str] | None = None):
        self.path = Path(path)
        self._order = list(layout)
        self._layout = dict(layout)
        self._next = 0
        header: dict[str, object] = {"__metadata__": dict(metadata)} if metadata else {}
        offset = 0
        for name, spec in self._layout.items():
            header[name] = {"dtype": DTYPE_NAMES[spec.dtype], "shape": list(spec.shape),
                            "data_offsets": [offset, offset + spec.nbytes]}
            offset += spec.nbytes
        text = json.dumps(header, separators=(",", ":")).encode()
        text += b" " * (-len(text) % 8)  # the tensors start 8-byte aligned
        self._file = open(self.path, "xb")
        try:
            self._file.write(_LENGTH.pack(len(text)) + text)
        except BaseException:
            self._file.close()
            raise

    def write(self, name: str, tensor: Tensor) -> None:
        expected = self._order[self._next] if self._next < len(self._order) else None
        if name != expected:
            raise ValueError(f"{self.path}: expected tensor {expected!r} next, got {name!r}")
        spec = self._layout[name]
        if tensor.dtype != spec.dtype or tuple(tensor.shape) != spec.shape:
            raise ValueError(f"{self.path}: tensor {name!r} is {tensor.dtype} {tuple(tensor.shape)}, "
                             f"planned {spec.dtype} {spec.shape}")
        if tensor.numel():
            self._file.write(memoryview(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy()))
        self._next += 1

    def abandon(self) -> None:
        """Close the file unfinished (the caller removes it)."""
        self._file.close()

    def close(self) -> None:
        try:
            if self._next != len(self._order):
                raise ValueError(f"{self.path}: {len(self._order) - self._next} planned tensor(s) were not written")
            self._file.flush()
            os.fsync(self._file.fileno())
        finally:
            self._file.close()


def plan_shards(layout: Mapping[str, TensorSpec], max_shard_bytes: int) -> list[dict[str, TensorSpec]]:
    """Cut ``layout`` (in order) into shards of at most ``max_shard_bytes`` each (a tensor larger
    than that gets a shard of its own)."""
    shards: list[dict[str, TensorSpec]] = [{}]
    size = 0
    for name, spec in layout.items():
        if shards[-1] and size + spec.nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = spec
        size += spec.nbytes
    return shards


def shard_names(count: int, stem: str = "model") -> list[str]:
    """Hugging Face's file names: ``model.safetensors`` alone, else ``model-00001-of-00003.safetensors`` ..."""
    if count == 1:
        return [f"{stem}.safetensors"]
    return [f"{stem}-{index:05d}-of-{count:05d}.safetensors" for index in range(1, count + 1)]


def index_record(shards: Sequence[Mapping[str, TensorSpec]], names: Sequence[str]) -> dict:
    """The ``model.safetensors.index.json`` of a sharded model: total size and which file holds each tensor."""
    return {"metadata": {"total_size": sum(spec.nbytes for shard in shards for spec in shard.values())},
            "weight_map": {name: file for shard, file in zip(shards, names) for name in shard}}
