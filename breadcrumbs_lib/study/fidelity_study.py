"""The measurements behind the claims table (:data:`.fidelity.CLAIMS`) for one world.

:func:`measure` builds (or loads) one preset/size/seed world and measures, choosing every
setting on the validation splits and scoring on the test splits:

* ``retention`` and ``relative_norm``: one breadcrumb at the paper's setting (beta 0.85, gamma
  0.01) applied alone with alpha 1, as a share of its task's fine-tuned accuracy, and
  ``||tau|| / ||theta||`` (means over tasks);
* all tasks merged (normalized accuracy, eq. 3): ``task_arithmetic`` (alpha tuned),
  ``breadcrumbs`` (alpha, beta, gamma tuned), ``breadcrumbs_85`` (the paper's 85%, alpha tuned),
  ``ties`` (alpha, density tuned), their gaps to task arithmetic (``gap_tuned``, ``gap_85``,
  ``gap_ties``) and a paired bootstrap 95% interval over test images of ``gap_tuned``
  (``gap_low``, ``gap_high``, ``gap_half_width``);
* ``gap_pairs``: the 85% gap at two tasks (mean over every pair, alpha tuned per pair), and
  ``gap_growth = gap_85 - gap_pairs`` (Fig. 2);
* ``validation_free_gap``: alpha tuned on the first task only, then tasks added (Fig. 3);
* ``zero_shot``, ``finetuned`` (mean test accuracy) and ``chance`` (mean of 1 / classes).

Every sweep goes through the results store, so a second call (the notebook after the benchmark,
or the other way round) reads the results back instead of evaluating again.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from ..core.merging import merge
from ..core.task_vectors import TaskVector
from ..worlds.workbench import AnyWorkbench, WorldEvaluator
from . import fidelity
from .results_store import ResultsStore, setting_of
from .sweep_units import FINETUNED, ZERO_SHOT, SweepContext, workbench_for
from .sweeps import Sweep, grid, run_selection_sweep, run_sweep
from .task_subsets import pairs, prefixes
from .tuning import best_per_subset, validation_free

PAPER_SETTING = {"beta": 0.85, "gamma": 0.01}


@dataclass(frozen=True)
class StudyGrids:
    """The hyperparameter grids searched on validation (the ``alpha`` of every method scales the
    sum of the (masked) task vectors: ``theta + alpha * sum_t m_t * tau_t``)."""

    alphas: tuple[float, ...] = tuple(round(0.05 * k, 2) for k in range(1, 21))  # task arithmetic, 85% Breadcrumbs
    coarse_alphas: tuple[float, ...] = tuple(round(0.1 * k, 1) for k in range(1, 11))  # wider grids, pairs
    betas: tuple[float, ...] = (0.5, 0.7, 0.85, 0.9)
    gammas: tuple[float, ...] = (0.0, 0.01, 0.02)
    ties_alphas: tuple[float, ...] = (0.3, 0.5, 0.7, 1.0, 1.3, 1.6)
    ties_densities: tuple[float, ...] = (0.1, 0.2, 0.3)


def measure(context: SweepContext, *, store: ResultsStore, grids: StudyGrids = StudyGrids(),
            seed: int | None = None, **options: Any) -> dict[str, float]:
    """Every measurement of the claims table for ``context``'s world (see the module docstring).

    ``seed`` seeds the bootstrap (default: the context's seed); ``options`` go to
    :func:`.sweeps.run_sweep` (``executor``, ``workers``, ``progress``).
    """
    bench = workbench_for(context)
    tasks = list(bench.tasks)
    options = {"store": store, **options}
    measurements, settings = _merged_all(context, bench, tasks, grids, options)
    test = evaluator_on_test(bench)
    kept = retention_on_test(bench, test, **PAPER_SETTING)
    measurements.update(retention=float(kept["retention"].mean()), relative_norm=float(kept["relative_norm"].mean()))
    measurements.update(_bootstrap(bench, test, settings, context.seed if seed is None else seed))
    measurements.update(_by_number_of_tasks(context, tasks, grids, options, measurements["gap_85"]))
    return measurements


def evaluator_on_test(bench: AnyWorkbench) -> WorldEvaluator:
    """An evaluator of ``bench``'s models on the test split of each of its tasks."""
    return bench.evaluators(["test"])["test"]


def retention_on_test(bench: AnyWorkbench, evaluator: WorldEvaluator | None = None, *, beta: float, gamma: float) -> pd.DataFrame:
    """:func:`.fidelity.retention` of every task of ``bench`` on its test split (``evaluator``:
    one from :func:`evaluator_on_test`, built here if not given)."""
    vectors = {t: TaskVector.from_state_dicts(bench.base, bench.finetuned[t]) for t in bench.tasks}
    return fidelity.retention(evaluator or evaluator_on_test(bench), bench.base, vectors, beta=beta, gamma=gamma)


def _merged_all(context: SweepContext, bench: AnyWorkbench, tasks: list[str], grids: StudyGrids,
                options: dict[str, Any]) -> tuple[dict[str, float], dict[str, dict[str, Any]]]:
    """The all-task measurements, and the settings chosen for Breadcrumbs and task arithmetic."""
    everything = [tuple(tasks)]
    frame = run_selection_sweep([
        Sweep("task_arithmetic", grid(alpha=list(grids.alphas)), everything),
        Sweep("breadcrumbs", grid(alpha=list(grids.coarse_alphas), beta=list(grids.betas), gamma=list(grids.gammas)),
              everything),
        Sweep("ties", grid(alpha=list(grids.ties_alphas), density=list(grids.ties_densities)), everything),
    ], context, **options)
    # the 85% setting is a selection of its own: its best alpha is scored on test even when
    # another (beta, gamma) wins the tuned grid
    at_85 = run_selection_sweep(Sweep("breadcrumbs", grid(alpha=list(grids.alphas), **PAPER_SETTING), everything),
                                context, **options)
    at_85 = at_85[at_85["method"] == "breadcrumbs"]
    test = frame[frame["split"] == "test"]
    chosen = {row.method: (setting_of(row.hyperparameters), row.score)
              for row in best_per_subset(frame[~frame["method"].isin([ZERO_SHOT, FINETUNED])]).itertuples()}
    (ta_settings, ta), (bc_settings, bc), (_, ties) = chosen["task_arithmetic"], chosen["breadcrumbs"], chosen["ties"]
    bc_85 = float(best_per_subset(at_85).iloc[0]["score"])
    return {
        "zero_shot": float(test.loc[test["method"] == ZERO_SHOT, "accuracy"].mean()),
        "finetuned": float(test.loc[test["method"] == FINETUNED, "accuracy"].mean()),
        "chance": float(np.mean([1 / bench.num_classes(t) for t in tasks])),
        "task_arithmetic": ta, "breadcrumbs": bc, "breadcrumbs_85": bc_85, "ties": ties,
        "gap_tuned": bc - ta, "gap_85": bc_85 - ta, "gap_ties": ties - ta,
    }, {"breadcrumbs": bc_settings, "task_arithmetic": ta_settings}


def _bootstrap(bench: AnyWorkbench, evaluator: WorldEvaluator, settings: dict[str, dict[str, Any]],
               seed: int) -> dict[str, float]:
    """The paired bootstrap interval of tuned Breadcrumbs minus tuned task arithmetic, on
    ``evaluator``'s test splits."""
    tasks = list(bench.tasks)
    finetuned = [bench.finetuned[t] for t in tasks]
    correct: dict[str, dict[str, Any]] = {}
    for method in ("breadcrumbs", "task_arithmetic"):
        evaluator.load(merge(bench.base, finetuned, method, **settings[method]))
        correct[method] = {t: evaluator.correct(t) for t in tasks}
    correct["finetuned"] = {}
    for t in tasks:
        evaluator.load(bench.finetuned[t])
        correct["finetuned"][t] = evaluator.correct(t)
    interval = fidelity.paired_bootstrap(correct["breadcrumbs"], correct["task_arithmetic"], correct["finetuned"],
                                         seed=seed)
    return {"gap_low": interval.low, "gap_high": interval.high, "gap_half_width": interval.half_width}


def _by_number_of_tasks(context: SweepContext, tasks: list[str], grids: StudyGrids, options: dict[str, Any],
                        gap_85: float) -> dict[str, float]:
    """Fig. 2 (every pair against all tasks) and Fig. 3 (validation-free), at the 85% setting."""
    alphas = list(grids.coarse_alphas)
    subsets = pairs(tasks) + prefixes(tasks)
    frame = run_sweep([
        Sweep("task_arithmetic", grid(alpha=alphas), subsets, score="observed"),
        Sweep("breadcrumbs", grid(alpha=alphas, **PAPER_SETTING), subsets, score="observed"),
    ], context, **options)
    merged = frame[frame["method"].isin(["task_arithmetic", "breadcrumbs"])]
    per_pair = best_per_subset(merged[merged["n_tasks"] == 2]).groupby("method")["score"].mean()
    gap_pairs = float(per_pair["breadcrumbs"] - per_pair["task_arithmetic"])
    free = validation_free(merged, tasks, tuned_on=[1])
    at_end = free[free["n_tasks"] == len(tasks)].set_index("method")["score"]
    return {"gap_pairs": gap_pairs, "gap_growth": gap_85 - gap_pairs,
            "validation_free_gap": float(at_end["breadcrumbs"] - at_end["task_arithmetic"])}


def scale_scores(context: SweepContext, sizes: tuple[str, ...], *, store: ResultsStore, grids: StudyGrids = StudyGrids(),
                 **options: Any) -> dict[str, float]:
    """Fig. 4: the all-task score of task arithmetic and of 85% Breadcrumbs (alpha tuned) at each
    of ``sizes``, and ``scale_steps``: how many of the steps from one size to the next improve a
    method's score (all of them when both methods grow with every size)."""
    scores: dict[str, pd.Series] = {}
    for size in sizes:
        sized = replace(context, size=size)
        tasks = (tuple(workbench_for(sized).tasks),)
        frame = run_selection_sweep([Sweep("task_arithmetic", grid(alpha=list(grids.alphas)), tasks),
                                     Sweep("breadcrumbs", grid(alpha=list(grids.alphas), **PAPER_SETTING), tasks)],
                                    sized, store=store, **options)
        best = best_per_subset(frame[frame["method"].isin(["task_arithmetic", "breadcrumbs"])])
        scores[size] = best.set_index("method")["score"]
    steps = sum(int(scores[b][m] > scores[a][m]) for a, b in zip(sizes, sizes[1:]) for m in ("task_arithmetic", "breadcrumbs"))
    return {"scale_steps": steps, **{f"{m} {size}": float(scores[size][m]) for size in sizes for m in scores[size].index}}
