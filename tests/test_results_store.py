"""The SQLite results store: round trips, canonical keys, no duplicates, concurrent writers."""

from __future__ import annotations

import math
import multiprocessing
import sqlite3

import pytest

from breadcrumbs_lib.study.results_store import (
    Record,
    ResultsStore,
    RunIdentity,
    default_store_path,
    hyperparameters_key,
    records_for,
)

IDENTITY = RunIdentity("tiny", "B-32", 0, "0.1.0", "abc", "base", {"a": "1", "b": "2"})


def test_run_id_changes_with_any_checkpoint_seed_or_version():
    other_checkpoint = RunIdentity("tiny", "B-32", 0, "0.1.0", "abc", "base", {"a": "1", "b": "3"})
    other_seed = RunIdentity("tiny", "B-32", 1, "0.1.0", "abc", "base", {"a": "1", "b": "2"})
    other_version = RunIdentity("tiny", "B-32", 0, "0.2.0", "abc", "base", {"a": "1", "b": "2"})
    reordered = RunIdentity("tiny", "B-32", 0, "0.1.0", "abc", "base", {"b": "2", "a": "1"})
    ids = {identity.run_id for identity in (IDENTITY, other_checkpoint, other_seed, other_version)}
    assert len(ids) == 4 and reordered.run_id == IDENTITY.run_id


def test_hyperparameter_keys_are_canonical():
    assert hyperparameters_key({"beta": 0.85, "alpha": 1}) == hyperparameters_key({"alpha": 1.0, "beta": 0.85})
    assert hyperparameters_key({"seed": 3, "p": 0}) == '{"p": 0.0, "seed": 3}'
    assert hyperparameters_key({"granularity": "row"}) == '{"granularity": "row"}'


def test_records_round_trip_with_normalisation_and_tidy_columns(tmp_path):
    store = ResultsStore(tmp_path / "r.sqlite")
    run_id = store.register_run(IDENTITY)
    assert store.register_run(IDENTITY) == run_id and len(store.runs()) == 1
    records = records_for("breadcrumbs", {"alpha": 0.5, "beta": 0.8, "gamma": 0.1}, ("a",),
                          {("a", "test"): 0.6, ("b", "test"): 0.2}, {("a", "test"): 0.8, ("b", "test"): 0.0})
    store.write(run_id, records, merge_seconds=0.1, eval_seconds=0.2)
    frame = store.frame(run_id)
    assert list(frame["scored_task"]) == ["a", "b"]
    assert frame["normalized_accuracy"].iloc[0] == pytest.approx(0.75)
    assert math.isnan(frame["normalized_accuracy"].iloc[1])  # fine-tuned accuracy 0: undefined
    assert list(frame["observed"]) == [True, False] and set(frame["n_tasks"]) == {1}
    assert list(frame["alpha"]) == [0.5, 0.5] and list(frame["beta"]) == [0.8, 0.8]
    assert store.timings(run_id)[["merge_seconds", "eval_seconds"]].values.tolist() == [[0.1, 0.2]]
    store.write(run_id, records)  # the same records again: ignored, not duplicated
    assert len(store.frame()) == 2
    assert store.stored_keys(run_id) == {(r.method, r.hyperparameters, r.subset, r.scored_task, r.split) for r in records}


def test_a_hyperparameter_named_like_a_column_does_not_overwrite_it(tmp_path):
    store = ResultsStore(tmp_path / "r.sqlite")
    run_id = store.register_run(IDENTITY)
    store.write(run_id, records_for("dare", {"alpha": 0.5, "p": 0.3, "seed": 7}, ("a",), {("a", "test"): 0.5},
                                    {("a", "test"): 1.0}))
    frame = store.frame(run_id)
    assert frame["seed"].tolist() == [IDENTITY.seed] and frame["param_seed"].tolist() == [7]


def test_a_bad_accuracy_is_refused_and_nothing_is_written(tmp_path):
    store = ResultsStore(tmp_path / "r.sqlite")
    run_id = store.register_run(IDENTITY)
    good = Record("average", "{}", "a", "a", "test", 0.5, 1.0)
    with pytest.raises(ValueError, match="accuracy must lie in"):
        store.write(run_id, [good, Record("average", "{}", "a", "b", "test", 1.5, 1.0)])
    assert len(store.frame()) == 0


def test_default_path_is_under_outputs_per_preset():
    path = default_store_path("mini")
    assert path.parts[-3:] == ("outputs", "mini", "results.sqlite")


def _write_many(path, run_id, writer, count):
    store = ResultsStore(path)
    for index in range(count):
        records = [Record("average", "{}", f"s{index}", task, "test", 0.5, 1.0) for task in ("a", "b", "c")]
        store.write(run_id, records, worker=f"writer-{writer}")


def test_two_processes_writing_at_once_neither_corrupt_nor_duplicate(tmp_path):
    path = tmp_path / "r.sqlite"
    run_id = ResultsStore(path).register_run(IDENTITY)
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_write_many, args=(path, run_id, w, 60)) for w in range(2)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=120)
        assert writer.exitcode == 0
    store = ResultsStore(path)
    assert len(store.frame(run_id)) == 60 * 3  # both wrote the same records: each kept once
    assert len(store.timings(run_id)) == 2 * 60
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
