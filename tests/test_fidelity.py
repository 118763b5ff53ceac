"""The fidelity diagnostics: retention of one breadcrumb, the paired bootstrap, the claims table."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from breadcrumbs_lib.study import fidelity
from breadcrumbs_lib.core.task_vectors import TaskVector

# per test image: (first model right, second model right)
paired_outcomes = st.lists(st.tuples(st.booleans(), st.booleans()), min_size=5, max_size=40)


@given(paired_outcomes)
def test_bootstrap_interval_brackets_the_observed_gap_and_flips_with_the_order(pairs):
    first, second = ({"t": torch.tensor(column)} for column in zip(*pairs))
    finetuned = {"t": torch.ones(len(pairs), dtype=torch.bool)}
    forward = fidelity.paired_bootstrap(first, second, finetuned, resamples=300, seed=1)
    backward = fidelity.paired_bootstrap(second, first, finetuned, resamples=300, seed=1)
    observed = (first["t"].float().mean() - second["t"].float().mean()).item()
    assert forward.difference == pytest.approx(observed)
    assert forward.low - 1e-9 <= forward.difference <= forward.high + 1e-9 or forward.low == forward.high
    assert backward.difference == pytest.approx(-forward.difference)
    assert backward.low == pytest.approx(-forward.high) and backward.high == pytest.approx(-forward.low)


def test_identical_models_have_a_zero_width_interval():
    same = {"a": torch.tensor([True, False, True, True]), "b": torch.tensor([False, True, True, False])}
    interval = fidelity.paired_bootstrap(same, same, {k: torch.ones(4, dtype=torch.bool) for k in same})
    assert interval.difference == interval.low == interval.high == 0.0


def test_bootstrap_width_shrinks_with_more_images():
    generator = torch.Generator().manual_seed(0)

    def width(n):
        a = {"t": torch.rand(n, generator=generator) < 0.8}
        b = {"t": torch.rand(n, generator=generator) < 0.7}
        return fidelity.paired_bootstrap(a, b, {"t": torch.ones(n, dtype=torch.bool)}, resamples=1000).half_width

    assert width(4000) < width(250) / 2


def test_bootstrap_names_mismatched_inputs():
    a = {"t": torch.ones(3, dtype=torch.bool)}
    with pytest.raises(ValueError, match="second covers tasks"):
        fidelity.paired_bootstrap(a, {"u": torch.ones(3, dtype=torch.bool)}, a)
    with pytest.raises(ValueError, match="task 't'"):
        fidelity.paired_bootstrap(a, {"t": torch.ones(4, dtype=torch.bool)}, a)


def test_relative_norms_are_norm_ratios():
    base = {"w": torch.full((4,), 2.0), "step": torch.tensor(3)}
    vector = TaskVector({"w": torch.tensor([1.0, 0.0, 0.0, 0.0])})
    assert fidelity.relative_norms(base, {"t": vector})["t"] == pytest.approx(1 / 4)


def test_claims_table_checks_each_claim_and_skips_unmeasured_ones():
    measured = {"retention": 0.97, "gap_tuned": 0.02, "zero_shot": 0.5, "chance": 0.1, "finetuned": 0.92,
                "task_arithmetic": math.nan}
    table = fidelity.claims_table(measured).set_index("claim")
    assert len(table) == 4  # retention, gap_tuned, zero-shot, fine-tuned; task arithmetic is missing
    holds = dict(zip(table.index, table["holds"]))
    assert holds["one 85% breadcrumb alone keeps >= 95% of its task"]
    assert not holds["8 tasks: Breadcrumbs (tuned on val) - task arithmetic >= 3 points"]
    assert table.loc["8 tasks: Breadcrumbs (tuned on val) - task arithmetic >= 3 points", "this run"] == "+2.0"
    low_zero_shot = fidelity.claims_table({**measured, "zero_shot": 0.15}).set_index("claim")["holds"]
    assert not low_zero_shot["zero-shot mean in [2 x chance, 70%]"]


def test_claims_over_seeds_separate_every_seed_from_the_mean():
    per_seed = pd.DataFrame({"retention": [0.97, 0.94, 0.99], "gap_tuned": [0.05, 0.04, 0.06],
                             "task_arithmetic": [0.8, math.nan, 0.8]}, index=[0, 1, 2])
    table = fidelity.claims_over_seeds(per_seed).set_index("claim")
    assert len(table) == 2  # task arithmetic is missing on seed 1
    retention = table.loc["one 85% breadcrumb alone keeps >= 95% of its task"]
    assert not retention["holds (every seed)"] and retention["holds (mean)"]  # seed 1 fails, the mean holds
    assert retention["mean"] == "96.7" and retention["per seed"] == "97.0 / 94.0 / 99.0" and retention["spread (sd)"] == "2.5"
    gap = table.loc["8 tasks: Breadcrumbs (tuned on val) - task arithmetic >= 3 points"]
    assert gap["holds (every seed)"] and gap["mean"] == "+5.0" and gap["spread (sd)"] == "1.0"
