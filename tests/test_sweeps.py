"""The sweep engine end to end on the tiny preset: records, executors, resume after a kill."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from tiny_preset import TINY_TASKS, tiny_context, tiny_sweeps

from breadcrumbs_lib import merge
from breadcrumbs_lib.modeling.evaluation import Evaluator
from breadcrumbs_lib.study.results_store import ResultsStore
from breadcrumbs_lib.study.sweep_units import workbench_for
from breadcrumbs_lib.study.sweeps import (InlineExecutor, Sweep, dask_executor, grid, run_identity, run_selection_sweep,
                                   run_sweep)
from breadcrumbs_lib.study.task_subsets import all_subsets
from breadcrumbs_lib.study.tuning import best_per_subset

TESTS = Path(__file__).resolve().parent
N_SUBSETS = 2 ** len(TINY_TASKS) - 1
N_SPLITS = 2
# fine-tuned (3 x 1 task) + zero-shot + breadcrumbs (4 settings x 7 subsets) + task arithmetic (2 x 7)
N_UNITS = 3 + 1 + 4 * N_SUBSETS + 2 * N_SUBSETS
N_RECORDS = (3 + 3 + 4 * N_SUBSETS * 3 + 2 * N_SUBSETS * 3) * N_SPLITS


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    workbench_for(tiny_context(cache))  # pretrain and fine-tune once for the whole module
    return cache


@pytest.fixture(scope="module")
def reference(cache, tmp_path_factory):
    """The uninterrupted sweep, run in this process."""
    store = ResultsStore(tmp_path_factory.mktemp("reference") / "results.sqlite")
    return run_sweep(tiny_sweeps(), tiny_context(cache), store=store, executor=InlineExecutor(), progress=False)


def test_a_sweep_stores_one_record_per_model_task_and_split(reference):
    assert len(reference) == N_RECORDS
    assert not reference.duplicated(["method", "hyperparameters", "subset", "scored_task", "split"]).any()
    counts = reference.groupby("method")["subset"].nunique()
    assert counts["breadcrumbs"] == counts["task_arithmetic"] == N_SUBSETS and counts["finetuned"] == 3
    assert reference["accuracy"].between(0, 1).all()
    finetuned = reference[(reference["method"] == "finetuned") & (reference["accuracy"] > 0)]
    assert (finetuned["normalized_accuracy"] == 1.0).all()
    assert set(reference["n_tasks"]) == {0, 1, 2, 3} and reference["observed"].any() and not reference["observed"].all()


def test_each_record_is_the_accuracy_of_the_model_merge_returns(cache, reference):
    bench = workbench_for(tiny_context(cache))
    test = Evaluator(bench.classifier(), bench.heads, {t: bench.splits[t]["test"] for t in bench.tasks})
    for method, settings, subset in (("breadcrumbs", {"alpha": 0.6, "beta": 0.8, "gamma": 0.05}, ("signs", "digits")),
                                     ("task_arithmetic", {"alpha": 0.3}, TINY_TASKS)):
        accuracy = test.evaluate(merge(bench.base, [bench.finetuned[t] for t in subset], method, **settings))
        rows = reference[(reference["method"] == method) & (reference["subset"] == "+".join(subset))
                         & (reference["split"] == "test") & (reference["alpha"] == settings["alpha"])]
        if method == "breadcrumbs":
            rows = rows[rows["beta"] == settings["beta"]]
        assert dict(zip(rows["scored_task"], rows["accuracy"])) == accuracy


def test_a_second_run_evaluates_nothing_and_a_lost_record_is_redone(cache, reference, tmp_path):
    store = ResultsStore(tmp_path / "results.sqlite")
    run_sweep(tiny_sweeps(), tiny_context(cache), store=store, executor=InlineExecutor(), progress=False)
    evaluated = []
    run_sweep(tiny_sweeps(), tiny_context(cache), store=store, executor=InlineExecutor(), progress=False,
              on_result=evaluated.append)
    assert evaluated == []
    import sqlite3
    with sqlite3.connect(store.path) as connection:
        connection.execute("DELETE FROM records WHERE method = 'task_arithmetic' AND subset = 'letters' AND split = 'val'")
    again = run_sweep(tiny_sweeps(), tiny_context(cache), store=store, executor=InlineExecutor(), progress=False,
                      on_result=evaluated.append)
    assert [(r.unit.method, r.unit.subset) for r in evaluated] == [("task_arithmetic", ("letters",))] * 2
    pd.testing.assert_frame_equal(again, reference)


def test_a_sweep_returns_only_what_it_asked_for_whatever_the_store_holds(cache, reference, tmp_path):
    store = ResultsStore(tmp_path / "results.sqlite")
    run_sweep(tiny_sweeps(), tiny_context(cache), store=store, executor=InlineExecutor(), progress=False)
    narrow = Sweep("breadcrumbs", grid(alpha=0.6, beta=0.8, gamma=0.05), subsets=[["digits"], ["signs", "letters"]],
                   splits=("val",))
    frame = run_sweep(narrow, tiny_context(cache), store=store, executor=InlineExecutor(), progress=False)
    merged = frame[frame["method"] == "breadcrumbs"]
    assert set(merged["subset"]) == {"digits", "signs+letters"} and set(merged["hyperparameters"]) == {
        '{"alpha": 0.6, "beta": 0.8, "gamma": 0.05}'}
    assert set(frame["split"]) == {"val"} and set(frame["method"]) == {"breadcrumbs", "finetuned", "zeroshot"}
    assert len(merged) == 2 * len(TINY_TASKS)  # scored on every task, one split
    again = run_sweep(tiny_sweeps(), tiny_context(cache), store=store, executor=InlineExecutor(), progress=False)
    pd.testing.assert_frame_equal(again, reference)


def test_a_selection_sweep_chooses_as_the_full_protocol_and_scores_val_on_the_observed_tasks_only(
        cache, reference, tmp_path):
    frame = run_selection_sweep(tiny_sweeps(), tiny_context(cache), store=ResultsStore(tmp_path / "results.sqlite"),
                                executor=InlineExecutor(), progress=False)
    merged = frame[frame["method"].isin(["breadcrumbs", "task_arithmetic"])]
    selecting, reporting = merged[merged["split"] == "val"], merged[merged["split"] == "test"]
    assert selecting["observed"].all() and len(selecting) == (4 + 2) * sum(
        len(s) for s in all_subsets(list(TINY_TASKS)))  # a k-task subset: k scored tasks per setting
    assert reporting.groupby(["method", "subset"])["hyperparameters"].nunique().eq(1).all()
    assert len(reporting) == 2 * N_SUBSETS * len(TINY_TASKS)  # the chosen setting, scored on every task
    full = reference[reference["method"].isin(["breadcrumbs", "task_arithmetic"])]
    for report_scope in ("observed", "all"):  # Fig. 2b and Fig. 2a
        expected = best_per_subset(full, report_scope=report_scope)
        chosen = best_per_subset(merged, report_scope=report_scope)
        pd.testing.assert_frame_equal(chosen[expected.columns], expected)


def test_local_processes_give_the_same_table(cache, reference, tmp_path):
    frame = run_sweep(tiny_sweeps(), tiny_context(cache), store=tmp_path / "results.sqlite", workers=2, progress=False)
    pd.testing.assert_frame_equal(frame, reference)


def test_dask_in_local_mode_writes_the_same_table_into_the_store(cache, reference, tmp_path):
    pytest.importorskip("distributed")
    store = ResultsStore(tmp_path / "results.sqlite")
    with dask_executor(n_workers=2) as executor:
        frame = run_sweep(tiny_sweeps(), tiny_context(cache), store=store, executor=executor, progress=False)
    pd.testing.assert_frame_equal(frame, reference)
    assert store.timings()["worker"].nunique() >= 1


def test_killed_in_the_middle_then_resumed_equals_an_uninterrupted_run(cache, reference, tmp_path):
    store_path = tmp_path / "results.sqlite"
    command = [sys.executable, str(TESTS / "run_tiny_sweep.py"), str(cache), str(store_path), "--executor", "inline"]
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    killed = subprocess.run([*command, "--kill-after", "12"], env=environment, capture_output=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
    partial = ResultsStore(store_path).frame()
    assert 0 < len(partial) < N_RECORDS  # interrupted in the middle, what was committed is there
    resumed = subprocess.run(command, env=environment, capture_output=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr.decode()[-2000:]
    store = ResultsStore(store_path)
    pd.testing.assert_frame_equal(store.frame(), reference)
    assert len(store.timings()) < N_UNITS + 12  # only what was lost in flight was done twice


POOL_SCRIPT = """
import os, signal, sys
from breadcrumbs_lib.study.executors import local_processes
if __name__ == "__main__":
    pool = local_processes(1)
    print(pool.submit(os.getpid).result(), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_pool_workers_exit_when_the_sweep_process_is_killed(tmp_path):
    script = tmp_path / "pool.py"
    script.write_text(POOL_SCRIPT)
    with open(tmp_path / "out.txt", "w") as out:  # a file, not a pipe: an orphan must not hang the test
        killed = subprocess.run([sys.executable, str(script)], stdout=out, timeout=120)
    assert killed.returncode == -signal.SIGKILL
    worker = int((tmp_path / "out.txt").read_text().split()[0])
    for _ in range(100):
        if not Path(f"/proc/{worker}").exists() or "Z" in Path(f"/proc/{worker}/stat").read_text().split()[2]:
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"pool worker {worker} outlived the killed sweep process")


def test_results_of_other_checkpoints_are_kept_apart(cache):
    context = tiny_context(cache)
    bench = workbench_for(context)
    changed = {**bench.finetuned, "signs": {k: v.clone() for k, v in bench.finetuned["signs"].items()}}
    changed["signs"]["conv1.weight"][0, 0, 0, 0] += 1e-3
    other = type(bench)(**{**bench.__dict__, "finetuned": changed})
    assert run_identity(context, other).run_id != run_identity(context, bench).run_id
    assert torch.equal(bench.finetuned["signs"]["conv1.weight"], workbench_for(context).finetuned["signs"]["conv1.weight"])


@pytest.mark.parametrize("sweep, message", [
    (Sweep("regmean"), "unknown merge method"),
    (Sweep("breadcrumbs", grid(alpha=0.3, beta=1.2, gamma=0.0)), "beta must lie in"),
    (Sweep("task_arithmetic", grid(alpha=0.3), splits=("val", "holdout")), "unknown split"),
    (Sweep("task_arithmetic", grid(alpha=0.3), subsets=[["signs", "mnist"]]), "unknown task"),
    (Sweep("task_arithmetic", grid(alpha=0.3), score="some"), "score must be"),
    (Sweep("task_arithmetic", []), "grid .* is empty"),
])
def test_bad_sweeps_fail_before_any_work(cache, tmp_path, sweep, message):
    store = ResultsStore(tmp_path / "results.sqlite")
    with pytest.raises(ValueError, match=message):
        run_sweep(sweep, tiny_context(cache), store=store, executor=InlineExecutor(), progress=False)
    assert len(store.frame()) == 0


def test_a_bad_sweep_fails_before_the_workbench_is_built(tmp_path):
    empty_cache = tmp_path / "cache"
    with pytest.raises(ValueError, match="beta must lie in"):
        run_sweep(Sweep("breadcrumbs", grid(alpha=0.3, beta=1.2, gamma=0.0)), tiny_context(empty_cache),
                  store=tmp_path / "results.sqlite", executor=InlineExecutor(), progress=False)
    assert not empty_cache.exists()  # nothing pretrained, fine-tuned or cached


def test_the_default_worker_count_follows_from_the_memory_available(monkeypatch):
    """Each worker holds the models (base, 8 fine-tuned, 3 more copies) and its cache of task
    vectors: the count is what fits in 80% of the memory available, at most one per core."""
    from types import SimpleNamespace

    from breadcrumbs_lib.study import executors

    base = {"w": torch.zeros(1 << 20)}  # 4 MiB
    bench = SimpleNamespace(device=torch.device("cpu"), base=base, finetuned={f"t{i}": base for i in range(8)}, fishers={})
    context = SimpleNamespace(cache_bytes=8 << 20)
    per_worker = (1 + 8 + 3) * (4 << 20) + (8 << 20)  # 56 MiB
    monkeypatch.setattr(executors.os, "cpu_count", lambda: 64)
    assert executors.default_workers(bench, context, available=int(10 * per_worker / 0.8)) == 10
    assert executors.default_workers(bench, context, available=per_worker // 2) == 1  # at least one
    assert executors.default_workers(bench, context, available=1 << 50) == 64  # at most one per core
    bench.fishers = dict(bench.finetuned)  # Fisher merging's inputs are held too
    assert executors.default_workers(bench, context, available=int(10 * per_worker / 0.8)) == 6
    bench.device = torch.device("cuda")
    assert executors.default_workers(bench, context, available=1 << 50) == 1  # one GPU, one worker


@pytest.mark.parametrize("cores, workers, threads", [(2, None, 1), (2, 1, 2), (8, 3, 2), (2, 4, 1), (None, None, 1)])
def test_threads_per_worker_shares_the_cores(monkeypatch, cores, workers, threads):
    """Local workers together use each core once (default: one single-threaded worker per core);
    more workers than cores still get one thread each."""
    from breadcrumbs_lib.study import executors

    monkeypatch.setattr(executors.os, "cpu_count", lambda: cores)
    assert executors.threads_per_worker(workers) == threads


def test_checkpoint_digests_are_computed_once_per_workbench_object(monkeypatch):
    """Every sweep of a notebook identifies its run by the checkpoints' digests: they are hashed
    once for a workbench object, again for another object (even with equal weights), and the
    caller's copy of the digests cannot change the memo."""
    from types import SimpleNamespace

    from breadcrumbs_lib.study import run_identity as identity

    hashed = []
    monkeypatch.setattr(identity, "state_dict_digest", lambda state: hashed.append(state) or f"d{len(hashed)}")
    identity._digests.cache_clear()
    weights = {"w": torch.zeros(2)}
    bench = SimpleNamespace(base=weights, finetuned={"a": weights, "b": weights})
    base, finetuned = identity.checkpoint_digests(bench)
    assert (base, finetuned) == ("d1", {"a": "d2", "b": "d3"})
    finetuned["a"] = "changed"
    assert identity.checkpoint_digests(bench) == ("d1", {"a": "d2", "b": "d3"}) and len(hashed) == 3
    other = SimpleNamespace(base=weights, finetuned={"a": weights, "b": weights})
    assert identity.checkpoint_digests(other) == ("d4", {"a": "d5", "b": "d6"})
    identity._digests.cache_clear()
