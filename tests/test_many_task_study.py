"""The many-task sequence study on the tiny world: settings chosen on the validation splits of the
first tasks only, then the prefixes scored on test with those settings."""

from __future__ import annotations

import pytest
from tiny_preset import TINY_TASKS, tiny_context

from breadcrumbs_lib.study.many_task_study import SequenceGrids, sequence_curves
from breadcrumbs_lib.study.results_store import ResultsStore
from breadcrumbs_lib.study.sweeps import InlineExecutor, Sweep, grid, run_sweep
from breadcrumbs_lib.study.tuning import subset_scores

GRIDS = SequenceGrids(tuned_on=2, alphas=(0.2, 0.8), betas=(0.5, 0.9), gammas=(0.0,))


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sequence")
    context, store = tiny_context(folder / "cache"), ResultsStore(folder / "results.sqlite")
    curves = sequence_curves(context, store=store, grids=GRIDS, executor=InlineExecutor(), progress=False)
    return context, store, curves


def test_both_methods_are_scored_at_every_prefix_with_one_setting(study):
    _, _, curves = study
    assert sorted(curves["method"].unique()) == ["breadcrumbs", "task_arithmetic"]
    assert (curves.groupby("method")["n_tasks"].apply(list) == [[1, 2, 3]] * 2).all()
    assert (curves.groupby("method")["hyperparameters"].nunique() == 1).all()
    assert {"alpha", "beta", "gamma"} <= set(curves.columns)


def test_the_setting_is_the_best_on_the_first_tasks_validation_splits(study):
    context, store, curves = study
    first = [tuple(TINY_TASKS[:2])]
    frame = run_sweep([Sweep("task_arithmetic", grid(alpha=[0.2, 0.8]), first, ("val",), "observed"),
                       Sweep("breadcrumbs", grid(alpha=[0.2, 0.8], beta=[0.5, 0.9], gamma=0.0), first, ("val",),
                             "observed")], context, store=store, executor=InlineExecutor(), progress=False)
    val = subset_scores(frame[frame["method"].isin(["task_arithmetic", "breadcrumbs"])])
    for method, rows in val.groupby("method"):
        chosen = curves.loc[curves["method"] == method, "hyperparameters"].iloc[0]
        assert rows.loc[rows["hyperparameters"] == chosen, "score"].iloc[0] == rows["score"].max()


def test_each_point_is_the_mean_normalized_test_accuracy_of_its_prefix(study):
    context, store, curves = study
    for row in curves.itertuples():
        prefix = [tuple(TINY_TASKS[:row.n_tasks])]
        setting = {k: v for k, v in (("alpha", row.alpha), ("beta", row.beta), ("gamma", row.gamma)) if v == v}
        frame = run_sweep(Sweep(row.method, [setting], prefix, ("test",), "observed"), context, store=store,
                          executor=InlineExecutor(), progress=False)
        merged = frame[(frame["method"] == row.method) & (frame["split"] == "test")]
        assert sorted(merged["scored_task"]) == sorted(TINY_TASKS[:row.n_tasks])
        assert merged["normalized_accuracy"].mean() == pytest.approx(row.score)


def test_a_tuning_prefix_longer_than_the_sequence_is_refused(study):
    context, store, _ = study
    with pytest.raises(ValueError, match=r"tuned_on must lie in \[1, 3\]"):
        sequence_curves(context, store=store, grids=SequenceGrids(tuned_on=4), executor=InlineExecutor())
