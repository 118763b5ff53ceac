"""The streamed global mask (two histogram passes, then tensor by tensor) is the in-memory one."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from breadcrumbs_lib import TaskVector
from breadcrumbs_lib.core.global_masks import GlobalMasker, locate_global_band


def _streamed_masks(tau: TaskVector, beta: float, gamma: float) -> dict[str, torch.Tensor]:
    ordered = [tau[key] for key in tau if tau[key].dim() > 0]
    masker = GlobalMasker(locate_global_band(iter(ordered), reversed(ordered), beta, gamma))
    return {key: masker.keep(delta) for key, delta in tau.items()}


@st.composite
def task_vectors(draw):
    """A few tensors of coarsely quantised values (many ties, zeros and signed zeros among them),
    some 0-d, spread over several binades."""
    shapes = draw(st.lists(st.sampled_from([(), (1,), (7,), (3, 5), (2, 2, 4), (0,)]), min_size=1, max_size=5))
    levels = draw(st.integers(1, 6))
    seed = draw(st.integers(0, 10_000))
    generator = torch.Generator().manual_seed(seed)
    deltas = {}
    for index, shape in enumerate(shapes):
        values = torch.randint(-levels, levels + 1, shape, generator=generator).float()
        scale = 2.0 ** torch.randint(-30, 30, shape, generator=generator).float()
        deltas[f"t{index}"] = values * (scale if draw(st.booleans()) else 1.0)
    return TaskVector(deltas)


@settings(max_examples=300, deadline=None)
@given(task_vectors(), st.floats(0, 0.95), st.floats(0, 0.5))
def test_the_streamed_global_mask_is_the_in_memory_one(tau, beta, gamma):
    if beta + gamma >= 1:
        beta, gamma = beta / 2, gamma / 2
    want = tau.breadcrumbs_masks(beta, gamma, granularity="global", backend="reference")
    got = _streamed_masks(tau, beta, gamma)
    assert all(torch.equal(got[key], want[key]) for key in tau)


def test_ties_are_split_by_position_across_tensors():
    tau = TaskVector({"a": torch.tensor([1.0, -1.0, 2.0]), "b": torch.tensor([1.0, 2.0, -1.0])})
    masks = _streamed_masks(tau, 0.5, 0.0)  # the three smallest dropped: the first three 1s by position
    assert masks["a"].tolist() == [False, False, True] and masks["b"].tolist() == [False, True, True]
    masks = _streamed_masks(tau, 0.0, 0.34)  # the largest two dropped... of 2, 2: floor(0.34 * 6) = 2
    assert masks["a"].tolist() == [True, True, False] and masks["b"].tolist() == [True, False, True]


def test_a_large_vector_with_many_zeros():
    generator = torch.Generator().manual_seed(0)
    dense = torch.randn(300_000, generator=generator).bfloat16().float()
    dense[::3] = 0.0
    tau = TaskVector({"w": dense[:200_000].reshape(400, 500), "b": dense[200_000:]})
    want = tau.breadcrumbs_masks(0.85, 0.01, granularity="global")
    got = _streamed_masks(tau, 0.85, 0.01)
    assert all(torch.equal(got[key], want[key]) for key in tau)


def test_non_finite_entries_are_named():
    with pytest.raises(ValueError, match=r"shape \(3,\) has 1 non-finite"):
        locate_global_band([torch.tensor([1.0, float("inf"), 0.0])], [], 0.5, 0.0)
