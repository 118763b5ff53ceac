"""Breadcrumbs masks with TIES' sign election: ``theta + alpha * tau_m`` over the breadcrumbs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor

from ..masks import GRANULARITIES, check_fractions, check_granularity
from ..state_dicts import StateDict, StateDictSource
from . import breadcrumbs as _breadcrumbs
from .spec import MaskedForm, MergeMethod, Patterns
from .ties import sign_elected_merge


def breadcrumbs_ties(
    base: Mapping[str, Tensor],
    finetuned: Sequence[StateDictSource],
    *,
    alpha: float,
    beta: float,
    gamma: float,
    granularity: str = "tensor",
    include: Patterns = None,
    exclude: Patterns = None,
) -> StateDict:
    """Breadcrumbs' masks in place of TIES' trim: ``theta + alpha * tau_m``, where

    1. Mask: ``b_t = m_t(beta, gamma) * tau_t``, the breadcrumb of each task (the smallest share
       ``beta`` and the largest share ``gamma`` of each group's ``|tau_t|`` dropped, as in
       ``breadcrumbs``; ``granularity`` ``"tensor"`` by default, as the paper).
    2. Elect: ``s = sign(sum_t b_t)`` per entry.
    3. Disjoint mean: ``tau_m = sum_{t: sign(b_t) = s} b_t / #{t: sign(b_t) = s}``.

    With ``gamma = 0`` and ``granularity = "global"`` this is TIES at ``density = 1 - beta``.
    mergekit offers the combination under the same name (with per-model weights and a
    normalisation of its own).
    """
    check_fractions(beta, gamma)
    check_granularity(granularity, GRANULARITIES)
    return sign_elected_merge(base, finetuned, alpha, _breadcrumbs.masking(beta, gamma, granularity),
                              include=include, exclude=exclude)


SPEC = MergeMethod(
    name="breadcrumbs_ties",
    display_name="Breadcrumbs + TIES",
    function=breadcrumbs_ties,
    hyperparameters=_breadcrumbs.SPEC.hyperparameters,
    color="tab:brown",
    joint_check=_breadcrumbs.SPEC.joint_check,
    masked=lambda settings: MaskedForm(float(settings["beta"]), float(settings["gamma"]), settings["granularity"],
                                       sign_elected_merge),
)
