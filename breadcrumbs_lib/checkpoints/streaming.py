"""The streaming merge: models on disk in, a merged model on disk out, one tensor at a time.

:func:`plan_merge` opens every model (headers only), matches their names to the base's
(:func:`.sources.align_keys`), checks the method and its settings (and rehearses the merge on
one-entry tensors, for the checks that depend on the models' count) and lays out the output:
everything that can be known from the files' headers is checked before a byte is written; the
values themselves (NaN or inf) are checked as each tensor is merged. :func:`run_merge` then visits the
base's tensors in name order; for each it reads that tensor from every model and merges it with
the library's own :func:`breadcrumbs_lib.merge`, called on one-tensor state dicts, so the output
is the in-memory merge of the same inputs, bit for bit. Peak memory is a few tensors, whatever
the models' size.

Masks ordered over a whole task vector (``granularity: global``: TIES' default, and an option
of Breadcrumbs and Breadcrumbs + TIES) need every tensor of a model before the first can be
masked: such a merge reads its inputs twice more first, to locate each model's band
(:mod:`breadcrumbs_lib.core.global_masks`), and then masks each tensor as it comes. The global
order is the base's tensor names in name order, as in memory for state dicts in that order.

A model's ``weight`` ``w`` scales its task vector before the method sees it: the method merges
``theta + w * (theta'_t - theta)`` (float32) in place of ``theta'_t``. The output's floating-point
tensors take ``dtype`` (by default the base's); the math runs in float32, as in memory.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import resource
import shutil
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..core.global_masks import BandLocator, GlobalMasker
from ..core.merging import merge, method_spec
from ..core.methods.spec import MaskedForm, MergeMethod
from ..core.state_dicts import select_keys, update_digest
from ..core.task_vectors import TaskVector
from .safetensors_files import DTYPE_NAMES, SafetensorsWriter, TensorSpec, index_record, plan_shards, shard_names
from .sources import Checkpoint, KeyMap, align_keys, open_checkpoint

#: The record of a merge, written beside the weights.
RECORD = "merge.json"
#: Output shards are at most this large by default (Hugging Face's usual "5GB").
DEFAULT_SHARD_BYTES = 5 * 1000**3
#: Beyond the tensors: the allocator's slack and the mask kernels compiled on first use
#: (docs/performance.md gives the measured peaks this bound covers).
SLACK_BYTES = 256 * 1024**2


@dataclass
class ModelInput:
    """One fine-tuned model of a merge: its ``path``, ``weight`` (scales its task vector) and the
    method's per-model inputs (``{"fishers": path}`` for Fisher merging)."""

    path: Path
    weight: float = 1.0
    inputs: dict[str, Path] = field(default_factory=dict)


@dataclass
class _Opened:
    """A checkpoint with the names that read it as the base's."""

    checkpoint: Checkpoint
    keymap: KeyMap

    def read(self, base_name: str) -> Tensor:
        return self.checkpoint.read(self.keymap.model_name(base_name))


@dataclass
class MergePlan:
    """A checked merge, ready to run: the opened inputs and the output's layout."""

    method: str
    settings: dict[str, Any]
    base: Checkpoint
    models: list[_Opened]
    weights: list[float]
    inputs: dict[str, list[_Opened]]
    merged: list[str]
    carried: list[str]
    layout: dict[str, TensorSpec]
    shards: list[dict[str, TensorSpec]]

    @property
    def files(self) -> list[str]:
        return shard_names(len(self.shards))

    @property
    def method_settings(self) -> dict[str, Any]:
        return _per_tensor(self.settings)

    @cached_property
    def global_form(self) -> MaskedForm | None:
        """The method's :class:`.MaskedForm` when its masks order a whole task vector at once
        (``granularity="global"``), else ``None``."""
        spec = method_spec(self.method)
        form = spec.masked(self.settings) if spec.masked is not None else None
        return form if form is not None and form.granularity == "global" else None

    @property
    def ordered(self) -> list[str]:
        """The tensors a global mask orders, in order: the merged ones that are not 0-d."""
        return [name for name in self.merged if len(self.layout[name].shape) > 0]

    @property
    def dtypes(self) -> list[str]:
        """The output's dtypes, by name."""
        return sorted({str(spec.dtype).removeprefix("torch.") for spec in self.layout.values()})

    def checkpoints(self) -> list[Checkpoint]:
        """Every opened input: the base, the models and the method's inputs."""
        return [self.base, *(m.checkpoint for m in self.models),
                *(i.checkpoint for items in self.inputs.values() for i in items)]

    def bytes_read_for(self, name: str) -> int:
        """What merging (or carrying) tensor ``name`` reads: its copy in the base and in every
        model, and in each method input if it is merged."""
        opened = list(self.models)
        if name in self._merged:
            opened += [item for items in self.inputs.values() for item in items]
        return self.base.specs[name].nbytes + sum(item.checkpoint.specs[item.keymap.model_name(name)].nbytes
                                                  for item in opened)

    @property
    def bytes_read(self) -> int:
        return sum(self.bytes_read_for(name) for name in self.layout)

    @property
    def bytes_ordering(self) -> int:
        """What locating the global bands reads (two passes over the ordered tensors; 0 if none)."""
        if self.global_form is None:
            return 0
        return 2 * sum(self.base.specs[name].nbytes + sum(item.checkpoint.specs[item.keymap.model_name(name)].nbytes
                                                            for item in self.models) for name in self.ordered)

    @property
    def bytes_written(self) -> int:
        return sum(spec.nbytes for spec in self.layout.values())

    def peak_bytes(self) -> int:
        """An upper estimate of the resident memory of :func:`run_merge`: this process as it is
        (torch and the library loaded: about 700 MB with PyPI's torch), :data:`SLACK_BYTES`, and
        for the largest tensor its copy from every input, float32 copies of the base and of each
        model (TIES keeps every trimmed task vector), four float32 work tensors and the output."""
        largest = 0
        for name, out in self.layout.items():
            work = 4 * out.numel * (len(self.models) + 5) if name in self._merged else 0
            largest = max(largest, self.bytes_read_for(name) + work + out.nbytes)
        return _resident_bytes() + SLACK_BYTES + largest

    def describe(self) -> str:
        """What :func:`run_merge` will read and write, and the memory it needs (``--dry-run``)."""
        spec = method_spec(self.method)
        shown = {k: v for k, v in self.settings.items() if not (k in ("include", "exclude") and v is None)}
        lines = [f"method: {spec.display_name} ({self.method}) {json.dumps(shown)}", "read:"]
        lines.append(_describe_input("base", self.base, None))
        for index, (item, weight) in enumerate(zip(self.models, self.weights)):
            lines.append(_describe_input(f"model {index}" + (f" (weight {weight:g})" if weight != 1 else ""),
                                         item.checkpoint, item.keymap))
            for name, opened in self.inputs.items():
                lines.append(_describe_input(f"  {name}", opened[index].checkpoint, opened[index].keymap))
        lines += [
            f"write: {len(self.merged)} merged and {len(self.carried)} carried tensors ({', '.join(self.dtypes)}), "
            f"{_size(self.bytes_written)} in {', '.join(self.files)}"
            + (" with model.safetensors.index.json" if len(self.shards) > 1 else "") + f", and {RECORD}",
            f"memory: about {_size(self.peak_bytes())} at most (one tensor from every input at a time); "
            f"{_size(self.bytes_read + self.bytes_ordering)} read in all",
        ]
        if self.global_form is not None:
            lines.insert(-2, f"order: the masks rank each model's whole task vector (granularity 'global'): two passes "
                             f"over the base and the models first ({_size(self.bytes_ordering)}) locate each band")
        return "\n".join(lines)

    def close(self) -> None:
        for item in self.checkpoints():
            item.close()

    @cached_property
    def _merged(self) -> set[str]:
        return set(self.merged)


def plan_merge(
    base: str | os.PathLike,
    models: Sequence[ModelInput],
    method: str,
    parameters: Mapping[str, Any] | None = None,
    *,
    dtype: torch.dtype | None = None,
    shard_bytes: int = DEFAULT_SHARD_BYTES,
) -> MergePlan:
    """Open and check everything a merge needs (see the module); raises ``ValueError`` or
    ``FileNotFoundError`` naming the file, key, shape or value at fault."""
    spec = method_spec(method)
    settings = spec.complete(dict(parameters or {}))
    _check_request(spec, settings, models, dtype, shard_bytes)
    opened: list[Checkpoint] = []
    try:
        base_checkpoint = _open(base, opened)
        specs = base_checkpoint.specs
        merged, carried = select_keys({n: s.as_meta() for n, s in specs.items()}, settings["include"], settings["exclude"])
        if not merged:
            raise ValueError(f"{base}: no floating-point tensor is selected for merging")
        model_items = []
        inputs: dict[str, list[_Opened]] = {name: [] for name in spec.inputs}
        for index, item in enumerate(models):
            checkpoint = _open(item.path, opened)
            model_items.append(_Opened(checkpoint, align_keys(specs, checkpoint.specs, f"model {index} ({item.path})")))
            for name in spec.inputs:
                extra = _open(item.inputs[name], opened)
                label = f"{name} of model {index} ({item.inputs[name]})"
                inputs[name].append(_Opened(extra, _align_input(specs, merged, extra, label)))
        layout = {name: TensorSpec(dtype or specs[name].dtype, specs[name].shape)
                  if specs[name].dtype.is_floating_point else specs[name] for name in sorted(specs)}
        _check_storable(layout, base)
        _rehearse(method, settings, len(models))
        return MergePlan(method, settings, base_checkpoint, model_items, [float(m.weight) for m in models], inputs,
                         sorted(merged), sorted(carried), layout, plan_shards(layout, shard_bytes))
    except BaseException:
        for checkpoint in opened:
            checkpoint.close()
        raise


def _check_request(spec: MergeMethod, settings: Mapping[str, Any], models: Sequence[ModelInput],
                   dtype: torch.dtype | None, shard_bytes: int) -> None:
    """What can be checked before opening a file: the method's fit, weights, inputs, dtype, shard size."""
    method = spec.name
    if not models:
        raise ValueError("a merge needs at least one fine-tuned model")
    for index, item in enumerate(models):
        _check_weight(item.weight, index)
        needed, given = set(spec.inputs), set(item.inputs)
        if given - needed:
            raise ValueError(f"model {index} ({item.path}): method {method!r} takes no input {sorted(given - needed)}"
                             + (f"; it takes {sorted(needed)}" if needed else ""))
        if needed - given:
            raise ValueError(f"model {index} ({item.path}): method {method!r} needs {sorted(needed - given)} for every model")
    if dtype is not None and not dtype.is_floating_point:
        raise ValueError(f"the output dtype must be a floating-point type, got {dtype}")
    if not shard_bytes > 0:
        raise ValueError(f"the shard size must be positive, got {shard_bytes}")


def run_merge(plan: MergePlan, out: str | os.PathLike, *, overwrite: bool = False, progress: bool = True) -> Path:
    """Run ``plan`` into the folder ``out``: the weights as safetensors (sharded with an index
    when larger than the shard size) and :data:`RECORD`. The folder is written under a hidden
    temporary name beside ``out`` and renamed when complete; on any error (or Ctrl-C) it is
    removed and ``out`` is as it was. An existing ``out`` is refused unless ``overwrite``."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists: choose another output folder, or pass --overwrite to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    _check_free_space(out.parent, plan.bytes_written)
    partial = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        digests = _write_weights(plan, partial, progress)
        _write_record(plan, partial, digests)
        _replace(partial, out)
    except OSError as error:
        shutil.rmtree(partial, ignore_errors=True)
        if error.errno == errno.ENOSPC:
            raise OSError(errno.ENOSPC, f"the disk holding {out.parent} filled up while writing the merged model "
                                        f"({_size(plan.bytes_written)}); nothing was left behind") from error
        raise
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return out


def _write_weights(plan: MergePlan, folder: Path, progress: bool) -> dict[str, str]:
    """Merge and write every tensor; return the digest of each input (as ``state_dict_digest``)."""
    maskers = _global_maskers(plan, progress) if plan.global_form is not None else None
    digests = {label: hashlib.sha256() for label in _labels(plan)}
    metadata = {"format": "pt", "merge_method": plan.method}
    bar = tqdm(total=plan.bytes_read, unit="B", unit_scale=True, unit_divisor=1024, desc="merging",
               disable=not progress, dynamic_ncols=True)
    written, written_bytes = 0, 0
    try:
        for shard, file in zip(plan.shards, plan.files):
            writer = SafetensorsWriter(folder / file, shard, metadata)
            try:
                for name in shard:
                    writer.write(name, _output_tensor(plan, name, digests, maskers))
                    written, written_bytes = written + 1, written_bytes + plan.layout[name].nbytes
                    bar.update(plan.bytes_read_for(name))
                    bar.set_postfix_str(f"{written}/{len(plan.layout)} tensors, {_size(written_bytes)} written",
                                        refresh=False)
            except BaseException:
                writer.abandon()
                raise
            writer.close()
    finally:
        bar.close()
    if len(plan.shards) > 1:
        index = json.dumps(index_record(plan.shards, plan.files), indent=2)
        (folder / "model.safetensors.index.json").write_text(index)
    return {label: digest.hexdigest() for label, digest in digests.items()}


def _output_tensor(plan: MergePlan, name: str, digests: Mapping[str, Any], maskers: list[GlobalMasker] | None) -> Tensor:
    """The output tensor ``name``: merged, or the base's if carried. Every model's copy is read
    (and digested) either way; a method input only for merged tensors. With ``maskers`` (a
    global ordering), each model's task vector is masked by its masker, in the plan's order."""
    base = plan.base.read(name)
    update_digest(digests["base"], name, base)
    merged = name in plan._merged
    finetuned, extras = [], {key: [] for key in plan.inputs}
    for index, item in enumerate(plan.models):
        tensor = item.read(name)
        update_digest(digests[f"model {index}"], item.keymap.model_name(name), tensor)
        if merged:
            for key, opened in plan.inputs.items():
                extra = opened[index].read(name)
                update_digest(digests[f"{key} {index}"], opened[index].keymap.model_name(name), extra)
                extras[key].append({name: extra})
            finetuned.append({name: tensor})
    target = plan.layout[name].dtype
    if not merged:
        return base.to(target)
    theta = base.float()
    finetuned = _weighted(plan, name, theta, finetuned)
    try:
        if maskers is None:
            return merge({name: theta}, finetuned, plan.method, **plan.method_settings, **extras)[name].to(target)
        return _globally_masked_merge(plan, name, theta, finetuned, maskers).to(target)
    except ValueError as error:
        _name_non_finite_input(plan, name, base, finetuned, error)
        raise


def _weighted(plan: MergePlan, name: str, theta: Tensor, finetuned: list[dict[str, Tensor]]) -> list[dict[str, Tensor]]:
    """Each model's tensor ``name`` with its task vector scaled by the model's weight:
    ``theta + w * (theta'_t - theta)`` in float32 (as it is when ``w`` is 1)."""
    return [{name: theta + weight * (model[name].float() - theta)} if weight != 1.0 else model
            for model, weight in zip(finetuned, plan.weights)]


def _task_vector(theta: Tensor, name: str, model: Mapping[str, Tensor]) -> Tensor:
    """Tensor ``name`` of a model's task vector, formed as the in-memory merge forms it."""
    return TaskVector.from_state_dicts({name: theta}, model)[name]


def _global_maskers(plan: MergePlan, progress: bool) -> list[GlobalMasker]:
    """One :class:`.GlobalMasker` per model: its band located by two passes over the ordered
    tensors (each read once per pass from the base and from every model)."""
    form = plan.global_form
    locators = [BandLocator(form.beta, form.gamma) for _ in plan.models]
    bar = tqdm(total=2 * len(plan.ordered), desc="ordering task vectors", unit="tensor", disable=not progress,
               dynamic_ncols=True)
    with bar:
        for visit in ("count", "refine"):
            if visit == "refine" and not any(locator.needs_refinement for locator in locators):
                break
            for name in plan.ordered:
                base = plan.base.read(name)
                theta = base.float()
                finetuned = _weighted(plan, name, theta, [{name: item.read(name)} for item in plan.models])
                try:
                    for locator, model in zip(locators, finetuned):
                        delta = _task_vector(theta, name, model)
                        if visit == "count":
                            locator.count(delta)
                        else:
                            locator.refine(delta)
                except ValueError as error:
                    _name_non_finite_input(plan, name, base, finetuned, error)
                    raise
                bar.update()
    return [GlobalMasker(locator.band()) for locator in locators]


def _globally_masked_merge(plan: MergePlan, name: str, theta: Tensor, finetuned: list[dict[str, Tensor]],
                           maskers: list[GlobalMasker]) -> Tensor:
    """The merged tensor ``name`` of a method in :class:`.MaskedForm`: each task vector masked by
    its model's global band, then combined entry by entry by the method's own ``combine``."""
    keeps: dict[int, Tensor] = {}  # model -> its mask, made on first sight: a masker advances once per tensor

    def masked(index: int, vector: TaskVector) -> TaskVector:
        if index not in keeps:
            keeps[index] = maskers[index].keep(vector[name])
        vector[name].masked_fill_(~keeps[index], 0.0)
        return vector

    form = plan.global_form
    return form.combine({name: theta}, finetuned, plan.settings["alpha"], {"transform": masked})[name]


def _name_non_finite_input(plan: MergePlan, name: str, base: Tensor, finetuned: list[dict[str, Tensor]],
                           error: ValueError) -> None:
    """Raise ``ValueError`` naming the file and tensor behind ``error`` if an input holds NaN or inf
    (the in-memory merge names a model by its position only)."""
    sources = [(plan.base.path, name, base)]
    sources += [(item.checkpoint.path, item.keymap.model_name(name), model[name])
                for item, model in zip(plan.models, finetuned)]
    for path, tensor_name, tensor in sources:
        bad = int((~torch.isfinite(tensor)).sum()) if tensor.is_floating_point() else 0
        if bad:
            raise ValueError(f"{path}: tensor {tensor_name!r} of shape {list(tensor.shape)} has {bad} "
                             f"non-finite values (NaN or inf)") from error


def _resident_bytes() -> int:
    """The resident memory of this process now: from ``/proc`` on Linux (the peak so far would
    count a parent's pages when started from a large process), else the peak so far."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB elsewhere


def _labels(plan: MergePlan) -> list[str]:
    """Every input, as :data:`RECORD` names it: the base, then each model and its method inputs."""
    labels = ["base"]
    for index in range(len(plan.models)):
        labels.append(f"model {index}")
        labels += [f"{key} {index}" for key in plan.inputs]
    return labels


def _write_record(plan: MergePlan, folder: Path, digests: Mapping[str, str]) -> None:
    from .. import __version__

    def described(label: str, item: Checkpoint, keymap: KeyMap | None) -> dict[str, Any]:
        record = {"path": str(item.path), "format": item.format, "sha256": digests[label]}
        if keymap is not None and keymap.note:
            record["names"] = keymap.note
        return record

    models = []
    for index, (item, weight) in enumerate(zip(plan.models, plan.weights)):
        record = described(f"model {index}", item.checkpoint, item.keymap) | {"weight": weight}
        for key, opened in plan.inputs.items():
            record[key] = described(f"{key} {index}", opened[index].checkpoint, opened[index].keymap)
        models.append(record)
    record = {
        "method": plan.method,
        "parameters": plan.settings,
        "base": described("base", plan.base, None),
        "models": models,
        "output": {"files": plan.files, "dtypes": plan.dtypes, "merged_tensors": len(plan.merged),
                   "carried_tensors": len(plan.carried), "bytes": plan.bytes_written},
        "sha256": "state_dict_digest: sha256 over each tensor's name, dtype, shape and bytes, in name order "
                  "(of a method input: over the tensors read, those of the merged names)",
        "library_version": __version__,
    }
    (folder / RECORD).write_text(json.dumps(record, indent=2, default=str) + "\n")


def _replace(partial: Path, out: Path) -> None:
    """Move the finished ``partial`` folder to ``out``. An old ``out`` is moved aside first, put
    back if the move fails, and removed only after (a failure to remove it is not the merge's)."""
    if not out.exists():
        partial.rename(out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent)) / out.name
    out.rename(old)
    try:
        partial.rename(out)
    except BaseException:
        old.rename(out)
        raise
    if old.is_dir():
        shutil.rmtree(old.parent, ignore_errors=True)
    else:
        old.unlink(missing_ok=True)
        shutil.rmtree(old.parent, ignore_errors=True)


def _check_free_space(folder: Path, needed: int) -> None:
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise OSError(errno.ENOSPC, f"{folder} has {_size(free)} free, the merged model needs {_size(needed)}")


def _open(path: str | os.PathLike, opened: list[Checkpoint]) -> Checkpoint:
    checkpoint = open_checkpoint(path)
    opened.append(checkpoint)
    return checkpoint


def _align_input(base: Mapping[str, TensorSpec], merged: Sequence[str], extra: Checkpoint, name: str) -> KeyMap:
    """A method input (a Fisher) covers the merged tensors, with the base's shapes."""
    return align_keys({key: base[key] for key in merged}, extra.specs, name, allow_extra=True)


def _check_storable(layout: Mapping[str, TensorSpec], base: str | os.PathLike) -> None:
    for name, spec in layout.items():
        if spec.dtype not in DTYPE_NAMES:
            raise ValueError(f"{base}: tensor {name!r} is {spec.dtype}, which safetensors cannot store")


def _rehearse(method: str, settings: Mapping[str, Any], count: int) -> None:
    """Merge one-entry tensors with the method, so that the checks that depend on the number of
    models (Fisher merging's ``scaling``, one per model) fail now, before anything is written."""
    spec = method_spec(method)
    one = {"rehearsal": torch.ones(1)}
    extras = {name: [one] * count for name in spec.inputs}
    merge({"rehearsal": torch.zeros(1)}, [one] * count, method, **_per_tensor(settings), **extras)


def _per_tensor(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The settings passed to the method for each tensor: all but the choice of tensors."""
    return {k: v for k, v in settings.items() if k not in ("include", "exclude")}


def _check_weight(weight: object, index: int) -> None:
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight == 0:
        raise ValueError(f"model {index}: weight must be a finite non-zero number, got {weight!r}")


def _describe_input(label: str, checkpoint: Checkpoint, keymap: KeyMap | None) -> str:
    note = f"; {keymap.note}" if keymap is not None and keymap.note else ""
    return f"  {label}: {checkpoint.path} ({checkpoint.format}, {len(checkpoint.specs)} tensors, {_size(checkpoint.nbytes)}{note})"


def _size(count: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")
