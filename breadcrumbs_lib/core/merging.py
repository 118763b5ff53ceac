"""Merging fine-tuned models of one base: :func:`merge`, the one entry point to every method.

The methods themselves (Model Breadcrumbs and the baselines it is compared to) live one per
module in :mod:`.methods`, each described by a :class:`.methods.spec.MergeMethod`.

The fine-tuned models are visited one at a time (paths are loaded lazily), so the peak memory of
a merge is the base, the float32 running sum (the result) and one task vector with its mask.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .methods import METHODS
from .methods.spec import MergeMethod
from .state_dicts import StateDict, StateDictSource, resolve_state_dict


def merge(
    base: StateDictSource,
    finetuned: Sequence[StateDictSource],
    method: str,
    **hyperparameters: object,
) -> StateDict:
    """Merge fine-tuned models of ``base`` into one multi-task state dict.

    Args:
        base: the pre-trained state dict ``theta`` (or a checkpoint path).
        finetuned: fine-tuned state dicts ``theta'_t`` (or checkpoint paths, loaded one at a time).
        method: one of :data:`METHODS`: ``"task_arithmetic"``, ``"breadcrumbs"``, ``"average"``,
            ``"ties"``, ``"breadcrumbs_ties"``, ``"dare"``, ``"fisher"``.
        **hyperparameters: the method's keyword arguments (see each function); every method also
            takes ``include`` / ``exclude`` glob patterns choosing which tensors are merged. A
            method that needs data besides the weights takes it here too, one item per
            fine-tuned model (``fisher``: ``fishers=[...]``, see its spec's ``inputs``).

    Returns:
        a new state dict with the base's keys and dtypes. Tensors not merged (integer buffers,
        excluded names) are the base's own.

    Raises:
        ValueError: unknown method, unknown or missing hyperparameter, out-of-range value,
            empty model list, or incompatible models (keys, shapes, dtypes, non-finite values).
    """
    spec = method_spec(method)
    inputs = {name: hyperparameters.pop(name) for name in spec.inputs if name in hyperparameters}
    spec.complete(hyperparameters)
    missing = [name for name in spec.inputs if name not in inputs]
    if missing:
        raise ValueError(f"method {method!r} needs {missing} besides the weights: one per fine-tuned model")
    if isinstance(finetuned, (str, bytes, Mapping)) or not isinstance(finetuned, Sequence):
        raise ValueError("finetuned must be a list of state dicts or checkpoint paths")
    if len(finetuned) == 0:
        raise ValueError("cannot merge an empty list of fine-tuned models")
    return spec.function(resolve_state_dict(base), finetuned, **hyperparameters, **inputs)


def method_spec(method: str) -> MergeMethod:
    """The :class:`.methods.spec.MergeMethod` named ``method`` (``ValueError`` if there is none)."""
    if method not in METHODS:
        raise ValueError(f"unknown merge method {method!r}; expected one of {sorted(METHODS)}")
    return METHODS[method]


def check_hyperparameters(method: str, hyperparameters: Mapping[str, object]) -> None:
    """Raise ``ValueError`` unless ``hyperparameters`` is a complete, in-range setting of
    ``method`` (what :func:`merge` checks before it reads any model; sweeps call it up front)."""
    method_spec(method).complete(hyperparameters)
