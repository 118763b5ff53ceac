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
#: The smallest magnitude key of a non-finite value (infinity; NaNs lie above it).
NON_FINITE_KEY = np.uint32(0x7F800000)
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
    window with their positions, compacted in index order; and, in the same pass, how many
    entries are not finite (the callers' finiteness check).

    Returns ``(non_finite, below_1, keys_1, positions_1, below_2, keys_2, positions_2)``.
    """
    n = bits.size
    step = (n + chunks - 1) // chunks
    below = np.zeros((chunks, 2), dtype=np.int64)
    filled = np.zeros((chunks, 2), dtype=np.int64)
    non_finite = np.zeros(chunks, dtype=np.int64)
    keys_1 = np.empty(n, dtype=np.uint32)
    keys_2 = np.empty(n, dtype=np.uint32)
    positions_1 = np.empty(n, dtype=np.int64)
    positions_2 = np.empty(n, dtype=np.int64)
    for c in prange(chunks):
        start = c * step
        stop = min(n, start + step)
        part = bits[start:stop]
        out_1, at_1 = keys_1[start:stop], positions_1[start:stop]
        out_2, at_2 = keys_2[start:stop], positions_2[start:stop]
        b_1 = 0
        b_2 = 0
        f_1 = 0
        f_2 = 0
        bad = 0
        for i in range(part.size):
            key = part[i] & np.uint32(0x7FFFFFFF)
            bad += key >= NON_FINITE_KEY
            b_1 += key < lo_1
            b_2 += key < lo_2
            if np.uint32(key - lo_1) <= width_1:
                out_1[f_1] = key
                at_1[f_1] = start + i
                f_1 += 1
            if np.uint32(key - lo_2) <= width_2:
                out_2[f_2] = key
                at_2[f_2] = start + i
                f_2 += 1
        below[c, 0] = b_1
        below[c, 1] = b_2
        filled[c, 0] = f_1
        filled[c, 1] = f_2
        non_finite[c] = bad
    band_1, where_1 = _compact(keys_1, positions_1, filled[:, 0], step)
    band_2, where_2 = _compact(keys_2, positions_2, filled[:, 1], step)
    return non_finite.sum(), below[:, 0].sum(), band_1, where_1, below[:, 1].sum(), band_2, where_2


@njit(cache=True)
def _compact(keys, positions, filled, step):  # pragma: no cover - compiled
    """Concatenate the first ``filled[c]`` entries of each chunk ``c`` of ``keys`` / ``positions``."""
    total = filled.sum()
    out_keys = np.empty(total, dtype=keys.dtype)
    out_positions = np.empty(total, dtype=positions.dtype)
    at = 0
    for c in range(filled.size):
        start = c * step
        out_keys[at:at + filled[c]] = keys[start:start + filled[c]]
        out_positions[at:at + filled[c]] = positions[start:start + filled[c]]
        at += filled[c]
    return out_keys, out_positions


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
