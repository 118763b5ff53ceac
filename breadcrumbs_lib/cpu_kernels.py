"""Numba kernels for the CPU fast path of rank selection (see :mod:`.selection`).

They work on *magnitude keys*: for a finite float32 ``x``, the bits of ``|x|`` read as a uint32,
``key = bits(x) & 0x7FFFFFFF``. Keys are ordered exactly as magnitudes are, so every comparison
of magnitudes becomes one exact unsigned-integer comparison, and a window test
``lo <= key <= lo + width`` becomes a single unsigned compare ``key - lo <= width`` (wrapping),
which keeps the loops free of unpredictable branches.

Each kernel is one parallel pass over the data; they compute exactly what the torch path
computes, and the tests check that they agree.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

MAGNITUDE_BITS = np.uint32(0x7FFFFFFF)
#: A window start that no finite magnitude key reaches: ``(0xFFFFFFFF, 0)`` is an empty window.
EMPTY_WINDOW = (np.uint32(0xFFFFFFFF), np.uint32(0))
#: The window holding every key.
FULL_WINDOW = (np.uint32(0), np.uint32(0xFFFFFFFF))
_CHUNKS_PER_THREAD = 2


def magnitude_keys(values: np.ndarray) -> np.ndarray:
    """``|values|`` as ordered uint32 keys (a new array; ``values`` float32)."""
    return values.view(np.uint32) & MAGNITUDE_BITS


def n_chunks(size: int) -> int:
    """How many chunks the parallel collection splits ``size`` entries into."""
    return max(1, min(size, numba.get_num_threads() * _CHUNKS_PER_THREAD))


@njit(parallel=True, cache=True)
def count_and_collect(bits, lo_1, width_1, lo_2, width_2, chunks):  # pragma: no cover - compiled
    """For two key windows ``[lo_k, lo_k + width_k]`` over the magnitude keys of ``bits`` (the
    uint32 view of a float32 array): the number of keys below ``lo_k``, and the keys inside the
    window (compacted). Returns ``(below_1, band_1, below_2, band_2)``.
    """
    n = bits.size
    step = (n + chunks - 1) // chunks
    below = np.zeros((chunks, 2), dtype=np.int64)
    filled = np.zeros((chunks, 2), dtype=np.int64)
    scratch_1 = np.empty(n, dtype=np.uint32)
    scratch_2 = np.empty(n, dtype=np.uint32)
    for c in prange(chunks):
        start = c * step
        stop = min(n, start + step)
        b_1 = 0
        b_2 = 0
        f_1 = start
        f_2 = start
        for i in range(start, stop):
            key = bits[i] & np.uint32(0x7FFFFFFF)
            b_1 += key < lo_1
            b_2 += key < lo_2
            if np.uint32(key - lo_1) <= width_1:
                scratch_1[f_1] = key
                f_1 += 1
            if np.uint32(key - lo_2) <= width_2:
                scratch_2[f_2] = key
                f_2 += 1
        below[c, 0] = b_1
        below[c, 1] = b_2
        filled[c, 0] = f_1 - start
        filled[c, 1] = f_2 - start
    band_1 = np.empty(filled[:, 0].sum(), dtype=np.uint32)
    band_2 = np.empty(filled[:, 1].sum(), dtype=np.uint32)
    at_1 = 0
    at_2 = 0
    for c in range(chunks):
        start = c * step
        band_1[at_1:at_1 + filled[c, 0]] = scratch_1[start:start + filled[c, 0]]
        band_2[at_2:at_2 + filled[c, 1]] = scratch_2[start:start + filled[c, 1]]
        at_1 += filled[c, 0]
        at_2 += filled[c, 1]
    return below[:, 0].sum(), band_1, below[:, 1].sum(), band_2


@njit(parallel=True, cache=True)
def fill_keep_mask(bits, first, span, out):  # pragma: no cover - compiled
    """``out[i] = first <= key_i < first + span`` (unsigned, wrapping) for the magnitude keys of
    ``bits``; ``out`` is a bool array of the same size."""
    for i in prange(bits.size):
        out[i] = np.uint32((bits[i] & np.uint32(0x7FFFFFFF)) - first) < span


@njit(parallel=True, cache=True)
def fill_masked(values, bits, first, span, out):  # pragma: no cover - compiled
    """``out[i] = values[i]`` where ``first <= key_i < first + span``, else 0 (``bits`` is the
    uint32 view of ``values``)."""
    for i in prange(values.size):
        keep = np.uint32((bits[i] & np.uint32(0x7FFFFFFF)) - first) < span
        out[i] = values[i] if keep else np.float32(0.0)


@njit(parallel=True, cache=True)
def count_equal(bits, low_key, high_key, chunks):  # pragma: no cover - compiled
    """Per chunk, how many magnitude keys equal ``low_key`` and ``high_key``: ``(chunks, 2)``."""
    n = bits.size
    step = (n + chunks - 1) // chunks
    counts = np.zeros((chunks, 2), dtype=np.int64)
    for c in prange(chunks):
        n_low = 0
        n_high = 0
        for i in range(c * step, min(n, (c + 1) * step)):
            key = bits[i] & np.uint32(0x7FFFFFFF)
            n_low += key == low_key
            n_high += key == high_key
        counts[c, 0] = n_low
        counts[c, 1] = n_high
    return counts


@njit(cache=True)
def _tie_offsets(bits, low_key, high_key, chunks):  # pragma: no cover - compiled
    """Exclusive prefix sums over chunks of the counts of keys equal to ``low_key`` / ``high_key``."""
    counts = count_equal(bits, low_key, high_key, chunks)
    offsets = np.zeros((chunks, 2), dtype=np.int64)
    for c in range(1, chunks):
        offsets[c, 0] = offsets[c - 1, 0] + counts[c - 1, 0]
        offsets[c, 1] = offsets[c - 1, 1] + counts[c - 1, 1]
    return offsets


@njit(inline="always")
def _keep_splitting_ties(key, low_key, drop_low, high_key, keep_high_end, p_low, p_high):  # pragma: no cover
    """Keep decision for one key; returns ``(keep, p_low, p_high)`` with the tie counters advanced."""
    if key == low_key or key == high_key:
        keep = True
        if key == low_key:
            keep = p_low >= drop_low
            p_low += 1
        if key == high_key:
            keep = keep and p_high < keep_high_end
            p_high += 1
        return keep, p_low, p_high
    return key > low_key and key < high_key, p_low, p_high


@njit(parallel=True, cache=True)
def fill_keep_mask_splitting_ties(bits, low_key, drop_low, high_key, keep_high_end, chunks, out):  # pragma: no cover
    """Band mask when tied keys straddle a cut, splitting each tie by position.

    Keys strictly between the cuts are kept, keys outside are dropped. Of the keys equal to
    ``low_key``, numbered ``p = 0, 1, ...`` in index order, those with ``p < drop_low`` are
    dropped; of the keys equal to ``high_key``, those with ``p >= keep_high_end`` are dropped
    (both rules apply when the two keys are equal).
    """
    n = bits.size
    step = (n + chunks - 1) // chunks
    offsets = _tie_offsets(bits, low_key, high_key, chunks)
    for c in prange(chunks):
        p_low = offsets[c, 0]
        p_high = offsets[c, 1]
        for i in range(c * step, min(n, (c + 1) * step)):
            key = bits[i] & np.uint32(0x7FFFFFFF)
            keep, p_low, p_high = _keep_splitting_ties(key, low_key, drop_low, high_key, keep_high_end, p_low, p_high)
            out[i] = keep


@njit(parallel=True, cache=True)
def fill_masked_splitting_ties(values, bits, low_key, drop_low, high_key, keep_high_end, chunks, out):  # pragma: no cover
    """``values`` masked by the band of :func:`fill_keep_mask_splitting_ties`, written to ``out``."""
    n = bits.size
    step = (n + chunks - 1) // chunks
    offsets = _tie_offsets(bits, low_key, high_key, chunks)
    for c in prange(chunks):
        p_low = offsets[c, 0]
        p_high = offsets[c, 1]
        for i in range(c * step, min(n, (c + 1) * step)):
            key = bits[i] & np.uint32(0x7FFFFFFF)
            keep, p_low, p_high = _keep_splitting_ties(key, low_key, drop_low, high_key, keep_high_end, p_low, p_high)
            out[i] = values[i] if keep else np.float32(0.0)


