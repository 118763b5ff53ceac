"""Numba kernels for the CPU fast path of rank selection (see :mod:`.selection`).

They work on *magnitude keys*: for a finite float32 ``x``, the bits of ``|x|`` read as a uint32,
``key = bits(x) & 0x7FFFFFFF``. Keys are ordered exactly as magnitudes are, so every comparison
of magnitudes becomes one exact unsigned-integer comparison, and a window test
``lo <= key <= lo + width`` becomes a single unsigned compare ``key - lo <= width`` (wrapping).

Each kernel is one or two parallel passes. Loops run over chunk *slices* indexed from 0, which
lets LLVM drop negative-index checks and vectorise; the common path has no unpredictable branch.
The kernels compute exactly what the torch path of :mod:`.selection` computes; tests check it.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

MAGNITUDE_BITS = np.uint32(0x7FFFFFFF)
#: ``(lo, width)`` of a window no finite magnitude key falls in.
EMPTY_WINDOW = (np.uint32(0xFFFFFFFF), np.uint32(0))
_CHUNKS_PER_THREAD = 2


def n_chunks(size: int) -> int:
    """How many chunks the chunked kernels split ``size`` entries into."""
    return max(1, min(size, numba.get_num_threads() * _CHUNKS_PER_THREAD))


@njit(parallel=True, cache=True)
def count_and_collect(bits, lo_1, width_1, lo_2, width_2, chunks):  # pragma: no cover - compiled
    """For two key windows ``[lo_k, lo_k + width_k]`` over the magnitude keys of ``bits`` (the
    uint32 view of a float32 array): how many keys lie below ``lo_k``, and the keys inside the
    window, compacted. Returns ``(below_1, band_1, below_2, band_2)``.
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
        part, out_1, out_2 = bits[start:stop], scratch_1[start:stop], scratch_2[start:stop]
        b_1 = 0
        b_2 = 0
        f_1 = 0
        f_2 = 0
        for i in range(part.size):
            key = part[i] & np.uint32(0x7FFFFFFF)
            b_1 += key < lo_1
            b_2 += key < lo_2
            if np.uint32(key - lo_1) <= width_1:
                out_1[f_1] = key
                f_1 += 1
            if np.uint32(key - lo_2) <= width_2:
                out_2[f_2] = key
                f_2 += 1
        below[c, 0] = b_1
        below[c, 1] = b_2
        filled[c, 0] = f_1
        filled[c, 1] = f_2
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
    """``out[i] = first <= key_i < first + span`` (unsigned, wrapping); ``out`` is bool."""
    for i in prange(bits.size):
        out[i] = np.uint32((bits[i] & np.uint32(0x7FFFFFFF)) - first) < span


@njit(parallel=True, cache=True)
def fill_masked(values, bits, first, span, out):  # pragma: no cover - compiled
    """``out[i] = values[i]`` where ``first <= key_i < first + span``, else 0 (``bits`` is the
    uint32 view of ``values``; ``out`` may be ``values`` itself)."""
    for i in prange(values.size):
        keep = np.uint32((bits[i] & np.uint32(0x7FFFFFFF)) - first) < span
        out[i] = values[i] if keep else np.float32(0.0)


@njit(parallel=True, cache=True)
def drop_split_ties(bits, low_key, drop_low, high_key, keep_high_end, chunks, out):  # pragma: no cover
    """Second pass after ``fill_*`` over the closed interval ``[low_key, high_key]``: zero the
    tied entries at the cuts that the band drops, numbering each tie in index order.

    Of the keys equal to ``low_key``, numbered ``p = 0, 1, ...`` in index order, those with
    ``p < drop_low`` are dropped; of the keys equal to ``high_key``, those with
    ``p >= keep_high_end`` (both rules apply when the keys are equal). ``out`` is the float or
    bool array the first pass wrote; dropped entries become 0 / False.
    """
    n = bits.size
    step = (n + chunks - 1) // chunks
    counts = np.zeros((chunks, 2), dtype=np.int64)
    for c in prange(chunks):  # pass 1: how many tied keys each chunk holds
        part = bits[c * step:min(n, (c + 1) * step)]
        n_low = 0
        n_high = 0
        for i in range(part.size):
            key = part[i] & np.uint32(0x7FFFFFFF)
            n_low += key == low_key
            n_high += key == high_key
        counts[c, 0] = n_low
        counts[c, 1] = n_high
    for c in prange(chunks):  # pass 2: number the tied keys across chunks, drop the dropped ones
        start = c * step
        stop = min(n, start + step)
        part, target = bits[start:stop], out[start:stop]
        p_low = counts[:c, 0].sum()
        p_high = counts[:c, 1].sum()
        for i in range(part.size):
            key = part[i] & np.uint32(0x7FFFFFFF)
            if (key == low_key) | (key == high_key):
                drop = False
                if key == low_key:
                    drop = p_low < drop_low
                    p_low += 1
                if key == high_key:
                    drop = drop | (p_high >= keep_high_end)
                    p_high += 1
                if drop:
                    target[i] = 0
