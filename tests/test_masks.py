"""Breadcrumbs masks: exact counts, the middle band of |delta|, tie-breaking, granularities, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from breadcrumbs_lib import breadcrumbs_mask, reference_breadcrumbs_mask
from breadcrumbs_lib.core._accel import selection
from breadcrumbs_lib.core.masks import breadcrumbs_masked


@st.composite
def fractions(draw):
    beta = draw(st.floats(0.0, 0.95))
    gamma = draw(st.floats(0.0, 0.999 - beta))
    return beta, gamma


@st.composite
def deltas(draw, max_side: int = 40):
    """Float tensors of 1-3 dims, often with many exact ties (small-integer or ulp-grid values)."""
    shape = draw(st.lists(st.integers(1, max_side), min_size=1, max_size=3).filter(lambda s: math.prod(s) <= 3000))
    seed = draw(st.integers(0, 2**31 - 1))
    kind = draw(st.sampled_from(["normal", "integers", "ulp_grid", "constant"]))
    generator = torch.Generator().manual_seed(seed)
    if kind == "normal":
        return torch.randn(shape, generator=generator)
    if kind == "integers":
        return torch.randint(-3, 4, shape, generator=generator).float()
    if kind == "ulp_grid":  # what fine-tuning produces: differences of nearby float32 weights
        weights = torch.randn(shape, generator=generator) * 0.02
        return (weights + 1e-6 * torch.randn(shape, generator=generator)) - weights
    return torch.full(shape, 0.5)


@given(deltas(), fractions())
def test_tensor_mask_is_the_middle_band_by_rank(delta, fracs):
    beta, gamma = fracs
    mask = breadcrumbs_mask(delta, beta, gamma)
    assert mask.dtype == torch.bool and mask.shape == delta.shape
    assert torch.equal(mask, reference_breadcrumbs_mask(delta, beta, gamma))


@given(deltas(max_side=12), fractions(), st.sampled_from(["tensor", "row"]))
def test_the_reference_mask_is_the_definition_by_pairwise_ranks(delta, fracs, granularity):
    """An entry's rank is how many entries of its group precede it: smaller |x|, or equal |x|
    and a lower index. The kept ones have ranks in [floor(beta n), n - floor(gamma n))."""
    beta, gamma = fracs
    groups = delta.abs().reshape(1, -1) if granularity == "tensor" else delta.abs().reshape(-1, delta.shape[-1])
    n = groups.shape[1]
    index = torch.arange(n)
    before = (groups[:, None, :] < groups[:, :, None]) | ((groups[:, None, :] == groups[:, :, None])
                                                          & (index[None, :] < index[:, None]))
    rank = before.sum(dim=2)
    expected = (rank >= math.floor(beta * n)) & (rank < n - math.floor(gamma * n))
    assert torch.equal(reference_breadcrumbs_mask(delta, beta, gamma, granularity), expected.reshape(delta.shape))


@given(deltas(), fractions(), st.sampled_from(["tensor", "row"]))
def test_both_backends_give_the_same_mask(delta, fracs, granularity):
    beta, gamma = fracs
    assert torch.equal(breadcrumbs_mask(delta, beta, gamma, granularity, backend="reference"),
                       breadcrumbs_mask(delta, beta, gamma, granularity, backend="fast"))


def test_both_backends_order_float64_deltas_in_float32():
    # 1 + 1e-12 and 1 are one float32 value: a tie, broken by position (the earlier is smaller).
    delta = torch.tensor([1.0 + 1e-12, 1.0, 0.5, 2.0], dtype=torch.float64)
    expected = torch.tensor([False, True, False, True])
    for backend in ("reference", "fast"):
        assert torch.equal(breadcrumbs_mask(delta, 0.5, 0.0, backend=backend), expected)


def test_an_unknown_backend_and_non_finite_values_are_refused_by_both_backends():
    with pytest.raises(ValueError, match="unknown backend 'gpu'"):
        breadcrumbs_mask(torch.ones(3), 0.5, 0.0, backend="gpu")
    for backend in ("reference", "fast"):
        with pytest.raises(ValueError, match=r"delta of shape \(3,\) has 1 non-finite entries"):
            breadcrumbs_mask(torch.tensor([1.0, float("nan"), 2.0]), 0.5, 0.0, backend=backend)


@given(deltas(), fractions())
def test_kept_count_is_exact(delta, fracs):
    beta, gamma = fracs
    n = delta.numel()
    kept = int(breadcrumbs_mask(delta, beta, gamma).sum())
    assert kept == n - math.floor(beta * n) - math.floor(gamma * n)


@given(deltas(), fractions())
def test_kept_entries_are_the_middle_of_the_magnitudes(delta, fracs):
    beta, gamma = fracs
    mask = breadcrumbs_mask(delta, beta, gamma)
    magnitudes = delta.abs()
    kept, dropped = magnitudes[mask], magnitudes[~mask]
    assert bool(((dropped <= kept.min()) | (dropped >= kept.max())).all())


@given(deltas(), fractions(), fractions())
def test_more_masking_never_keeps_what_less_masking_dropped(delta, first, second):
    beta_small, beta_large = sorted([first[0], second[0]])
    gamma_small, gamma_large = sorted([first[1], second[1]])
    if beta_large + gamma_large >= 1:
        return
    loose = breadcrumbs_mask(delta, beta_small, gamma_small)
    strict = breadcrumbs_mask(delta, beta_large, gamma_large)
    assert not bool((strict & ~loose).any())


@given(deltas(), fractions())
def test_row_granularity_masks_each_last_dim_slice(delta, fracs):
    beta, gamma = fracs
    mask = breadcrumbs_mask(delta, beta, gamma, granularity="row")
    assert torch.equal(mask, reference_breadcrumbs_mask(delta, beta, gamma, "row"))
    m = delta.shape[-1]
    expected_per_row = m - math.floor(beta * m) - math.floor(gamma * m)
    assert torch.all(mask.reshape(-1, m).sum(dim=1) == expected_per_row)


@given(deltas(max_side=20), fractions(), st.sampled_from([torch.float16, torch.bfloat16]))
def test_half_precision_is_ordered_exactly(delta, fracs, dtype):
    beta, gamma = fracs
    low = delta.to(dtype)
    expected = reference_breadcrumbs_mask(low.float(), beta, gamma)
    assert torch.equal(breadcrumbs_mask(low, beta, gamma), expected)
    assert torch.equal(breadcrumbs_masked(low, beta, gamma), low.float() * expected)


@given(deltas(), fractions(), st.sampled_from(["auto", "fast", "reference"]))
def test_masked_equals_mask_times_delta(delta, fracs, backend):
    beta, gamma = fracs
    expected = delta * reference_breadcrumbs_mask(delta, beta, gamma)
    assert torch.equal(breadcrumbs_masked(delta, beta, gamma, backend=backend), expected)
    in_place = delta.clone()
    assert breadcrumbs_masked(in_place, beta, gamma, inplace=True, backend=backend) is in_place
    assert torch.equal(in_place, expected)


@pytest.mark.parametrize("kind", ["normal", "ties"])
@pytest.mark.parametrize("beta, gamma", [(0.85, 0.01), (0.5, 0.3), (0.0, 0.1), (0.9, 0.0), (0.0, 0.0)])
def test_large_groups_use_the_sampled_path_exactly(kind, beta, gamma):
    generator = torch.Generator().manual_seed(1)
    n = 300_000  # above the size that is partitioned whole
    if kind == "normal":
        delta = torch.randn(n, generator=generator)
    else:
        delta = torch.randint(-50, 50, (n,), generator=generator).float()
    assert torch.equal(breadcrumbs_mask(delta, beta, gamma), reference_breadcrumbs_mask(delta, beta, gamma))


@pytest.mark.parametrize("misses", ["first bracket", "both brackets"])
def test_a_missed_bracket_falls_back_to_exact_selection(monkeypatch, misses):
    """A bracket that holds no cut (as if the sample had been wildly unrepresentative) is drawn
    again wider; if that misses as well, the whole group is partitioned. Exact either way."""
    real_windows, calls = selection._windows, []

    def windows(bits, ranks, sigmas, chunks):
        calls.append(sigmas)
        if misses == "both brackets" or sigmas == selection._BRACKET_SIGMAS:
            return selection.cpu_kernels.EMPTY_WINDOW * 2
        return real_windows(bits, ranks, sigmas, chunks)

    monkeypatch.setattr(selection, "_windows", windows)
    delta = torch.randn(200_000, generator=torch.Generator().manual_seed(2))
    assert torch.equal(breadcrumbs_mask(delta, 0.7, 0.05), reference_breadcrumbs_mask(delta, 0.7, 0.05))
    assert calls == [selection._BRACKET_SIGMAS] + [selection._WIDE_BRACKET_SIGMAS] * 2  # one retry per cut


@given(deltas(), fractions())
def test_torch_path_matches_the_cpu_kernels(delta, fracs):
    """The device-independent torch path (used on GPUs and for rows) agrees with the numba path."""
    beta, gamma = fracs
    values = delta.reshape(1, -1).float()
    m = values.shape[1]
    n_low, n_high = math.floor(beta * m), math.floor(gamma * m)
    ranks = (n_low if n_low else None, m - n_high + 1 if n_high else None)
    low, high = (None if k is None else selection._cuts_torch(values, k) for k in ranks)
    band = selection.RankBand(m, n_low, n_high, low, high)
    if band.is_open_interval:
        lo, hi = band.bounds()
        torch_mask = (values.abs() > lo[:, None]) & (values.abs() < hi[:, None])
    else:
        torch_mask = selection._mask_splitting_ties(values.abs(), band)
    cpu_mask = selection.band_mask(values, selection.find_band(values, n_low, n_high))
    assert torch.equal(torch_mask, cpu_mask)


def test_tensor_over_2_pow_24_entries():
    n = (1 << 24) + 1001
    delta = torch.randn(n, generator=torch.Generator().manual_seed(3))
    beta, gamma = 0.85, 0.01
    mask = breadcrumbs_mask(delta, beta, gamma)
    assert int(mask.sum()) == n - math.floor(beta * n) - math.floor(gamma * n)
    magnitudes = delta.abs()
    kept = magnitudes[mask]
    dropped = magnitudes[~mask]
    lo, hi = float(kept.min()), float(kept.max())
    assert int((dropped < lo).sum()) + int((dropped > hi).sum()) == dropped.numel()
    assert int((dropped < lo).sum()) == math.floor(beta * n)


def test_small_tensor_where_top_count_rounds_to_zero():
    delta = torch.arange(1.0, 51.0)  # n = 50: floor(0.01 * 50) = 0, floor(0.85 * 50) = 42
    mask = breadcrumbs_mask(delta, 0.85, 0.01)
    assert mask.tolist() == [False] * 42 + [True] * 8


def test_ties_are_broken_by_flat_index():
    delta = torch.tensor([1.0, -1.0, 1.0, 1.0, -1.0])  # all |delta| equal
    # beta = 0.4 drops the two lowest ranks (indices 0, 1); gamma = 0.2 the highest (index 4)
    assert breadcrumbs_mask(delta, 0.4, 0.2).tolist() == [False, False, True, True, False]


def test_zero_dimensional_and_empty_tensors_are_never_masked():
    assert bool(breadcrumbs_mask(torch.tensor(3.0), 0.5, 0.4))
    assert breadcrumbs_mask(torch.zeros(0, 4), 0.5, 0.4).shape == (0, 4)
    assert breadcrumbs_mask(torch.zeros(4, 0), 0.5, 0.4, granularity="row").shape == (4, 0)


def test_beta_and_gamma_zero_keep_everything():
    delta = torch.randn(7, 3)
    assert bool(breadcrumbs_mask(delta, 0.0, 0.0).all())


@pytest.mark.parametrize(
    "beta, gamma, message",
    [
        (-0.1, 0.1, "beta"),
        (1.0, 0.0, "beta"),
        (0.2, 1.2, "gamma"),
        (0.5, 0.5, "beta \\+ gamma"),
        (float("nan"), 0.1, "beta"),
        (True, 0.1, "beta"),
        ("0.5", 0.1, "beta"),
    ],
)
def test_out_of_range_fractions_are_refused(beta, gamma, message):
    with pytest.raises(ValueError, match=message):
        breadcrumbs_mask(torch.randn(10), beta, gamma)


def test_unknown_granularity_is_refused():
    with pytest.raises(ValueError, match="granularity 'column'"):
        breadcrumbs_mask(torch.randn(10), 0.1, 0.1, granularity="column")
    with pytest.raises(ValueError, match="TaskVector.breadcrumbs_masks"):
        breadcrumbs_mask(torch.randn(10), 0.1, 0.1, granularity="global")


def test_integer_and_non_finite_deltas_are_refused():
    with pytest.raises(ValueError, match="torch.int64"):
        breadcrumbs_mask(torch.arange(10), 0.1, 0.1)
    with pytest.raises(ValueError, match="2 non-finite"):
        breadcrumbs_mask(torch.tensor([1.0, float("nan"), 2.0, float("inf")]), 0.1, 0.1)


@pytest.mark.parametrize("granularity", ["tensor", "row"])
@pytest.mark.parametrize("beta, gamma", [(0.85, 0.01), (0.5, 0.0), (0.0, 0.2), (0.0, 0.0)])
def test_non_finite_entries_are_refused_on_every_selection_path(granularity, beta, gamma):
    """Large tensors take the CPU kernel (which counts non-finite values in its own pass), rows
    and beta = gamma = 0 the torch path: all refuse NaN and infinity, naming the count."""
    delta = torch.randn(300, 400)  # 120,000 entries: above the size partitioned whole
    delta[7, 9], delta[250, 3], delta[299, 399] = float("nan"), float("inf"), -float("inf")
    with pytest.raises(ValueError, match=r"delta of shape \(300, 400\) has 3 non-finite entries"):
        breadcrumbs_mask(delta, beta, gamma, granularity)
    with pytest.raises(ValueError, match="3 non-finite"):
        breadcrumbs_masked(delta.clone(), beta, gamma, granularity, inplace=True)


@pytest.mark.parametrize("n", [500, 300_000])  # the small-group kernel and the sampled path
@pytest.mark.parametrize("granularity", ["tensor", "row"])
def test_skipping_the_finiteness_check_changes_nothing_on_finite_values(n, granularity):
    delta = torch.randn(n // 100, 100, generator=torch.Generator().manual_seed(4))
    checked = breadcrumbs_masked(delta, 0.85, 0.01, granularity)
    assert torch.equal(breadcrumbs_masked(delta, 0.85, 0.01, granularity, check_finite=False), checked)


def test_a_refused_in_place_masking_leaves_the_tensor_as_it_was():
    delta = torch.randn(500)  # a small group: the serial kernel
    delta[17] = float("nan")
    before = delta.clone()
    with pytest.raises(ValueError, match=r"delta of shape \(500,\) has 1 non-finite entries"):
        breadcrumbs_masked(delta, 0.5, 0.1, inplace=True)
    assert torch.equal(delta.isnan(), before.isnan()) and torch.equal(delta.nan_to_num(), before.nan_to_num())


def test_magnitude_keys_order_like_magnitudes():
    values = np.array([0.0, -0.0, 1e-45, -2.5, 2.5, 3e38, -1e-30], dtype=np.float32)
    keys = values.view(np.uint32) & np.uint32(0x7FFFFFFF)
    order_by_keys = np.argsort(keys, kind="stable")
    order_by_magnitude = np.argsort(np.abs(values), kind="stable")
    assert order_by_keys.tolist() == order_by_magnitude.tolist()
