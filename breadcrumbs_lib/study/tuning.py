"""Choosing hyperparameters from sweep records, as the paper does.

All functions take the records of :meth:`.ResultsStore.frame` (or :func:`.run_sweep`) and score
a merged model by the mean of ``metric`` (default: normalized accuracy) over its scored tasks:
only the tasks it has seen (``scope="observed"``, the paper's model selection and Fig. 2b) or
all of them (``scope="all"``, Fig. 2a). A choice is made on one split (``"val"``) and reported
on another (``"test"``). Ties in the selection score go to the first setting in the order of
the canonical hyperparameter JSON, so choices are deterministic. Every table returned carries
the setting twice: as its canonical JSON (``hyperparameters``, the key) and as one typed column
per hyperparameter (``alpha``, ``beta``, ...: :func:`.results_store.with_settings`).

* :func:`subset_scores`: the score of every (method, setting, subset, split).
* :func:`best_per_subset`: the best setting of each subset (section 4.2, Fig. 2).
* :func:`best_per_size`: one setting per number of tasks, best on average over those subsets.
* :func:`validation_free`: tune on the first 1, 2 or 3 tasks of an order, then add tasks with
  those values, never looking at their validation data (section 4.3, Fig. 3).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pandas as pd

from .results_store import with_settings
from .task_subsets import prefixes, subset_name

RUN = ["run_id", "size", "method"]


def subset_scores(frame: pd.DataFrame, *, scope: str = "observed", metric: str = "normalized_accuracy") -> pd.DataFrame:
    """Mean ``metric`` over the scored tasks of each ``(run, method, hyperparameters, subset,
    split)``; columns ``... n_tasks, score`` and the setting's typed columns."""
    return with_settings(_subset_scores(frame, scope=scope, metric=metric))


def _subset_scores(frame: pd.DataFrame, *, scope: str, metric: str) -> pd.DataFrame:
    """:func:`subset_scores` keyed by the settings' JSON only: the choices below type the few
    rows they return, not every score."""
    if scope not in ("observed", "all"):
        raise ValueError(f"scope must be 'observed' or 'all', got {scope!r}")
    missing = sorted({*RUN, "hyperparameters", "subset", "n_tasks", "split", "observed", metric} - set(frame.columns))
    if missing:
        raise ValueError(f"records lack column(s) {missing}")
    rows = frame[frame["observed"]] if scope == "observed" else frame
    keys = [*RUN, "hyperparameters", "subset", "n_tasks", "split"]
    return rows.groupby(keys, sort=True)[metric].mean().rename("score").reset_index()


def best_per_subset(frame: pd.DataFrame, *, select_split: str = "val", report_split: str = "test",
                    scope: str = "observed", report_scope: str | None = None,
                    metric: str = "normalized_accuracy") -> pd.DataFrame:
    """Per ``(run, method, subset)``: the setting with the best ``select_split`` score, that score
    (``selection_score``) and the same setting's ``report_split`` score (``score``), averaged
    over the tasks of ``report_scope`` (default: ``scope``; ``"all"`` for Fig. 2a)."""
    scores = _subset_scores(frame, scope=scope, metric=metric)
    reported = scores
    if report_scope is not None and report_scope != scope:
        reported = _subset_scores(frame, scope=report_scope, metric=metric)
    return _choose_then_report(scores, reported, [*RUN, "subset", "n_tasks"], select_split, report_split)


def best_per_size(frame: pd.DataFrame, *, select_split: str = "val", report_split: str = "test",
                  scope: str = "observed", metric: str = "normalized_accuracy") -> pd.DataFrame:
    """Per ``(run, method, n_tasks)``: the one setting with the best mean ``select_split`` score
    over all subsets of that size, and its mean ``report_split`` score over them."""
    scores = _subset_scores(frame, scope=scope, metric=metric)
    keys = [*RUN, "n_tasks"]
    per_setting = scores.groupby([*keys, "hyperparameters", "split"], sort=True)["score"].mean().reset_index()
    return _choose_then_report(per_setting, per_setting, keys, select_split, report_split)


def validation_free(frame: pd.DataFrame, order: Sequence[str], *, tuned_on: Iterable[int] = (1, 2, 3),
                    select_split: str = "val", report_split: str = "test", scope: str = "observed",
                    metric: str = "normalized_accuracy") -> pd.DataFrame:
    """The validation-free protocol over the task ``order``: for each ``k`` in ``tuned_on``,
    choose the setting on ``select_split`` of the first ``k`` tasks only, then report the
    ``report_split`` score of the first ``n`` tasks merged with it, for ``n = k .. T``.

    Returns one row per ``(run, method, tuned_on, n_tasks)`` with the setting and its score;
    rows are missing where the records lack a prefix subset.
    """
    scores = _subset_scores(frame, scope=scope, metric=metric)
    named = [subset_name(prefix) for prefix in prefixes(order)]
    rows = []
    for k in tuned_on:
        if not 1 <= k <= len(order):
            raise ValueError(f"tuned_on must lie in [1, {len(order)}], got {k}")
        tuning = scores[(scores["subset"] == named[k - 1]) & (scores["split"] == select_split)]
        for _, choice in _argmax(tuning, RUN).iterrows():
            same_setting = scores[(scores[RUN] == choice[RUN]).all(axis=1)
                                  & (scores["hyperparameters"] == choice["hyperparameters"])
                                  & (scores["split"] == report_split)]
            for n in range(k, len(order) + 1):
                match = same_setting[same_setting["subset"] == named[n - 1]]
                if len(match):
                    rows.append({**choice[RUN].to_dict(), "tuned_on": k, "n_tasks": n,
                                 "hyperparameters": choice["hyperparameters"], "score": float(match["score"].iloc[0])})
    return with_settings(pd.DataFrame(rows, columns=[*RUN, "tuned_on", "n_tasks", "hyperparameters", "score"]))


def _choose_then_report(selection: pd.DataFrame, report: pd.DataFrame, keys: list[str], select_split: str,
                        report_split: str) -> pd.DataFrame:
    """Per group of ``keys``: the setting with the best ``select_split`` score in ``selection``
    (as ``selection_score``) and its ``report_split`` score in ``report`` (as ``score``)."""
    chosen = _argmax(selection[selection["split"] == select_split], keys).rename(columns={"score": "selection_score"})
    reported = report[report["split"] == report_split][[*keys, "hyperparameters", "score"]]
    return with_settings(chosen.drop(columns="split").merge(reported, on=[*keys, "hyperparameters"], how="left"))


def _argmax(scores: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """The row of highest ``score`` per group of ``keys`` (first by hyperparameters on ties)."""
    ordered = scores.sort_values([*keys, "score", "hyperparameters"], ascending=[True] * len(keys) + [False, True],
                                 kind="stable")
    return ordered.drop_duplicates(keys, keep="first").reset_index(drop=True)
