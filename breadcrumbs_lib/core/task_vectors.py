"""Task vectors: ``tau = theta' - theta``, their arithmetic, masking, and application to a base.

Ilharco et al. ("Editing models with task arithmetic") call the difference between a fine-tuned
model ``theta'`` and its pre-trained base ``theta`` a task vector. Model Breadcrumbs (the paper
this workbook reproduces) calls the same quantity ``theta^d_t`` and masks it per layer.

Deltas are always formed and stored in float32, whatever the checkpoints' dtype: a difference
of two nearby bf16 numbers formed in bf16 loses most of its significant bits.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from numbers import Real

import torch
from torch import Tensor

from ._accel import add_float32_difference, float32_difference
from .masks import (
    GRANULARITIES,
    breadcrumbs_mask,
    breadcrumbs_masked,
    check_granularity,
)
from .state_dicts import (
    StateDict,
    StateDictSource,
    check_same_layout,
    load_state_dict,
    resolve_state_dict,
    select_keys,
)

#: ``(name, float32 delta) -> float32 tensor of the same shape``, applied per tensor.
DeltaMap = Callable[[str, Tensor], Tensor]


class TaskVector(Mapping[str, Tensor]):
    """A read-only mapping ``name -> float32 delta``, with vector-space arithmetic.

    ``a + b``, ``a - b``, ``-a``, ``c * a``, ``sum([a, b, c])`` and :meth:`sum_of` need equal keys
    and shapes and return new vectors; :meth:`apply_to` adds ``alpha * tau`` to a base state
    dict. The one operation that writes into a vector's tensors is
    ``breadcrumbs(..., inplace=True)``, meant for temporaries.
    """

    def __init__(self, deltas: Mapping[str, Tensor]):
        for key, delta in deltas.items():
            if delta.dtype != torch.float32:
                raise ValueError(f"task-vector entry {key!r} must be float32, got {delta.dtype}")
        self._deltas: dict[str, Tensor] = dict(deltas)

    # ----------------------------------------------------------------------------- construction
    @classmethod
    def from_state_dicts(
        cls,
        base: Mapping[str, Tensor],
        finetuned: Mapping[str, Tensor],
        *,
        include: Iterable[str] | None = None,
        exclude: Iterable[str] | None = None,
        name: str = "fine-tuned model",
        map_delta: DeltaMap | None = None,
    ) -> TaskVector:
        """``tau = finetuned - base`` in float32 over the floating-point entries.

        ``include`` / ``exclude`` are glob patterns on names (``"visual.*"``, ``"*.bias"``).
        Integer buffers are not part of a task vector; if one differs between the two models a
        warning names it, since a merge will take the base's value.

        ``map_delta(key, delta)``, if given, replaces each (finite) delta as soon as it is formed,
        while it is still in the CPU's cache: a merge masks each tensor there instead of in a
        second sweep over the whole vector, which would read it back from main memory.
        """
        check_same_layout(base, finetuned, name)
        merged_keys, carried_keys = select_keys(base, include, exclude)
        deltas = {key: _mapped(_delta(base, finetuned, key, name), key, map_delta) for key in merged_keys}
        _warn_if_carried_keys_differ(base, finetuned, carried_keys, name)
        return cls(deltas)

    @classmethod
    def from_checkpoints(cls, base_path: str, finetuned_path: str, **options) -> TaskVector:
        """:meth:`from_state_dicts` on two checkpoint files (safetensors or weights-only torch)."""
        return cls.from_state_dicts(
            load_state_dict(base_path), load_state_dict(finetuned_path), name=str(finetuned_path), **options
        )

    # ----------------------------------------------------------------------------- mapping API
    def __getitem__(self, key: str) -> Tensor:
        return self._deltas[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._deltas)

    def __len__(self) -> int:
        return len(self._deltas)

    def __repr__(self) -> str:
        return f"TaskVector({len(self)} tensors, {self.numel():,} entries, norm={self.norm():.4g})"

    def numel(self) -> int:
        """Total number of entries."""
        return sum(delta.numel() for delta in self._deltas.values())

    def norm(self) -> float:
        """Euclidean norm over all entries."""
        return math.sqrt(sum(float(delta.double().square().sum()) for delta in self._deltas.values()))

    def dot(self, other: TaskVector) -> float:
        """Inner product over all entries (float64 accumulation)."""
        self._check_compatible(other)
        return sum(float((self[key].double() * other[key].double()).sum()) for key in self)

    def cosine_similarity(self, other: TaskVector) -> float:
        """``<a, b> / (|a| |b|)`` over all entries; 0 if either vector is zero."""
        denominator = self.norm() * other.norm()
        return self.dot(other) / denominator if denominator > 0 else 0.0

    # ----------------------------------------------------------------------------- arithmetic
    def __add__(self, other: TaskVector) -> TaskVector:
        self._check_compatible(other)
        return TaskVector({key: self[key] + other[key] for key in self})

    def __radd__(self, other: object) -> TaskVector:
        if isinstance(other, Real) and other == 0:  # lets the built-in sum() start from 0
            return self
        return NotImplemented

    def __sub__(self, other: TaskVector) -> TaskVector:
        self._check_compatible(other)
        return TaskVector({key: self[key] - other[key] for key in self})

    def __neg__(self) -> TaskVector:
        return TaskVector({key: -delta for key, delta in self._deltas.items()})

    def __mul__(self, coefficient: float) -> TaskVector:
        check_coefficient(coefficient, "coefficient")
        return TaskVector({key: delta * float(coefficient) for key, delta in self._deltas.items()})

    __rmul__ = __mul__

    @staticmethod
    def sum_of(vectors: Iterable[TaskVector]) -> TaskVector:
        """``sum_t tau_t``, accumulated in place so that only one extra vector is held."""
        total: TaskVector | None = None
        for vector in vectors:
            if total is None:  # the running sum starts as a copy, so the first vector can be released
                total = TaskVector({key: delta.clone() for key, delta in vector.items()})
            else:
                total._check_compatible(vector)
                for key, delta in total.items():
                    delta.add_(vector[key])
            del vector  # release it before the next one is made
        if total is None:
            raise ValueError("cannot sum an empty list of task vectors")
        return total

    def apply_to(self, base: Mapping[str, Tensor], alpha: float = 1.0) -> StateDict:
        """``theta + alpha * tau`` in float32, returned in each base tensor's dtype.

        Keys of ``base`` that the task vector does not cover are passed through unchanged
        (the same tensor objects).
        """
        check_coefficient(alpha, "alpha")
        missing = [key for key in self if key not in base]
        if missing:
            raise ValueError(f"base has no tensor {missing[0]!r} (and {len(missing) - 1} more) of the task vector")
        merged = dict(base)
        for key, delta in self._deltas.items():
            if base[key].shape != delta.shape:
                raise ValueError(f"shape mismatch for {key!r}: base {tuple(base[key].shape)} vs task vector {tuple(delta.shape)}")
            target = base[key].detach()
            merged[key] = (target.to(torch.float32) + float(alpha) * delta.to(target.device)).to(target.dtype)
        return merged

    # ----------------------------------------------------------------------------- masking
    def breadcrumbs_masks(self, beta: float, gamma: float, granularity: str = "tensor", *,
                          backend: str = "auto") -> dict[str, Tensor]:
        """Keep-masks of Model Breadcrumbs for every tensor (see :func:`breadcrumbs_mask`, whose
        ``backend`` this takes).

        ``granularity="global"`` orders all entries of the task vector at once (0-d tensors
        excluded and never masked); ties are broken by position in the concatenation of the
        tensors in key order, each flattened: the mask of that concatenation as one row.
        """
        check_granularity(granularity, GRANULARITIES)
        if granularity != "global":
            return {key: breadcrumbs_mask(delta, beta, gamma, granularity, backend=backend) for key, delta in self.items()}
        ordered, values = self._concatenation()
        keep = breadcrumbs_mask(values, beta, gamma, "row", backend=backend).reshape(-1)
        masks = {key: torch.ones_like(delta, dtype=torch.bool) for key, delta in self.items()}
        masks.update({key: part.reshape(self[key].shape)
                      for key, part in zip(ordered, keep.split([self[key].numel() for key in ordered]))})
        return masks

    def masked(self, masks: Mapping[str, Tensor]) -> TaskVector:
        """``m * tau``: entries where ``masks[key]`` is False become 0."""
        self._check_compatible_masks(masks)
        return TaskVector({key: delta * masks[key] for key, delta in self._deltas.items()})

    def breadcrumbs(self, beta: float, gamma: float, granularity: str = "tensor", *, inplace: bool = False) -> TaskVector:
        """The Model Breadcrumbs of this task vector: ``m^{beta,gamma} * tau``.

        Equal to ``self.masked(self.breadcrumbs_masks(beta, gamma, granularity))``, computed
        without materialising the masks where possible. ``inplace=True`` zeroes the masked
        entries of this vector itself and returns it (for temporaries: saves a copy).
        """
        check_granularity(granularity, GRANULARITIES)
        if granularity != "global":
            return TaskVector({
                key: breadcrumbs_masked(delta, beta, gamma, granularity, inplace=inplace)
                for key, delta in self.items()
            })
        ordered, values = self._concatenation()
        masked = breadcrumbs_masked(values, beta, gamma, "row", inplace=True).reshape(-1)  # a fresh concatenation
        parts = dict(zip(ordered, masked.split([self[key].numel() for key in ordered])))
        if inplace:
            for key, part in parts.items():
                self[key].copy_(part.reshape(self[key].shape))
            return self
        return TaskVector({
            key: parts[key].reshape(delta.shape) if key in parts else delta.clone() for key, delta in self.items()
        })

    def _concatenation(self) -> tuple[list[str], Tensor]:
        """The keys of the non-0-d tensors, in order, and all their entries concatenated into a
        new ``(1, N)`` row: the one group of ``granularity="global"``."""
        ordered = [key for key, delta in self.items() if delta.dim() > 0]
        values = torch.cat([self[key].reshape(-1) for key in ordered]) if ordered else torch.zeros(0)
        return ordered, values.reshape(1, -1)

    # ----------------------------------------------------------------------------- checks
    def _check_compatible(self, other: object) -> None:
        if not isinstance(other, TaskVector):
            raise ValueError(f"expected a TaskVector, got {type(other).__name__}")
        check_same_layout(self, other, "the other task vector", "this task vector")

    def _check_compatible_masks(self, masks: Mapping[str, Tensor]) -> None:
        check_same_layout(self, masks, "the masks", "the task vector")
        for key, mask in masks.items():
            if mask.dtype != torch.bool:
                raise ValueError(f"mask for {key!r} must be bool, got {mask.dtype}")


def iter_task_vectors(
    base: Mapping[str, Tensor],
    finetuned: Iterable[StateDictSource],
    *,
    include: Iterable[str] | None = None,
    exclude: Iterable[str] | None = None,
    map_delta: DeltaMap | None = None,
    transform: Callable[[int, TaskVector], TaskVector] | None = None,
) -> Iterator[TaskVector]:
    """Yield ``transform(t, tau_t)`` (or ``tau_t``) for each fine-tuned model in turn, each
    tensor of ``tau_t`` passed through ``map_delta`` as it is formed (see
    :meth:`TaskVector.from_state_dicts`).

    Checkpoint paths are loaded lazily and every reference is dropped before the next model is
    read, so at most one fine-tuned model and one task vector are held at a time (callers
    looping over the result should ``del`` their loop variable at the end of each step).
    """
    include, exclude = _patterns(include), _patterns(exclude)
    for index, source in enumerate(finetuned):
        name = _model_name(source, index)
        state = resolve_state_dict(source)
        vector = TaskVector.from_state_dicts(base, state, include=include, exclude=exclude, name=name, map_delta=map_delta)
        del state
        if transform is not None:
            vector = transform(index, vector)
        yield vector
        del vector


def sum_task_vectors(
    base: Mapping[str, Tensor],
    finetuned: Iterable[StateDictSource],
    *,
    include: Iterable[str] | None = None,
    exclude: Iterable[str] | None = None,
    map_delta: DeltaMap | None = None,
    transform: Callable[[int, TaskVector], TaskVector] | None = None,
) -> TaskVector:
    """``sum_t tau_t``, each ``tau_t`` first passed through ``map_delta`` per tensor or
    ``transform`` whole: by definition ``TaskVector.sum_of(iter_task_vectors(...))`` with the
    same arguments, and that is how a ``transform`` (which reads a whole vector) is summed.

    Otherwise the sum is formed tensor by tensor, the same vector bit for bit with the same
    checks and errors, without ever holding a whole task vector: each tensor's delta is formed,
    mapped and added to the running sum while it is in the CPU's cache, and with no
    ``map_delta`` every model after the first is added by one pass that forms each difference and
    adds it at once (:func:`._accel.add_float32_difference`; contiguous float32 CPU tensors, else
    a difference and an add). At most the running sum, one fine-tuned model and one tensor's
    delta are held. ``map_delta`` must return a new tensor or its argument (the first model's
    results become the running sum), as masks and ``TaskVector`` arithmetic do.
    """
    if transform is not None:
        return TaskVector.sum_of(iter_task_vectors(base, finetuned, include=include, exclude=exclude,
                                                   map_delta=map_delta, transform=transform))
    include, exclude = _patterns(include), _patterns(exclude)
    total: dict[str, Tensor] | None = None
    for index, source in enumerate(finetuned):
        name = _model_name(source, index)
        state = resolve_state_dict(source)
        check_same_layout(base, state, name)
        merged_keys, carried_keys = select_keys(base, include, exclude)
        if total is None:  # the first model's (mapped) deltas start the sum
            total = {key: _mapped(_delta(base, state, key, name), key, map_delta) for key in merged_keys}
        elif map_delta is None:
            for key in merged_keys:
                _add_delta(total[key], base, state, key, name)
        else:
            for key in merged_keys:
                total[key].add_(map_delta(key, _delta(base, state, key, name)))
        _warn_if_carried_keys_differ(base, state, carried_keys, name)
        del state
    if total is None:
        raise ValueError("cannot sum an empty list of task vectors")
    return TaskVector(total)


def _model_name(source: StateDictSource, index: int) -> str:
    """How errors name fine-tuned model ``index``: its path, or its position for a state dict."""
    return str(source) if not isinstance(source, Mapping) else f"fine-tuned model #{index}"


def _patterns(patterns: Iterable[str] | None) -> list[str] | None:
    """Glob patterns as a list, read once (the caller's may be a one-shot iterator)."""
    return None if patterns is None else list(patterns)


def _delta(base: Mapping[str, Tensor], finetuned: Mapping[str, Tensor], key: str, name: str) -> Tensor:
    """``finetuned[key] - base[key]`` in float32, checked finite (``ValueError`` naming the model,
    the tensor and which side holds NaN or inf)."""
    _check_floating(base, finetuned, key, name)
    delta, finite = float32_difference(finetuned[key], base[key])
    if not finite:
        _raise_non_finite(name, key, base[key], finetuned[key])
    return delta


def _add_delta(total: Tensor, base: Mapping[str, Tensor], finetuned: Mapping[str, Tensor], key: str, name: str) -> None:
    """``total += finetuned[key] - base[key]``, checked as :func:`_delta` checks."""
    _check_floating(base, finetuned, key, name)
    if not add_float32_difference(total, finetuned[key], base[key]):
        _raise_non_finite(name, key, base[key], finetuned[key])


def _mapped(delta: Tensor, key: str, map_delta: DeltaMap | None) -> Tensor:
    return delta if map_delta is None else map_delta(key, delta)


def _check_floating(base: Mapping[str, Tensor], finetuned: Mapping[str, Tensor], key: str, name: str) -> None:
    if not finetuned[key].is_floating_point():
        raise ValueError(f"{name}: tensor {key!r} has dtype {finetuned[key].dtype}, the base has {base[key].dtype}")


def check_coefficient(value: object, name: str) -> None:
    """Raise ``ValueError`` unless ``value`` is a finite real number (bools refused)."""
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(float(value)):
        raise ValueError(f"{name} must be a finite real number, got {value!r}")


def _raise_non_finite(name: str, key: str, base: Tensor, finetuned: Tensor) -> None:
    for label, tensor in (("fine-tuned", finetuned), ("base", base)):
        bad = int((~torch.isfinite(tensor)).sum())
        if bad:
            raise ValueError(f"{name}: {label} tensor {key!r} of shape {tuple(tensor.shape)} has {bad} non-finite values")
    raise ValueError(f"{name}: the delta of {key!r} overflows float32")


def _warn_if_carried_keys_differ(
    base: Mapping[str, Tensor], finetuned: Mapping[str, Tensor], carried: list[str], name: str
) -> None:
    for key in carried:
        if base[key].is_floating_point():
            continue  # excluded on purpose by the caller's patterns
        if base[key].dtype != finetuned[key].dtype or not torch.equal(base[key], finetuned[key]):
            warnings.warn(
                f"{name}: non-float tensor {key!r} ({base[key].dtype}) differs from the base; "
                "it is not part of the task vector and a merge keeps the base's value",
                stacklevel=3,
            )
