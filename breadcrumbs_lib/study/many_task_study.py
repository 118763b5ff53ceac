"""The many-task experiment: tasks merged one at a time, hyperparameters chosen on the first few.

The paper's longest sequence (200 ImageNet tasks of 5 classes) follows its validation-free
protocol (section 4.3, Fig. 3): each method's hyperparameters are chosen on the validation splits
of the first ``tuned_on`` tasks merged, then kept fixed while the remaining tasks are added in
order, each merged model scored on the test splits of the tasks it has seen (mean normalized
accuracy, eq. 3). Choices read the validation scores of the first tasks only. (The sweep engine
scores the fine-tuned and zero-shot baselines on every task's splits, the normalisers; no choice
reads them beyond the first tasks.)

:func:`sequence_curves` runs it through the sweep engine (so an interrupted study resumes from the
results store) on the checkpoints of :func:`checkpoints`: every number of tasks up to ten, then
every tenth.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from .results_store import ResultsStore, setting_of
from .sweep_units import SweepContext, workbench_for
from .sweeps import Sweep, grid, run_sweep
from .tuning import subset_scores

METHODS = ("task_arithmetic", "breadcrumbs")


@dataclass(frozen=True)
class SequenceGrids:
    """What is searched on the first ``tuned_on`` tasks (``alpha`` scales the sum of the
    (masked) task vectors, ``theta + alpha * sum_t m_t * tau_t``; ``beta`` and ``gamma`` are
    Breadcrumbs' lower and upper shares of each tensor's entries masked out)."""

    tuned_on: int = 5
    alphas: tuple[float, ...] = (0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0)
    betas: tuple[float, ...] = (0.7, 0.85, 0.9)
    gammas: tuple[float, ...] = (0.0, 0.01)

    def sweeps(self, tuning: list[tuple[str, ...]]) -> list[Sweep]:
        return [Sweep("task_arithmetic", grid(alpha=list(self.alphas)), tuning, ("val",), "observed"),
                Sweep("breadcrumbs", grid(alpha=list(self.alphas), beta=list(self.betas), gamma=list(self.gammas)),
                      tuning, ("val",), "observed")]


def checkpoints(count: int) -> list[int]:
    """The numbers of tasks at which the sequence is scored: 1 to 10, then every tenth, and ``count``."""
    if count < 1:
        raise ValueError(f"a sequence needs at least one task, got {count}")
    return sorted({*range(1, min(count, 10) + 1), *range(10, count + 1, 10), count})


def sequence_curves(context: SweepContext, *, store: ResultsStore, grids: SequenceGrids = SequenceGrids(),
                    **options: Any) -> pd.DataFrame:
    """One row per ``(method, n_tasks)`` at each checkpoint: the mean normalized test accuracy
    over the first ``n_tasks`` tasks (``score``), merged with the setting chosen on the first
    ``grids.tuned_on`` tasks' validation splits (``hyperparameters`` and one typed column per
    hyperparameter). ``options`` go to :func:`.sweeps.run_sweep`."""
    order = list(workbench_for(context).tasks)
    if not 1 <= grids.tuned_on <= len(order):
        raise ValueError(f"tuned_on must lie in [1, {len(order)}], got {grids.tuned_on}")
    tuning = [tuple(order[:grids.tuned_on])]
    chosen = _chosen_settings(context, grids.sweeps(tuning), store, options)
    prefixes = [tuple(order[:n]) for n in checkpoints(len(order))]
    frame = run_sweep([Sweep(method, [chosen[method]], prefixes, ("test",), "observed") for method in METHODS],
                      context, store=store, **options)
    scores = subset_scores(frame[frame["method"].isin(METHODS)], scope="observed")
    curves = scores.drop(columns=["run_id", "size", "subset", "split"])
    return curves.sort_values(["method", "n_tasks"]).reset_index(drop=True)


def _chosen_settings(context: SweepContext, sweeps: list[Sweep], store: ResultsStore,
                     options: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each method's setting with the best validation score on the tuning prefix."""
    frame = run_sweep(sweeps, context, store=store, **options)
    scores = subset_scores(frame[frame["method"].isin(METHODS)], scope="observed")
    val = scores.sort_values(["method", "score", "hyperparameters"], ascending=[True, False, True], kind="stable")
    best = val.drop_duplicates("method")
    return {row.method: setting_of(row.hyperparameters) for row in best.itertuples()}
