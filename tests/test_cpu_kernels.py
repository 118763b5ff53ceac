"""The numba kernels of the CPU selection path against plain numpy, on any size and window."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from breadcrumbs_lib.core._accel import cpu_kernels

MAGNITUDE = np.uint32(0x7FFFFFFF)


@st.composite
def magnitude_bits(draw):
    """uint32 views of float32 arrays of any length (lanes of 64 and ragged tails, fewer entries
    than chunks), with many ties, signed zeros and, sometimes, NaN and infinities."""
    n = draw(st.integers(0, 700))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    values = rng.integers(-20, 21, n).astype(np.float32) * np.float32(0.25)
    for special in draw(st.lists(st.sampled_from([np.nan, np.inf, -np.inf, -0.0]), max_size=4)):
        if n:
            values[rng.integers(n)] = special
    return values.view(np.uint32)


@st.composite
def window(draw):
    """``(lo, width)`` over the keys: anywhere, empty, starting at 0, or reaching non-finite keys."""
    lo = draw(st.one_of(st.just(np.uint32(0)), st.integers(0, 0x7FFFFFFF).map(np.uint32),
                        st.sampled_from([0x3E800000, 0x40000000, 0x7F800000]).map(np.uint32)))
    width = draw(st.one_of(st.integers(0, 0x7FFFFFFF).map(np.uint32), st.sampled_from([0, 0x01000000]).map(np.uint32)))
    return draw(st.sampled_from([(lo, width), cpu_kernels.EMPTY_WINDOW]))


def reference(bits: np.ndarray, lo: np.uint32, width: np.uint32):
    keys = bits & MAGNITUDE
    inside = (keys - lo).astype(np.uint32) <= width
    return int(np.count_nonzero(keys < lo)), keys[inside], np.flatnonzero(inside)


@settings(max_examples=200, deadline=None)
@given(magnitude_bits(), window(), window(), st.integers(1, 8))
def test_count_and_collect_matches_numpy(bits, first, second, chunks):
    scratch = np.empty((2, bits.size + 3), dtype=np.uint32), np.empty((2, bits.size + 3), dtype=np.int64)
    non_finite, *found = cpu_kernels.count_and_collect(bits, *first, *second, chunks, *scratch, True)
    assert non_finite == np.count_nonzero((bits & MAGNITUDE) >= cpu_kernels.NON_FINITE_KEY)
    unchecked, *found_unchecked = cpu_kernels.count_and_collect(bits, *first, *second, chunks, *scratch, False)
    assert unchecked == 0
    assert all(np.array_equal(a, b) for a, b in zip(found, found_unchecked))
    for (below, keys, positions), (lo, width) in zip((found[:3], found[3:]), (first, second)):
        expected_below, expected_keys, expected_positions = reference(bits, lo, width)
        assert below == expected_below
        assert keys.tolist() == expected_keys.tolist()
        assert positions.tolist() == expected_positions.tolist()


@st.composite
def spread_keys(draw):
    """Keys over a range of any width: one, two or three digits of the radix selection."""
    n = draw(st.integers(1, 2000))
    width = draw(st.sampled_from([1, 7, 2048, 5000, 1 << 22, 1 << 31]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return (rng.integers(0, width, n, dtype=np.int64) + draw(st.integers(0, 1 << 30))).astype(np.uint32)


@settings(max_examples=300, deadline=None)
@given(st.one_of(magnitude_bits().filter(lambda bits: bits.size > 0), spread_keys()), st.data())
def test_select_rank_matches_a_stable_sort(bits, data):
    keys = bits & MAGNITUDE
    rank = data.draw(st.integers(1, keys.size))
    key, n_less, tied = cpu_kernels.select_rank(keys, rank)
    order = np.argsort(keys, kind="stable")
    assert key == keys[order[rank - 1]]
    assert n_less == np.count_nonzero(keys < key)
    assert tied.tolist() == np.flatnonzero(keys == key).tolist()


@settings(max_examples=200, deadline=None)
@given(st.one_of(magnitude_bits().filter(lambda bits: bits.size > 0), spread_keys()), st.data())
def test_kth_smallest_many_matches_a_sort(bits, data):
    keys = bits & MAGNITUDE
    ranks = np.array(data.draw(st.lists(st.integers(1, keys.size), max_size=6)), dtype=np.int64)
    assert cpu_kernels.kth_smallest_many(keys, ranks).tolist() == np.sort(keys)[ranks - 1].tolist()


@settings(max_examples=300, deadline=None)
@given(magnitude_bits().filter(lambda bits: bits.size > 0), st.data())
def test_mask_outside_ranks_keeps_the_middle_ranks(bits, data):
    values = bits.view(np.float32)
    m = values.size
    n_low = data.draw(st.integers(0, m - 1))
    n_high = data.draw(st.integers(0, m - 1 - n_low))
    out = np.full(m, np.float32(7.0))
    non_finite = cpu_kernels.mask_outside_ranks(values, n_low, n_high, out)
    bad = int(np.count_nonzero(~np.isfinite(values)))
    assert non_finite == bad
    if bad:
        assert (out == 7.0).all()  # nothing written
        return
    rank = np.empty(m, dtype=np.int64)
    rank[np.argsort(bits & MAGNITUDE, kind="stable")] = np.arange(m)  # ties: lower index ranks lower
    keep = (rank >= n_low) & (rank < m - n_high)
    assert np.array_equal(out.view(np.uint32), np.where(keep, values, np.float32(0.0)).view(np.uint32))
