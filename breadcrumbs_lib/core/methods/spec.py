"""What a merge method is, as data: its function, its hyperparameters with their checks and
defaults, how it merges subsets incrementally, and how the workbook shows it.

Every part of the package that needs to know about a method reads its :class:`MergeMethod`:
:func:`..merging.merge` and :func:`..merging.check_hyperparameters` (names, values, defaults),
the subset merger of sweeps (:attr:`MergeMethod.additive`), the streaming merge of model files
(:attr:`MergeMethod.masked`, for masks ordered over a whole task vector), the plots
(:attr:`MergeMethod.color`), the tables of each method's best setting
(:attr:`MergeMethod.equivalent_to`) and the notebooks, which show a method's settings with
:meth:`MergeMethod.describe`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..state_dicts import StateDict
from ..task_vectors import TaskVector

#: The default of a hyperparameter that must be given.
REQUIRED: Any = object()

#: Glob patterns choosing which tensors are merged (``None``: all floating-point tensors).
Patterns = Iterable[str] | None


@dataclass(frozen=True)
class Hyperparameter:
    """One keyword argument of a method: ``check`` raises ``ValueError`` for a bad value."""

    name: str
    check: Callable[[Any], None]
    default: Any = REQUIRED
    meaning: str = ""


@dataclass(frozen=True)
class Additive:
    """A merge of the form ``theta + scale * sum_{t in S} f(tau_t)``, where ``f`` depends only on
    the task and the settings, never on the subset ``S``: the shape that subset merging exploits.

    ``key`` identifies ``f`` with its settings (equal keys, equal ``f``); ``transform`` is ``f``
    (``None``: the identity); ``alpha`` is ``scale`` (``None``: ``1 / |S|``, an average)."""

    key: tuple
    transform: Callable[[TaskVector], TaskVector] | None
    alpha: float | None


@dataclass(frozen=True)
class MaskedForm:
    """A merge that masks each task vector with Breadcrumbs masks, then combines the masked
    vectors entry by entry: the method's function is ``combine(base, finetuned, alpha, mask,
    include=..., exclude=...)`` with ``mask = masking(beta, gamma, granularity)`` (see
    :func:`..methods.breadcrumbs.masking`). Every entry of the merged model then depends on the
    other models' entries at the same place and on the masks alone, so a streaming merge can
    bring masks ordered over a whole task vector (``granularity="global"``) to one tensor at a
    time (:mod:`breadcrumbs_lib.core.global_masks`)."""

    beta: float
    gamma: float
    granularity: str
    combine: Callable[..., StateDict]


def _no_joint_check(settings: Mapping[str, Any]) -> None:
    """Most methods have no constraint between their hyperparameters."""


def _no_equivalent(settings: Mapping[str, Any]) -> str | None:
    """Most methods' settings are their own."""
    return None


def _pattern_check(value: object) -> None:
    if value is not None and (isinstance(value, (str, bytes)) or not isinstance(value, Iterable)):
        raise ValueError(f"include / exclude must be a list of glob patterns or None, got {value!r}")


#: Taken by every method: which tensors are merged (the others are the base's own).
COMMON = (Hyperparameter("include", _pattern_check, None, "glob patterns of the tensors merged (None: all)"),
          Hyperparameter("exclude", _pattern_check, None, "glob patterns of tensors left as the base's"))


@dataclass(frozen=True)
class MergeMethod:
    """A merge method: ``function(base, finetuned, **settings)`` returns the merged state dict.

    ``hyperparameters`` are the method's own (``include`` / ``exclude`` come on top, for every
    method); ``joint_check`` checks constraints between them (e.g. ``beta + gamma < 1``);
    ``additive`` returns the :class:`Additive` form of a complete setting, or ``None`` when the
    method (or that setting) has none; ``inputs`` names the data the method needs besides the
    weights, one item per fine-tuned model (Fisher merging's ``fishers``): keyword arguments of
    :func:`..merging.merge` that are not hyperparameters (never swept, never stored);
    ``masked`` returns the :class:`MaskedForm` of a complete setting of a method that masks each
    task vector and combines them entry by entry (the streaming merge of
    :mod:`breadcrumbs_lib.checkpoints` reads it for masks ordered over a whole task vector);
    ``equivalent_to`` names the other method a setting reduces to, or ``None`` (Breadcrumbs with
    ``beta = gamma = 0`` is task arithmetic): tables that pick each method's best setting leave
    such settings to that other method;
    ``display_name``, ``color`` and each hyperparameter's ``meaning`` are how the workbook shows it.
    """

    name: str
    display_name: str
    function: Callable[..., StateDict]
    hyperparameters: tuple[Hyperparameter, ...]
    color: str
    joint_check: Callable[[Mapping[str, Any]], None] = _no_joint_check
    additive: Callable[[Mapping[str, Any]], Additive | None] | None = None
    inputs: tuple[str, ...] = ()
    masked: Callable[[Mapping[str, Any]], MaskedForm] | None = None
    equivalent_to: Callable[[Mapping[str, Any]], str | None] = _no_equivalent

    @property
    def accepted(self) -> tuple[str, ...]:
        return tuple(h.name for h in (*self.hyperparameters, *COMMON))

    def complete(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """``given`` with the defaults filled in, after checking every name and value
        (``ValueError`` for an unknown or missing name, or a bad value; values are checked in
        declaration order, whatever the order of ``given``, so the first bad one is named)."""
        unknown = [name for name in given if name not in self.accepted]
        if unknown:
            raise ValueError(f"unknown hyperparameter(s) {unknown} for method {self.name!r}; it accepts {list(self.accepted)}")
        missing = [h.name for h in self.hyperparameters if h.default is REQUIRED and h.name not in given]
        if missing:
            raise ValueError(f"method {self.name!r} needs hyperparameter(s) {missing}")
        settings = {h.name: given.get(h.name, h.default) for h in (*self.hyperparameters, *COMMON)}
        for h in (*self.hyperparameters, *COMMON):
            h.check(settings[h.name])
        self.joint_check(settings)
        return settings

    def describe(self) -> str:
        """A Markdown table of the method's hyperparameters: name, default, meaning."""
        rows = [f"| `{h.name}` | {'required' if h.default is REQUIRED else f'`{h.default!r}`'} | {h.meaning.replace('|', chr(92) + '|')} |"
                for h in (*self.hyperparameters, *COMMON)]
        needs = [f"Needs, besides the weights, one per fine-tuned model: {', '.join(f'`{n}`' for n in self.inputs)}.", ""] \
            if self.inputs else []
        return "\n".join([f"**{self.display_name}** (`{self.name}`)", "", *needs,
                          "| hyperparameter | default | meaning |", "|---|---|---|", *rows])

    def additive_form(self, given: Mapping[str, Any]) -> Additive | None:
        """The :class:`Additive` form of a setting, or ``None`` (no such form, or tensors chosen
        by ``include`` / ``exclude``, which only :attr:`function` applies)."""
        settings = self.complete(given)
        if self.additive is None or settings["include"] is not None or settings["exclude"] is not None:
            return None
        return self.additive(settings)
