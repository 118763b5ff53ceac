"""Analyses of task vectors and of sweep results that the notebooks show.

* :func:`layer_table`: per tensor of a task vector, its size, the two cut magnitudes of the
  Breadcrumbs band and the share of entries the mask keeps.
* :func:`overlap_matrix` / :func:`cosine_matrix`: how the kept entries of different tasks overlap
  (Jaccard index) and how aligned the vectors are (cosine similarity: an addition, the paper argues interference in section 3 without measuring it).
* :func:`pair_outcomes`: for every merged pair of tasks, each task's normalized accuracy under
  the pair's best setting, and whether the merged model beats both fine-tuned models (Fig. 5).
* :func:`masking_variants`: which masking ablation (Fig. 6) each Breadcrumbs setting is.
* :func:`headline`: the 8-task (all-task) numbers of each method under its best setting;
  :func:`chosen_settings` reads the settings back from it, as a method's keyword arguments.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from ..core.masks import find_breadcrumbs_band
from ..core.methods import METHODS
from ..core.methods.breadcrumbs import masking_variant
from ..core.task_vectors import TaskVector
from ..study.results_store import setting_of
from ..study.sweep_units import BASELINES, FINETUNED, ZERO_SHOT
from ..study.task_subsets import parse_subset_name, subset_name
from ..study.tuning import best_per_subset


def magnitude_cuts(delta: Tensor, beta: float, gamma: float) -> tuple[float, float]:
    """``(low, high)``: the magnitudes at which the Breadcrumbs band of ``delta`` (one group:
    the whole tensor) starts and ends; ``0`` / ``inf`` where nothing is cut on that side."""
    band = find_breadcrumbs_band(delta.detach().float().reshape(1, -1).contiguous(), beta, gamma)
    low, high = band.bounds()
    return max(float(low[0]), 0.0), float(high[0])


def layer_table(vector: TaskVector, masks: Mapping[str, Tensor], beta: float, gamma: float) -> pd.DataFrame:
    """One row per tensor (0-d ones left out): ``tensor, entries, low_cut, high_cut,
    median_abs, kept_share`` (the share of the tensor's entries that ``masks`` keep)."""
    rows = []
    for key, delta in vector.items():
        if delta.dim() == 0:
            continue
        low, high = magnitude_cuts(delta, beta, gamma)
        rows.append({"tensor": key, "entries": delta.numel(), "low_cut": low, "high_cut": high,
                     "median_abs": float(delta.abs().median()), "kept_share": float(masks[key].float().mean())})
    return pd.DataFrame(rows)


def overlap_matrix(masks: Mapping[str, Mapping[str, Tensor]]) -> pd.DataFrame:
    """Jaccard index ``|A and B| / |A or B|`` of the kept entries of every pair of tasks."""
    flat = {task: torch.cat([mask.reshape(-1) for mask in task_masks.values()]) for task, task_masks in masks.items()}
    tasks = list(flat)
    values = np.eye(len(tasks))
    for i, a in enumerate(tasks):
        for j in range(i + 1, len(tasks)):
            b = tasks[j]
            union = int((flat[a] | flat[b]).sum())
            values[i, j] = values[j, i] = int((flat[a] & flat[b]).sum()) / union if union else 1.0
    return pd.DataFrame(values, index=tasks, columns=tasks)


def cosine_matrix(vectors: Mapping[str, TaskVector]) -> pd.DataFrame:
    """Cosine similarity of every pair of vectors (over all their entries)."""
    tasks = list(vectors)
    values = np.eye(len(tasks))
    for i, a in enumerate(tasks):
        for j in range(i + 1, len(tasks)):
            values[i, j] = values[j, i] = vectors[a].cosine_similarity(vectors[tasks[j]])
    return pd.DataFrame(values, index=tasks, columns=tasks)


def mean_off_diagonal(matrix: pd.DataFrame) -> float:
    """Mean of the entries off the diagonal of a square matrix."""
    values = matrix.to_numpy()
    return float(values[~np.eye(len(values), dtype=bool)].mean())


def pair_outcomes(frame: pd.DataFrame, *, select_split: str = "val", report_split: str = "test") -> pd.DataFrame:
    """For each method and two-task subset: the best setting on ``select_split`` (observed tasks),
    then each task's ``report_split`` normalized accuracy (``first``, ``second``) and
    ``beats_both`` (both above 1: better than each fine-tuned model on its own task)."""
    pairs = frame[frame["n_tasks"] == 2]
    best = best_per_subset(pairs, select_split=select_split, report_split=report_split)
    rows = []
    for _, choice in best.iterrows():
        first, second = parse_subset_name(choice["subset"])
        chosen = pairs[(pairs["run_id"] == choice["run_id"]) & (pairs["method"] == choice["method"])
                       & (pairs["subset"] == choice["subset"]) & (pairs["hyperparameters"] == choice["hyperparameters"])
                       & (pairs["split"] == report_split)].set_index("scored_task")["normalized_accuracy"]
        rows.append({"size": choice["size"], "method": choice["method"], "subset": choice["subset"],
                     "hyperparameters": choice["hyperparameters"], "first": chosen[first], "second": chosen[second],
                     "beats_both": bool(chosen[first] > 1.0 and chosen[second] > 1.0)})
    return pd.DataFrame(rows)


def masking_variants(frame: pd.DataFrame) -> pd.Series:
    """The masking ablation (Fig. 6) each row's ``beta`` and ``gamma`` belong to: ``"none"``,
    ``"bottom only"``, ``"top only"`` or ``"both"`` (see :func:`..core.methods.breadcrumbs.masking_variant`)."""
    variants = [masking_variant({"beta": beta, "gamma": gamma}) for beta, gamma in zip(frame["beta"], frame["gamma"])]
    return pd.Series(variants, index=frame.index, dtype=object, name="variant")


def headline(frame: pd.DataFrame, tasks: list[str], *, select_split: str = "val", report_split: str = "test") -> pd.DataFrame:
    """Per method, the merge of all ``tasks`` under its best setting on ``select_split``: mean
    absolute and normalized ``report_split`` accuracy over the tasks, with the setting. Zero-shot
    and fine-tuned rows come first. Settings that reduce to another method (Breadcrumbs with
    beta = gamma = 0 is task arithmetic: :attr:`.MergeMethod.equivalent_to`) are left out.

    Columns: ``model`` (a label to show, e.g. ``"breadcrumbs, 8 tasks"``), ``method`` (as stored:
    ``"zeroshot"``, ``"finetuned"``, ``"breadcrumbs"``, ...), ``n_tasks`` (0 for zero-shot, 1 for
    the fine-tuned models), ``accuracy``, ``normalized_accuracy``, ``hyperparameters`` (JSON; empty
    for the two baselines) and one column per hyperparameter of the chosen settings."""
    everything = subset_name(tasks)
    test = frame[frame["split"] == report_split]
    baselines = pd.DataFrame([
        {"model": label, "method": method, "n_tasks": n_tasks, "hyperparameters": "",
         "accuracy": test.loc[test["method"] == method, "accuracy"].mean(),
         "normalized_accuracy": test.loc[test["method"] == method, "normalized_accuracy"].mean()}
        for method, label, n_tasks in ((ZERO_SHOT, "zero-shot", 0), (FINETUNED, "fine-tuned (one model per task)", 1))])
    merged = frame[(frame["subset"] == everything) & ~frame["method"].isin(BASELINES)]
    pairs = list(zip(merged["method"], merged["hyperparameters"]))
    own = {pair: not _reduces_to_another(*pair) for pair in set(pairs)}  # once per setting, not per row
    merged = merged[[own[pair] for pair in pairs]]
    choices = best_per_subset(merged, select_split=select_split, report_split=report_split)
    scored = test[test["subset"] == everything].groupby(["method", "hyperparameters"])[
        ["accuracy", "normalized_accuracy"]].mean().reset_index()
    chosen = choices.drop(columns=["run_id", "size", "subset", "selection_score", "score"]).merge(
        scored, on=["method", "hyperparameters"], how="left")
    chosen.insert(0, "model", [f"{method}, {len(tasks)} tasks" for method in chosen["method"]])
    return pd.concat([baselines, chosen], ignore_index=True)


def _reduces_to_another(method: str, hyperparameters: str) -> bool:
    """Whether a stored setting of ``method`` is another method's (see :attr:`.MergeMethod.equivalent_to`)."""
    spec = METHODS.get(method)
    return spec is not None and spec.equivalent_to(spec.complete(setting_of(hyperparameters))) is not None


def chosen_settings(table: pd.DataFrame) -> dict[str, dict[str, object]]:
    """Method -> its chosen hyperparameters, from the merged rows of a :func:`headline` table
    (the zero-shot and fine-tuned rows have none)."""
    merged = table[~table["method"].isin(BASELINES)]
    return {row.method: setting_of(row.hyperparameters) for row in merged.itertuples(index=False)}
