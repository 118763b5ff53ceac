"""Subsets and the incremental subset merger: every merged model is exactly merge()'s."""

from __future__ import annotations

import random

import pytest
import torch
from helpers import finetune_of, small_model
from hypothesis import given
from hypothesis import strategies as st

from breadcrumbs_lib import merge
from breadcrumbs_lib.study.subset_merging import SubsetMerger
from breadcrumbs_lib.study.task_subsets import (
    all_subsets,
    canonical,
    pairs,
    parse_subset_name,
    prefixes,
    sample_by_size,
    subset_name,
)

TASKS = ["a", "b", "c", "d"]


@given(st.integers(1, 7))
def test_all_subsets_lists_each_nonempty_subset_once_parents_first(n_tasks):
    tasks = [f"t{i}" for i in range(n_tasks)]
    subsets = all_subsets(tasks)
    assert len(subsets) == len(set(subsets)) == 2**n_tasks - 1
    seen = set()
    for subset in subsets:
        assert subset == canonical(subset, tasks)
        assert len(subset) == 1 or subset[:-1] in seen  # the parent came earlier
        seen.add(subset)
    index = {task: i for i, task in enumerate(tasks)}
    assert subsets == sorted(subsets, key=lambda s: [index[t] for t in s])  # depth-first = lexicographic


def test_subset_helpers():
    assert all_subsets(TASKS, sizes=[2]) == pairs(TASKS) and len(pairs(TASKS)) == 6
    assert prefixes(TASKS) == [("a",), ("a", "b"), ("a", "b", "c"), ("a", "b", "c", "d")]
    assert canonical(["c", "a"], TASKS) == ("a", "c")
    assert parse_subset_name(subset_name(("a", "c"))) == ("a", "c") and parse_subset_name("") == ()
    for bad, message in ((["x"], "unknown task"), (["a", "a"], "twice"), ([], "at least one")):
        with pytest.raises(ValueError, match=message):
            canonical(bad, TASKS)
    with pytest.raises(ValueError, match="unique"):
        all_subsets(["a", "a"])


@given(st.integers(1, 7), st.integers(1, 40), st.integers(0, 3))
def test_sample_by_size_keeps_at_most_per_size_of_each_size_reproducibly(n_tasks, per_size, seed):
    tasks = [f"t{i}" for i in range(n_tasks)]
    sample = sample_by_size(tasks, per_size, seed)
    assert sample == sample_by_size(tasks, per_size, seed)  # same seed, same sample
    assert sample == [subset for subset in all_subsets(tasks) if subset in set(sample)]  # prefix order, distinct
    for size in range(1, n_tasks + 1):
        available = len(all_subsets(tasks, sizes=[size]))
        assert sum(len(subset) == size for subset in sample) == min(per_size, available)


def test_sample_by_size_none_is_everything_and_bad_sizes_fail():
    assert sample_by_size(TASKS, None) == all_subsets(TASKS)
    eight = [f"t{i}" for i in range(8)]
    assert len({tuple(sample_by_size(eight, 3, seed)) for seed in range(4)}) > 1  # the seed matters
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="per_size"):
            sample_by_size(TASKS, bad)


SETTINGS = [
    ("task_arithmetic", {"alpha": 0.37}),
    ("average", {}),
    ("breadcrumbs", {"alpha": 0.5, "beta": 0.3, "gamma": 0.1}),
    ("breadcrumbs", {"alpha": 0.5, "beta": 0.3, "gamma": 0.1, "granularity": "row"}),
    ("breadcrumbs", {"alpha": 1.0, "beta": 0.5, "gamma": 0.0, "granularity": "global"}),
    ("ties", {"alpha": 0.8, "density": 0.4}),
    ("breadcrumbs_ties", {"alpha": 0.8, "beta": 0.5, "gamma": 0.05}),
    ("dare", {"alpha": 0.5, "p": 0.3, "seed": 3}),
    ("breadcrumbs", {"alpha": 0.5, "beta": 0.3, "gamma": 0.1, "exclude": ["*.bias"]}),
]


@pytest.mark.parametrize("seed", [0, 1])
def test_merged_weights_equal_merge_bit_for_bit_in_any_order(seed):
    base = small_model(0)
    finetuned = {task: finetune_of(base, 10 + i) for i, task in enumerate(TASKS)}
    merger = SubsetMerger(base, finetuned)
    units = [(subset, method, settings) for subset in all_subsets(TASKS) for method, settings in SETTINGS]
    random.Random(seed).shuffle(units)  # the worst order for the prefix stack: still exact
    for subset, method, settings in units:
        expected = merge(base, [finetuned[task] for task in subset], method, **settings)
        got = merger.merged(subset, method, settings)
        assert got.keys() == expected.keys()
        for key in expected:
            assert got[key].dtype == expected[key].dtype
            assert torch.equal(got[key], expected[key]), (subset, method, settings, key)


def test_each_masked_vector_is_computed_once_and_sums_take_one_addition():
    base = small_model(0)
    finetuned = {task: finetune_of(base, 10 + i) for i, task in enumerate(TASKS)}
    merger = SubsetMerger(base, finetuned)
    for beta in (0.2, 0.6):
        for subset in all_subsets(TASKS):
            for alpha in (0.1, 0.5, 1.0):
                merger.merged(subset, "breadcrumbs", {"alpha": alpha, "beta": beta, "gamma": 0.1})
    assert merger.computed == len(TASKS) * (1 + 2)  # tau_t once, then m_t * tau_t per beta


def test_the_cache_is_bounded_in_bytes():
    base = small_model(0)
    finetuned = {task: finetune_of(base, 10 + i) for i, task in enumerate(TASKS)}
    vector_bytes = sum(v.numel() * 4 for v in base.values() if v.is_floating_point())
    merger = SubsetMerger(base, finetuned, cache_bytes=2 * vector_bytes)
    for task in TASKS:
        merger.merged((task,), "task_arithmetic", {"alpha": 1.0})
    assert merger.cached_bytes <= 2 * vector_bytes and merger.cached_vectors == 2


def test_bad_requests_name_the_problem():
    base = small_model(0)
    merger = SubsetMerger(base, {"a": finetune_of(base, 1)})
    with pytest.raises(ValueError, match="no fine-tuned model"):
        merger.merged(("a", "z"), "task_arithmetic", {"alpha": 0.5})
    with pytest.raises(ValueError, match="beta must lie in"):
        merger.merged(("a",), "breadcrumbs", {"alpha": 0.5, "beta": 1.5, "gamma": 0.0})
    with pytest.raises(ValueError, match="unknown merge method"):
        merger.merged(("a",), "regmean", {})
