"""Model Breadcrumbs (Davari & Belilovsky): ``theta + alpha * sum_t m_t(beta, gamma) * tau_t``."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from torch import Tensor

from ..masks import GRANULARITIES, breadcrumbs_masked, check_fractions, check_granularity
from ..state_dicts import StateDict, StateDictSource
from ..task_vectors import sum_task_vectors
from .spec import Additive, Hyperparameter, MaskedForm, MergeMethod, Patterns
from .task_arithmetic import ALPHA


def breadcrumbs(
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
    """Model Breadcrumbs: ``theta + alpha * sum_t m_t(beta, gamma) * tau_t``.

    ``alpha`` scales the merged sum; ``beta`` is the share of each group's smallest ``|tau|``
    masked, ``gamma`` the share of its largest ``|tau|`` masked (see
    :func:`..masks.reference_breadcrumbs_mask`); ``granularity`` is ``"tensor"`` (paper),
    ``"row"`` (authors' code) or ``"global"``. The paper's ablations are settings of this:
    ``beta = 0`` masks only the top, ``gamma = 0`` only the bottom, ``beta = gamma = 0`` is
    exactly task arithmetic.
    """
    check_fractions(beta, gamma)
    check_granularity(granularity, GRANULARITIES)
    return masked_sum(base, finetuned, alpha, masking(beta, gamma, granularity), include=include, exclude=exclude)


def masked_sum(
    base: Mapping[str, Tensor],
    finetuned: Sequence[StateDictSource],
    alpha: float,
    mask: Mapping[str, Callable],
    *,
    include: Patterns = None,
    exclude: Patterns = None,
) -> StateDict:
    """``theta + alpha * sum_t masked_t``: task arithmetic on the task vectors masked by ``mask``
    (a :func:`masking` argument)."""
    return sum_task_vectors(base, finetuned, include=include, exclude=exclude, **mask).apply_to(base, alpha)


def masking(beta: float, gamma: float, granularity: str) -> dict[str, Callable]:
    """The :func:`..task_vectors.sum_task_vectors` (or ``iter_task_vectors``) argument that
    masks every task vector with Breadcrumbs masks: per tensor as each is formed (``map_delta``,
    while it is in cache), or over the whole vector once it is formed (``transform``) when the
    ordering is ``"global"``."""
    if granularity == "global":
        return {"transform": lambda index, vector: vector.breadcrumbs(beta, gamma, granularity, inplace=True)}

    def mask(key: str, delta: Tensor) -> Tensor:  # delta was checked finite as it was formed
        return breadcrumbs_masked(delta, beta, gamma, granularity, inplace=True, check_finite=False)

    return {"map_delta": mask}


def masking_variant(settings: Mapping[str, object]) -> str:
    """The ablation a Breadcrumbs setting belongs to (Fig. 6): ``"none"`` (beta = gamma = 0, task
    arithmetic), ``"bottom only"`` (gamma = 0), ``"top only"`` (beta = 0) or ``"both"``."""
    bottom, top = float(settings.get("beta", 0.0)) > 0, float(settings.get("gamma", 0.0)) > 0
    return {(False, False): "none", (True, False): "bottom only", (False, True): "top only", (True, True): "both"}[(bottom, top)]


def _check_share(name: str) -> Callable[[object], None]:
    def check(value: object) -> None:
        check_fractions(value, 0.0) if name == "beta" else check_fractions(0.0, value)
    return check


def _masked(settings: Mapping[str, Any]) -> MaskedForm:
    return MaskedForm(float(settings["beta"]), float(settings["gamma"]), settings["granularity"], masked_sum)


def _additive(settings: Mapping[str, Any]) -> Additive:
    beta, gamma, granularity = float(settings["beta"]), float(settings["gamma"]), settings["granularity"]
    return Additive(("breadcrumbs", beta, gamma, granularity),
                    lambda vector: vector.breadcrumbs(beta, gamma, granularity), settings["alpha"])


SPEC = MergeMethod(
    name="breadcrumbs",
    display_name="Breadcrumbs",
    function=breadcrumbs,
    hyperparameters=(
        ALPHA,
        Hyperparameter("beta", _check_share("beta"), meaning="share of each group's smallest |tau| masked"),
        Hyperparameter("gamma", _check_share("gamma"), meaning="share of each group's largest |tau| masked"),
        Hyperparameter("granularity", lambda value: check_granularity(value, GRANULARITIES), "tensor",
                       "the group a mask orders: 'tensor' (paper), 'row' (authors' code), 'global'"),
    ),
    color="tab:orange",
    joint_check=lambda settings: check_fractions(settings["beta"], settings["gamma"]),
    additive=_additive,
    masked=_masked,
    equivalent_to=lambda settings: "task_arithmetic" if masking_variant(settings) == "none" else None,
)
