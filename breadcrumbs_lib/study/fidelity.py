"""Does a world live in the paper's regime, and which of the paper's findings does a run reproduce?

Sparsification can only remove interference without removing the task when the foundation is
*over-parameterized* for its tasks: a task vector then carries its task in a small share of its
entries, and most of the rest is redundant. Two diagnostics tell whether a world is there:

* :func:`retention`: one breadcrumb ``m_t(beta, gamma) * tau_t`` applied alone with ``alpha = 1``
  keeps what share of its task's fine-tuned accuracy: ``acc(theta + m_t * tau_t) / acc(theta'_t)``
  (the paper's regime: about all of it at 85% sparsity);
* :func:`relative_norms`: ``||tau_t|| / ||theta||``, how far fine-tuning moved the weights.

:func:`paired_bootstrap` gives the uncertainty of a difference between two merged models that
comes from the finite test sets, and :func:`claims_table` checks the paper's findings, one row
each, against the measurements of a run (:data:`CLAIMS`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from torch import Tensor

from ..core.metrics import normalized_accuracy
from ..core.task_vectors import TaskVector
from ..worlds.workbench import WorldEvaluator


def relative_norms(base: Mapping[str, Tensor], vectors: Mapping[str, TaskVector]) -> dict[str, float]:
    """Per task: ``||tau_t|| / ||theta||`` over the floating-point tensors of the base."""
    theta = TaskVector({key: value.float() for key, value in base.items() if value.is_floating_point()}).norm()
    return {task: vector.norm() / theta for task, vector in vectors.items()}


def retention(evaluator: WorldEvaluator, base: Mapping[str, Tensor], vectors: Mapping[str, TaskVector],
              *, beta: float = 0.85, gamma: float = 0.01) -> pd.DataFrame:
    """One row per task: ``finetuned`` accuracy of ``theta + tau_t``, ``breadcrumb`` accuracy of
    ``theta + m_t(beta, gamma) * tau_t`` (alpha 1, the task alone), ``retention`` (their ratio: eq. 3 of the breadcrumb alone)
    and ``relative_norm`` (``||tau_t|| / ||theta||``), on ``evaluator``'s splits."""
    norms = relative_norms(base, vectors)
    rows = []
    for task, vector in vectors.items():
        finetuned = evaluator.evaluate(vector.apply_to(base, 1.0), [task])[task]
        breadcrumb = evaluator.evaluate(vector.breadcrumbs(beta, gamma).apply_to(base, 1.0), [task])[task]
        rows.append({"task": task, "finetuned": finetuned, "breadcrumb": breadcrumb,
                     "retention": normalized_accuracy(breadcrumb, finetuned), "relative_norm": norms[task]})
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class BootstrapInterval:
    """A difference of mean normalized accuracies and its percentile bootstrap interval."""

    difference: float
    low: float
    high: float
    level: float
    resamples: int

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


def paired_bootstrap(first: Mapping[str, Tensor], second: Mapping[str, Tensor], finetuned: Mapping[str, Tensor], *,
                     resamples: int = 2000, level: float = 0.95, seed: int = 0) -> BootstrapInterval:
    """Bootstrap interval of ``mean_t first_t / ft_t - mean_t second_t / ft_t`` (eq. 3, mean over
    tasks), resampling each task's test images with replacement; the three models are scored on
    the *same* resampled images (paired), so only the disagreement between them counts.

    Each argument maps a task to one bool per test image (:meth:`.Evaluator.correct`), in the same
    image order for all three.
    """
    if not 0 < level < 1 or resamples < 1:
        raise ValueError(f"need 0 < level < 1 and resamples >= 1, got level={level}, resamples={resamples}")
    for name, given in (("second", second), ("finetuned", finetuned)):
        if set(given) != set(first):
            raise ValueError(f"{name} covers tasks {sorted(given)}, first covers {sorted(first)}")
    rng = np.random.default_rng(seed)
    gaps = np.zeros(resamples)
    point = 0.0
    for task in first:
        a, b, f = (np.asarray(values[task], dtype=np.float64) for values in (first, second, finetuned))
        if not a.shape == b.shape == f.shape or a.ndim != 1:
            raise ValueError(f"task {task!r}: per-image results of shapes {a.shape}, {b.shape}, {f.shape} differ")
        point += normalized_accuracy(a.mean() - b.mean(), f.mean())
        index = rng.integers(0, a.size, size=(resamples, a.size))
        ft = np.maximum(f[index].mean(axis=1), 1.0 / a.size)  # a resample where fine-tuning gets nothing right
        gaps += normalized_accuracy(a[index].mean(axis=1) - b[index].mean(axis=1), ft)
    gaps /= len(first)
    tail = (1 - level) / 2
    low, high = np.quantile(gaps, [tail, 1 - tail])
    return BootstrapInterval(point / len(first), float(low), float(high), level, resamples)


@dataclass(frozen=True)
class Claim:
    """One finding of the paper, as a test on a run's measurements (a dict of named numbers)."""

    name: str
    paper: str  # what the paper (or the field) reports
    measure: str  # the measurement shown as "this run"
    holds: Callable[[Mapping[str, float]], bool]
    needs: tuple[str, ...]  # measurements the test reads
    unit: str = "%"  # how the measure is shown: "%" (a share), "points" (a signed difference), "steps" (a count)

    def show(self, value: float) -> str:
        """``value`` of :attr:`measure` as the claims table shows it."""
        if self.unit == "steps":
            return f"{value:.3g}/4 steps up"
        return f"{100 * value:+.1f}" if self.unit == "points" else f"{100 * value:.1f}"


CHANCE_MULTIPLE = 2.0  # zero-shot must be at least twice chance ...
ZERO_SHOT_CEILING = 0.70  # ... and at most 70%
FINETUNED_FLOOR = 0.90
FINETUNED_LEAD = 0.25  # fine-tuned at least 25 points above zero-shot
TA_CEILING = 0.95  # merging eight tasks must still interfere
RETENTION_FLOOR = 0.95
GAP_FLOOR = 0.03  # Breadcrumbs (tuned) at least 3 points ahead of task arithmetic
HALF_WIDTH_CEILING = 0.015

def _ahead(name: str, paper: str, measure: str) -> Claim:
    """The claim that the signed difference ``measure`` (shown in points) is positive."""
    return Claim(name, paper, measure, lambda m: m[measure] > 0, (measure,), "points")


def _retention(paper: str) -> Claim:
    return Claim("one 85% breadcrumb alone keeps >= 95% of its task", paper,
                 "retention", lambda m: m["retention"] >= RETENTION_FLOOR, ("retention",))


def _interference(n_tasks: int, paper: str) -> Claim:
    return Claim(f"{n_tasks} tasks: task arithmetic < 95% normalized (interference exists)", paper,
                 "task_arithmetic", lambda m: m["task_arithmetic"] < TA_CEILING, ("task_arithmetic",))


CLAIMS: tuple[Claim, ...] = (
    _retention("regime of large models (DARE: ~0 loss at 90%)"),
    Claim("8 tasks: Breadcrumbs (tuned on val) - task arithmetic >= 3 points", "+7.7 (83.0 vs 75.3)",
          "gap_tuned", lambda m: m["gap_tuned"] >= GAP_FLOOR, ("gap_tuned",), "points"),
    _ahead("8 tasks: Breadcrumbs at 85% (alpha on val) > task arithmetic", "+7.7 (85% is the best setting)", "gap_85"),
    _ahead("8 tasks: TIES > task arithmetic", "field, ViT-B/32: 72.2 vs 68.0 (absolute)", "gap_ties"),
    _ahead("the gap grows with the number of tasks (8 vs 2, Fig. 2)", "grows to +8.3 at 8 tasks", "gap_growth"),
    _ahead("validation-free: tuned on the first task, Breadcrumbs ahead at 8 tasks (Fig. 3)", "Breadcrumbs ahead",
           "validation_free_gap"),
    Claim("scale: both methods improve B-32 < B-16 < L-14 at 8 tasks (Fig. 4)", "both improve with size",
          "scale_steps", lambda m: m["scale_steps"] == 4, ("scale_steps",), "steps"),
    Claim("zero-shot mean in [2 x chance, 70%]", "48.1 (ViT-B/32)",
          "zero_shot", lambda m: CHANCE_MULTIPLE * m["chance"] <= m["zero_shot"] <= ZERO_SHOT_CEILING,
          ("zero_shot", "chance")),
    Claim("fine-tuned mean >= 90% and >= zero-shot + 25 points", "90.5 (ViT-B/32)",
          "finetuned", lambda m: m["finetuned"] >= FINETUNED_FLOOR and m["finetuned"] >= m["zero_shot"] + FINETUNED_LEAD,
          ("finetuned", "zero_shot")),
    _interference(8, "75.3"),
    Claim("95% bootstrap interval of the 8-task gap narrower than +-1.5 points", "-",
          "gap_half_width", lambda m: m["gap_half_width"] < HALF_WIDTH_CEILING, ("gap_half_width",)),
)


TEXT_CHANCE_LEAD = 0.10  # text: zero-shot at least 10 points above chance (two- and three-way tasks)

#: The same findings for the text world (notebook 10): four tasks instead of eight. The reference
#: text of the paper does not give its T5 figures, only that its conclusions hold on language.
TEXT_CLAIMS: tuple[Claim, ...] = (
    _retention("regime of large models (DARE, TIES: T5 too)"),
    _ahead("4 tasks: Breadcrumbs (tuned on val) > task arithmetic", "holds on T5 (no figure in the text)", "gap_tuned"),
    _ahead("4 tasks: that lead beyond noise (paired bootstrap 95% interval, its lower end > 0)", "-", "gap_low"),
    _ahead("4 tasks: Breadcrumbs at 85% (alpha on val) > task arithmetic", "-", "gap_85"),
    _ahead("4 tasks: TIES > task arithmetic", "field: TIES ahead on T5", "gap_ties"),
    _ahead("the gap grows with the number of tasks (4 vs 2)", "-", "gap_growth"),
    _ahead("validation-free: tuned on the first task, Breadcrumbs ahead at 4 tasks", "-", "validation_free_gap"),
    Claim("zero-shot (prompted) >= chance + 10 points", "-",
          "zero_shot", lambda m: m["zero_shot"] >= m["chance"] + TEXT_CHANCE_LEAD, ("zero_shot", "chance")),
    Claim("fine-tuned >= zero-shot + 25 points", "-",
          "finetuned", lambda m: m["finetuned"] >= m["zero_shot"] + FINETUNED_LEAD, ("finetuned", "zero_shot")),
    _interference(4, "-"),
)


def claims_table(measurements: Mapping[str, float], claims: tuple[Claim, ...] = CLAIMS) -> pd.DataFrame:
    """One row per claim (of ``claims``: the vision world's by default) whose measurements are all
    present: ``claim, paper, this run, holds``. Shares are shown in percent (gaps in points)."""
    rows = []
    for claim in claims:
        if not all(key in measurements and not _missing(measurements[key]) for key in claim.needs):
            continue
        rows.append({"claim": claim.name, "paper": claim.paper, "this run": claim.show(measurements[claim.measure]),
                     "holds": bool(claim.holds(measurements))})
    return pd.DataFrame(rows, columns=["claim", "paper", "this run", "holds"])


def claims_over_seeds(per_seed: pd.DataFrame, claims: tuple[Claim, ...] = CLAIMS) -> pd.DataFrame:
    """The claims table over several seeds (one row of measurements per seed in ``per_seed``):
    ``claim, paper, mean, spread (sd), per seed, holds (every seed), holds (mean)``; a claim is
    left out when a seed lacks one of its measurements."""
    rows = []
    for claim in claims:
        if not set(claim.needs) <= set(per_seed.columns) or per_seed[list(claim.needs)].isna().any().any():
            continue
        values = per_seed[claim.measure]
        spread = claim.show(values.std(ddof=1)).lstrip("+") if len(values) > 1 and claim.unit != "steps" else "-"
        rows.append({"claim": claim.name, "paper": claim.paper, "mean": claim.show(values.mean()),
                     "spread (sd)": spread, "per seed": " / ".join(claim.show(v) for v in values),
                     "holds (every seed)": all(bool(claim.holds(row)) for _, row in per_seed.iterrows()),
                     "holds (mean)": bool(claim.holds(per_seed.mean()))})
    return pd.DataFrame(rows, columns=["claim", "paper", "mean", "spread (sd)", "per seed", "holds (every seed)",
                                       "holds (mean)"])


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))
