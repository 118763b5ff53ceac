"""Numba kernels for the CPU fast path of rank selection (see :mod:`.selection`).

They work on *magnitude keys*: for a finite float32 ``x``, the bits of ``|x|`` read as a uint32,
``key = bits(x) & 0x7FFFFFFF``. Keys are ordered exactly as magnitudes are, so every comparison
of magnitudes becomes one exact unsigned-integer comparison, and a window test
``lo <= key <= lo + width`` becomes a single unsigned compare ``key - lo <= width`` (wrapping).

The collecting pass tests 64 keys at a time: one vector compare per window (four 512-bit
vectors, or eight 256-bit ones) yields a 64-bit lane mask (:func:`_lanes_in_window`, a few lines
of LLVM IR; portable, as LLVM lowers vector compares for any CPU), counts are popcounts of
masks, and only the set bits of the rare window masks are visited. One branch per 64 keys,
rather than per 16, leaves fewer mispredicted branches around the rare in-window keys
(``benchmarks/`` times the kernels). Exact ranks among the collected keys come from a
radix selection (:func:`kth_smallest`). The kernels compute exactly what the torch path of
:mod:`.selection` computes; tests check them against numpy and a stable sort.
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.cpython.unsafe.numbers import trailing_zeros
from numba.extending import intrinsic

MAGNITUDE_BITS = np.uint32(0x7FFFFFFF)
#: The smallest magnitude key of a non-finite value (infinity; NaNs lie above it).
NON_FINITE_KEY = np.uint32(0x7F800000)
#: ``(lo, width)`` of a window no finite magnitude key falls in.
EMPTY_WINDOW = (np.uint32(0xFFFFFFFF), np.uint32(0))
_CHUNKS_PER_THREAD = 2
#: Keys tested at once by the collecting pass (one bit each in a uint64 lane mask).
LANES = 64
#: Bits of a key resolved per histogram pass of the radix selection (2,048 buckets: in L1).
DIGIT_BITS = 11
_BUCKETS = 1 << DIGIT_BITS
_LANE_VECTOR = ir.VectorType(ir.IntType(32), LANES)


def n_chunks(size: int) -> int:
    """How many chunks the chunked kernels split ``size`` entries into."""
    return max(1, min(size, numba.get_num_threads() * _CHUNKS_PER_THREAD))


@intrinsic
def _lanes_in_window(typingctx, bits, at, lo, width):  # pragma: no cover - compiled
    """``uint64`` whose bit ``j`` says whether ``lo <= key(bits[at + j]) <= lo + width``, for
    ``j < LANES``: one unaligned vector load, mask, subtract and unsigned compare, and the
    compare's ``<64 x i1>`` result read as an integer. ``bits[at:at + LANES]`` must exist."""

    def codegen(context, builder, signature, args):
        array, at, lo, width = args
        data = context.make_array(signature.args[0])(context, builder, array).data
        lanes = builder.load(builder.bitcast(builder.gep(data, [at]), _LANE_VECTOR.as_pointer()), align=4)
        keys = builder.and_(lanes, ir.Constant(_LANE_VECTOR, [int(MAGNITUDE_BITS)] * LANES))
        offsets = builder.sub(keys, _splat(builder, lo))
        inside = builder.icmp_unsigned("<=", offsets, _splat(builder, width))
        return builder.zext(builder.bitcast(inside, ir.IntType(LANES)), ir.IntType(64))

    return types.uint64(bits, at, lo, width), codegen


@intrinsic
def _popcount(typingctx, mask):  # pragma: no cover - compiled
    """Number of set bits of a uint64 (LLVM ``ctpop``: one instruction where the CPU has it)."""

    def codegen(context, builder, signature, args):
        return builder.ctpop(args[0])

    return types.int64(types.uint64), codegen


def _splat(builder: ir.IRBuilder, value: ir.Value) -> ir.Value:
    """A ``<LANES x i32>`` vector with ``value`` in every lane."""
    one = builder.insert_element(ir.Constant(_LANE_VECTOR, ir.Undefined), value, ir.Constant(ir.IntType(32), 0))
    return builder.shuffle_vector(one, ir.Constant(_LANE_VECTOR, ir.Undefined), ir.Constant(_LANE_VECTOR, [0] * LANES))


@njit(parallel=True, cache=True)
def count_and_collect(  # pragma: no cover - compiled
    bits, lo_1, width_1, lo_2, width_2, chunks, scratch_keys, scratch_positions, count_non_finite
):
    """For two key windows ``[lo_k, lo_k + width_k]`` over the magnitude keys of ``bits`` (the
    uint32 view of a float32 array): how many keys lie below ``lo_k``, and the keys inside the
    window with their positions, compacted in index order; and, in the same pass if
    ``count_non_finite`` (else 0), how many entries are not finite (the callers' finiteness check).

    Returns ``(non_finite, below_1, keys_1, positions_1, below_2, keys_2, positions_2)``.
    ``scratch_keys`` (uint32) and ``scratch_positions`` (int64), each of shape ``(2, >= bits.size)``,
    are work space; reusing them across calls spares the page faults of fresh buffers.

    Lanes of 64 keys are tested at once (:func:`_lanes_in_window`): the counts are popcounts of
    the lane masks, and only the set bits of the window masks (a few percent) are visited.
    """
    n = bits.size
    step = (n + chunks - 1) // chunks
    step += -step % LANES  # chunks start on a lane boundary
    below = np.zeros((chunks, 2), dtype=np.int64)
    filled = np.zeros((chunks, 2), dtype=np.int64)
    non_finite = np.zeros(chunks, dtype=np.int64)
    keys_1, keys_2 = scratch_keys[0], scratch_keys[1]
    positions_1, positions_2 = scratch_positions[0], scratch_positions[1]
    # "key < lo" is the window [0, lo - 1] (empty when lo == 0); "not finite" is [NON_FINITE_KEY, max].
    below_width_1, below_width_2 = np.uint32(lo_1 - np.uint32(1)), np.uint32(lo_2 - np.uint32(1))
    non_finite_width = np.uint32(MAGNITUDE_BITS - NON_FINITE_KEY)
    zero = np.uint32(0)
    for c in prange(chunks):
        start = min(n, c * step)
        stop = min(n, start + step)
        whole_lanes_stop = start + (stop - start) // LANES * LANES
        f_1, f_2 = start, start
        b_1, b_2, bad = 0, 0, 0
        for at in range(start, whole_lanes_stop, LANES):
            if lo_1 > 0:
                b_1 += _popcount(_lanes_in_window(bits, at, zero, below_width_1))
            if lo_2 > 0:
                b_2 += _popcount(_lanes_in_window(bits, at, zero, below_width_2))
            if count_non_finite:
                bad += _popcount(_lanes_in_window(bits, at, NON_FINITE_KEY, non_finite_width))
            in_1 = _lanes_in_window(bits, at, lo_1, width_1)
            in_2 = _lanes_in_window(bits, at, lo_2, width_2)
            if in_1 | in_2:  # one branch for both windows: most lanes hold neither
                f_1 = _collect_lanes(bits, at, in_1, keys_1, positions_1, f_1)
                f_2 = _collect_lanes(bits, at, in_2, keys_2, positions_2, f_2)
        for i in range(whole_lanes_stop, stop):  # the last, partial lane
            key = bits[i] & MAGNITUDE_BITS
            bad += count_non_finite and key >= NON_FINITE_KEY
            b_1 += key < lo_1
            b_2 += key < lo_2
            f_1 = _collect_lanes(bits, i, np.uint64(np.uint32(key - lo_1) <= width_1), keys_1, positions_1, f_1)
            f_2 = _collect_lanes(bits, i, np.uint64(np.uint32(key - lo_2) <= width_2), keys_2, positions_2, f_2)
        below[c, 0] = b_1
        below[c, 1] = b_2
        filled[c, 0] = f_1 - start
        filled[c, 1] = f_2 - start
        non_finite[c] = bad
    band_1, where_1 = _compact(keys_1, positions_1, filled[:, 0], step)
    band_2, where_2 = _compact(keys_2, positions_2, filled[:, 1], step)
    return non_finite.sum(), below[:, 0].sum(), band_1, where_1, below[:, 1].sum(), band_2, where_2


@njit(inline="always")
def _collect_lanes(bits, at, lane_mask, keys, positions, filled):  # pragma: no cover - compiled
    """Append the key and position of each lane ``at + j`` whose bit ``j`` is set in
    ``lane_mask`` to ``keys`` / ``positions`` from index ``filled``; return the new fill."""
    while lane_mask:
        j = trailing_zeros(lane_mask)
        keys[filled] = bits[at + j] & MAGNITUDE_BITS
        positions[filled] = at + j
        filled += 1
        lane_mask &= lane_mask - np.uint64(1)
    return filled


@njit(parallel=True, cache=True)
def gather_keys(bits, positions, chunks):  # pragma: no cover - compiled
    """The magnitude keys of ``bits`` at ``positions``, the gathers split across threads (the
    loads miss the cache; more of them in flight, the sooner they are all back)."""
    n = positions.size
    step = (n + chunks - 1) // chunks
    out = np.empty(n, dtype=np.uint32)
    for c in prange(chunks):
        for i in range(c * step, min(n, c * step + step)):
            out[i] = bits[positions[i]] & MAGNITUDE_BITS
    return out


@njit(cache=True)
def select_rank(keys, rank):  # pragma: no cover - compiled
    """The ``rank``-th smallest (1-based) of ``keys``, how many keys are smaller, and the indices
    of the keys equal to it, in order. Two passes over ``keys``: a histogram of the top digit
    picks the rank's bucket, a second pass gathers the bucket's keys with their indices, and
    the rest (:func:`kth_smallest`, the ties) works on those few."""
    lowest, shift, histogram = _top_digit_histogram(keys)
    bucket, n_less, rank = _bucket_of_rank(histogram, rank)
    members = np.empty(histogram[bucket], dtype=np.uint32)
    indices = np.empty(histogram[bucket], dtype=np.int64)
    found = 0
    for i in range(keys.size):
        if (np.uint32(keys[i] - lowest) >> shift) == bucket:
            members[found] = keys[i]
            indices[found] = i
            found += 1
    key, n_less_in_bucket = kth_smallest(members, rank)
    return key, n_less + n_less_in_bucket, indices[members == key]


@njit(cache=True)
def mask_outside_ranks(values, n_low, n_high, out):  # pragma: no cover - compiled
    """``out[i] = values[i]`` if the rank of ``|values[i]|`` (0-based, ties by index) lies in
    ``[n_low, m - n_high)``, else 0, for a float32 ``values`` of ``m >= 1`` entries, in one serial
    call (for small groups, where a parallel pass costs more than it saves). ``out`` may be
    ``values``. Returns the number of non-finite entries; if there are any, nothing is written.

    The smallest kept key ``low`` and the largest ``high`` are radix selections; entries tied
    with either get their rank from how many keys are smaller plus their index among the ties.
    """
    keys = values.view(np.uint32) & MAGNITUDE_BITS
    non_finite = 0
    for key in keys:
        non_finite += key >= NON_FINITE_KEY
    if non_finite:
        return non_finite
    m = keys.size
    low, low_less = kth_smallest(keys, n_low + 1)
    high, high_less = kth_smallest(keys, m - n_high)
    low_ties, high_ties = 0, 0
    for i in range(m):
        key = keys[i]
        keep = low <= key <= high
        if key == low:
            keep = keep and low_less + low_ties >= n_low
            low_ties += 1
        if key == high:
            keep = keep and high_less + high_ties < m - n_high
            high_ties += 1
        out[i] = values[i] if keep else np.float32(0.0)
    return 0


@njit(cache=True)
def kth_smallest(keys, rank):  # pragma: no cover - compiled
    """``(key, n_less)``: the ``rank``-th smallest (1-based) of the uint32 ``keys`` and how many
    keys are smaller, by radix selection on ``key - min(keys)``, ``DIGIT_BITS`` bits at a time
    from the highest set bit of the span ``max - min`` down. A histogram of the top digit over all
    keys picks the bucket holding the rank; each next digit is histogrammed over the keys of that
    bucket only. Unlike quickselect's, its branches do not depend on how the keys compare with
    one another, so they are predicted well."""
    lowest, shift, histogram = _top_digit_histogram(keys)
    prefix, n_less, rank = _bucket_of_rank(histogram, rank)
    while shift > 0:
        next_shift = max(0, shift - DIGIT_BITS)
        digit_mask = np.uint32((1 << (shift - next_shift)) - 1)
        histogram[:] = 0
        for key in keys:
            offset = np.uint32(key - lowest)
            if (offset >> shift) == prefix:
                histogram[(offset >> next_shift) & digit_mask] += 1
        digit, below, rank = _bucket_of_rank(histogram, rank)
        prefix = (prefix << (shift - next_shift)) | digit
        n_less += below
        shift = next_shift
    return np.uint32(lowest + np.uint32(prefix)), n_less


@njit(cache=True)
def kth_smallest_many(keys, ranks):  # pragma: no cover - compiled
    """The ``ranks[j]``-th smallest (1-based) of the uint32 ``keys``, for every ``j``: one
    histogram of the top digit finds each rank's bucket, one more pass gathers the keys of
    those buckets only (a few percent of the keys), and :func:`kth_smallest` runs among the
    keys of each rank's bucket: where one full selection per rank would pass over all keys."""
    lowest, shift, histogram = _top_digit_histogram(keys)
    buckets = np.empty(ranks.size, dtype=np.int64)
    rank_in_bucket = np.empty(ranks.size, dtype=np.int64)
    start = np.full(_BUCKETS, -1, dtype=np.int64)  # where a wanted bucket's keys go, -1 if unwanted
    wanted = 0
    for j in range(ranks.size):
        buckets[j], _, rank_in_bucket[j] = _bucket_of_rank(histogram, ranks[j])
        if start[buckets[j]] < 0:
            start[buckets[j]] = wanted
            wanted += histogram[buckets[j]]
    members = np.empty(wanted, dtype=np.uint32)
    filled = start.copy()
    for key in keys:
        bucket = np.uint32(key - lowest) >> shift
        if filled[bucket] >= 0:
            members[filled[bucket]] = key
            filled[bucket] += 1
    out = np.empty(ranks.size, dtype=np.uint32)
    for j in range(ranks.size):
        first = start[buckets[j]]
        out[j] = kth_smallest(members[first:first + histogram[buckets[j]]], rank_in_bucket[j])[0]
    return out


@njit(inline="always")
def _top_digit_histogram(keys):  # pragma: no cover - compiled
    """``(lowest, shift, histogram)``: the smallest key, and the histogram of the top digit
    ``(key - lowest) >> shift``, where ``shift`` leaves the ``DIGIT_BITS`` highest bits of the
    span ``max - min`` (all of it if shorter): keys that share their leading bits, as the
    magnitudes of floats of a few binades do, still spread over the buckets."""
    lowest = keys.min()
    span = np.uint32(keys.max() - lowest)
    shift = 0
    while (span >> shift) >= _BUCKETS:
        shift += 1
    histogram = np.zeros(_BUCKETS, dtype=np.int64)
    for key in keys:
        histogram[np.uint32(key - lowest) >> shift] += 1
    return lowest, shift, histogram


@njit(inline="always")
def _bucket_of_rank(histogram, rank):  # pragma: no cover - compiled
    """``(bucket, entries in lower buckets, rank within the bucket)`` of the 1-based ``rank``."""
    bucket, below = 0, 0
    while rank > histogram[bucket]:
        rank -= histogram[bucket]
        below += histogram[bucket]
        bucket += 1
    return np.int64(bucket), below, rank


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
def subtract_counting_non_finite(minuend, subtrahend, out, chunks):  # pragma: no cover - compiled
    """``out = minuend - subtrahend`` (float32, as IEEE float32 subtraction: the same bits as
    torch's); returns how many entries of ``out`` are not finite, counted in the same pass."""
    n = out.size
    step = (n + chunks - 1) // chunks
    non_finite = np.zeros(chunks, dtype=np.int64)
    for c in prange(chunks):
        start = min(n, c * step)
        part_out = out[start:min(n, start + step)]
        part_a = minuend[start:start + part_out.size]
        part_b = subtrahend[start:start + part_out.size]
        bad = 0
        for i in range(part_out.size):
            difference = part_a[i] - part_b[i]
            part_out[i] = difference
            bad += not abs(difference) < np.float32(np.inf)  # NaN compares false
        non_finite[c] = bad
    return non_finite.sum()


@njit(parallel=True, cache=True)
def add_difference_counting_non_finite(total, minuend, subtrahend, chunks):  # pragma: no cover - compiled
    """``total += minuend - subtrahend`` (float32: the difference rounded, then the sum, as torch's
    two operations would); returns how many differences are not finite, counted in the same pass."""
    n = total.size
    step = (n + chunks - 1) // chunks
    non_finite = np.zeros(chunks, dtype=np.int64)
    for c in prange(chunks):
        start = min(n, c * step)
        part_total = total[start:min(n, start + step)]
        part_a = minuend[start:start + part_total.size]
        part_b = subtrahend[start:start + part_total.size]
        bad = 0
        for i in range(part_total.size):
            difference = part_a[i] - part_b[i]
            part_total[i] += difference
            bad += not abs(difference) < np.float32(np.inf)  # NaN compares false
        non_finite[c] = bad
    return non_finite.sum()


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
