"""Eq. 3, normalized accuracy: one definition that the store, the bootstrap and the tables share."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from breadcrumbs_lib.core.metrics import normalized_accuracy
from breadcrumbs_lib.study.results_store import records_for

shares = st.floats(min_value=0.0, max_value=1.0)


@given(shares, st.floats(min_value=1e-6, max_value=1.0))
def test_a_scalar_is_the_ratio_to_the_finetuned_accuracy(accuracy, finetuned):
    value = normalized_accuracy(accuracy, finetuned)
    assert isinstance(value, float) and math.isclose(value * finetuned, accuracy, rel_tol=1e-12, abs_tol=1e-15)


@given(shares)
def test_nothing_to_normalise_by_gives_nan(accuracy):
    assert math.isnan(normalized_accuracy(accuracy, 0.0))


@given(st.lists(st.tuples(shares, shares), min_size=1, max_size=20))
def test_arrays_agree_with_the_scalar_form_elementwise(pairs):
    accuracy, finetuned = (np.array(column) for column in zip(*pairs))
    values = normalized_accuracy(accuracy, finetuned)
    assert values.shape == accuracy.shape
    for value, a, f in zip(values, accuracy, finetuned):
        expected = normalized_accuracy(a, f)
        assert (math.isnan(value) and math.isnan(expected)) or value == expected


def test_the_store_records_eq_3():
    records = records_for("task_arithmetic", {"alpha": 0.3}, ("a", "b"),
                          {("a", "test"): 0.6, ("b", "test"): 0.4}, {("a", "test"): 0.8})
    by_task = {r.scored_task: r.normalized_accuracy for r in records}
    assert by_task["a"] == normalized_accuracy(0.6, 0.8) == 0.6 / 0.8 and math.isnan(by_task["b"])
