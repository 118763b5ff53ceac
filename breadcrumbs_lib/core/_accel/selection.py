"""Exact rank selection in O(n): which entries of a group lie in the middle band of an ordering.

Every mask in this library (Breadcrumbs, TIES trimming) is a statement about *ranks*: order the
``m`` entries of a group by magnitude ``|x|`` and keep those whose rank ``r`` (0-based, smallest
first) satisfies ``n_low <= r < m - n_high``. Ranks are made total by breaking ties in magnitude
by position: of two equal magnitudes, the entry with the lower index has the lower rank. The
result is therefore deterministic and independent of the device and of the algorithm.

A band is located by its two *cuts*: the ``n_low``-th smallest magnitude and the
``(m - n_high + 1)``-th smallest, each with exact counts of entries below and equal to it. When
no run of tied magnitudes straddles a cut the band is the open interval ``low < |x| < high``;
otherwise the tied entries at a cut are split by position. (Ties are common: the difference of
two nearby float32 weights lies on a coarse grid, so many entries share a magnitude.)

Cuts are found without a full sort:

* one group on the CPU (:mod:`.cpu_kernels`): a seeded random sample brackets each cut, one
  fused parallel pass counts the entries below each bracket and collects those inside it (with
  their positions), and a radix selection finds the exact cut among the few collected. A bracket
  that misses (about one in a hundred) is drawn again, wider, and collected in a second pass;
  should that miss too, the whole group is selected: exact either way. Groups of up to 65,536
  entries are selected whole (and masked by one serial kernel, :func:`masked_outside_ranks`).
* many groups (rows), or other devices: ``torch.kthvalue`` along the last dimension.
"""

from __future__ import annotations

import functools
import math
import threading
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from . import cpu_kernels

_SAMPLE_SIZE = 1 << 14  # entries drawn to bracket a cut
_SMALL_GROUP = 1 << 16  # groups up to this size are selected whole, without sampling
# Half-width of a bracket, in binomial standard deviations of the sample: a narrow first bracket
# (fewer keys to collect and select among; it misses about one rank in a hundred) and a wide one
# for the second try after a miss (which then has about one chance in 10^15 to miss again).
_BRACKET_SIGMAS = 2.5
_WIDE_BRACKET_SIGMAS = 8.0
_SAMPLE_SEED = 20231211
_NO_LOW_CUT = -1.0  # below every magnitude
_NO_HIGH_CUT = math.inf  # above every finite magnitude
_BEYOND_FINITE_KEYS = np.uint32(0x80000000)  # above the key of every finite magnitude


#: What one bracket collected: (keys below it, keys inside it, their positions in the group).
Collected = tuple[int, np.ndarray, np.ndarray]


class NonFiniteValuesError(ValueError):
    """The values to rank hold NaN or infinity, which have no place in an order by magnitude."""

    def __init__(self, count: int, shape: tuple[int, ...]):
        super().__init__(f"{count} non-finite entries among values of shape {shape}")
        self.count = count


@dataclass(frozen=True)
class Cut:
    """The k-th smallest magnitude of each of G groups and how many entries lie below / at it.

    On the one-group CPU path the fields are numpy arrays and ``tied_positions`` lists, in index
    order, the positions of the entries whose magnitude equals the cut. On the torch path the
    fields are tensors on the values' device and ``tied_positions`` is None.
    """

    value: Tensor | np.ndarray  # (G,) float32
    n_less: Tensor | np.ndarray  # (G,) int64
    n_equal: Tensor | np.ndarray  # (G,) int64
    tied_positions: np.ndarray | None = None


@dataclass(frozen=True)
class RankBand:
    """Ranks ``[n_low, m - n_high)`` of each of G groups of ``m`` entries, located by value."""

    m: int
    n_low: int
    n_high: int
    low: Cut | None  # the n_low-th smallest magnitude; None when n_low == 0
    high: Cut | None  # the (m - n_high + 1)-th smallest magnitude; None when n_high == 0

    @property
    def low_ties_dropped(self):
        """Per group, how many entries tied with the low cut are dropped (the first ones)."""
        return self.n_low - self.low.n_less

    @property
    def high_ties_kept(self):
        """Per group, how many entries tied with the high cut are kept (the first ones)."""
        return self.m - self.n_high - self.high.n_less

    @property
    def is_open_interval(self) -> bool:
        """True when the band is exactly ``{x : low < |x| < high}`` in every group."""
        low_ok = self.low is None or bool((self.low_ties_dropped == self.low.n_equal).all())
        high_ok = self.high is None or bool((self.high_ties_kept == 0).all())
        return low_ok and high_ok

    def bounds(self, device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
        """``(low, high)`` cut values per group on ``device``, -1 / inf for a missing cut."""
        n_groups = next((len(cut.value) for cut in (self.low, self.high) if cut is not None), 1)
        low = torch.full((n_groups,), _NO_LOW_CUT, device=device)
        high = torch.full((n_groups,), _NO_HIGH_CUT, device=device)
        if self.low is not None:
            low = torch.as_tensor(self.low.value, device=device)
        if self.high is not None:
            high = torch.as_tensor(self.high.value, device=device)
        return low, high


def find_band(values: Tensor, n_low: int, n_high: int, *, check_finite: bool = True) -> RankBand:
    """Locate the ranks ``[n_low, m - n_high)`` of ``|values|`` in each row of a ``(G, m)``
    float32 tensor.

    Raises :class:`NonFiniteValuesError` (a ``ValueError``) if any value is NaN or infinite; on
    the CPU path this check rides on the selection's own pass over the values. Callers that
    have just checked the values may pass ``check_finite=False`` to skip it (as in
    ``scipy.linalg``); non-finite values then give an unspecified band or error."""
    if values.dim() != 2 or values.dtype != torch.float32:
        raise ValueError(f"values must be a 2-D float32 tensor, got {values.dtype} of shape {tuple(values.shape)}")
    n_groups, m = values.shape
    if n_low < 0 or n_high < 0 or n_low + n_high > m:
        raise ValueError(f"cannot drop {n_low} + {n_high} entries from groups of {m}")
    ranks = (n_low if n_low > 0 else None, m - n_high + 1 if n_high > 0 else None)
    if m == 0 or n_groups == 0:
        return RankBand(m, n_low, n_high, None, None)
    if _cpu_fast_path(values) and ranks != (None, None):
        low, high = _cuts_one_group_cpu(_bits(values), ranks, check_finite)
    else:
        if check_finite:
            _check_finite_torch(values)
        low, high = (None if k is None else _cuts_torch(values, k) for k in ranks)
    return RankBand(m, n_low, n_high, low, high)


def band_mask(values: Tensor, band: RankBand) -> Tensor:
    """Bool ``(G, m)`` mask of the entries of ``values`` inside ``band``."""
    if _cpu_fast_path(values):
        out = torch.empty(values.shape, dtype=torch.bool)
        cpu_kernels.fill_keep_mask(_bits(values), *_key_range(band), out.view(-1).numpy())
        out.view(-1).numpy()[_dropped_tied_positions(band)] = False
        return out
    magnitudes = values.abs()
    if band.is_open_interval:
        low, high = (bound[:, None] for bound in band.bounds(values.device))
        return (magnitudes > low) & (magnitudes < high)
    return _mask_splitting_ties(magnitudes, band)


def band_masked(values: Tensor, band: RankBand, out: Tensor | None = None) -> Tensor:
    """``values`` with the entries outside ``band`` set to 0, written to ``out`` (a new float32
    tensor by default; ``out=values`` masks in place)."""
    out = torch.empty_like(values) if out is None else out
    if not (_cpu_fast_path(values) and out.is_contiguous()):
        return torch.mul(values, band_mask(values, band), out=out)
    array = values.reshape(-1).numpy()
    cpu_kernels.fill_masked(array, array.view(np.uint32), *_key_range(band), out.view(-1).numpy())
    out.view(-1).numpy()[_dropped_tied_positions(band)] = 0.0
    return out


def masked_outside_ranks(
    values: Tensor, n_low: int, n_high: int, out: Tensor | None = None, *, check_finite: bool = True
) -> Tensor:
    """``band_masked(values, find_band(values, n_low, n_high, ...), out)``: the entries of a
    ``(G, m)`` float32 tensor outside ranks ``[n_low, m - n_high)`` of their group set to 0.
    One small CPU group (up to ``_SMALL_GROUP`` entries) takes a single serial kernel, which
    always checks finiteness (it costs little there)."""
    out = torch.empty_like(values) if out is None else out
    m = values.shape[1]
    if _cpu_fast_path(values) and 0 < m <= _SMALL_GROUP and out.is_contiguous():
        array = values.reshape(-1).numpy()
        non_finite = cpu_kernels.mask_outside_ranks(array, n_low, n_high, out.view(-1).numpy())
        _check_no_non_finite_keys(int(non_finite), m)
        return out
    return band_masked(values, find_band(values, n_low, n_high, check_finite=check_finite), out=out)


# --------------------------------------------------------------------------------- CPU path
def _cpu_fast_path(values: Tensor) -> bool:
    return values.device.type == "cpu" and values.shape[0] == 1 and values.is_contiguous()


def _bits(values: Tensor) -> np.ndarray:
    """The uint32 view of a contiguous float32 CPU tensor (no copy)."""
    return values.reshape(-1).numpy().view(np.uint32)


def _key(value: np.ndarray) -> np.uint32:
    """The magnitude key of a one-element float32 array."""
    return np.abs(value[:1]).view(np.uint32)[0]


def _key_range(band: RankBand) -> tuple[np.uint32, np.uint32]:
    """``(first, span)``: the keys ``[first, first + span)`` from the low cut to the high cut,
    both included; tied entries that the band drops are removed afterwards by position."""
    first = _key(band.low.value) if band.low is not None else np.uint32(0)
    end = np.uint32(_key(band.high.value) + 1) if band.high is not None else _BEYOND_FINITE_KEYS
    return first, np.uint32(end - first)


def _dropped_tied_positions(band: RankBand) -> np.ndarray:
    """Positions of the entries tied with a cut that the band drops: the first ones at the low
    cut, all but the first ones at the high cut."""
    dropped = []
    if band.low is not None:
        dropped.append(band.low.tied_positions[: int(band.low_ties_dropped[0])])
    if band.high is not None:
        dropped.append(band.high.tied_positions[int(band.high_ties_kept[0]):])
    return np.concatenate(dropped) if dropped else np.empty(0, dtype=np.int64)


def _cuts_one_group_cpu(
    bits: np.ndarray, ranks: tuple[int | None, int | None], check_finite: bool = True
) -> tuple[Cut | None, Cut | None]:
    """Cuts at 1-based ranks of one group on the CPU: sample, bracket, count and collect (one
    fused pass over both brackets, which also counts non-finite values if ``check_finite``),
    then select among the collected."""
    m = bits.size
    if m <= _SMALL_GROUP:  # cheaper to select among all keys than to sample and scan in parallel
        keys = bits & cpu_kernels.MAGNITUDE_BITS
        _check_no_non_finite_keys(int(np.count_nonzero(keys >= cpu_kernels.NON_FINITE_KEY)), m)
        return tuple(None if k is None else _cut_among(keys, None, k, 0) for k in ranks)
    collected = _collect(bits, ranks, _BRACKET_SIGMAS, check_finite)
    low, high = (None if k is None else _cut_from(bits, k, *found) for k, found in zip(ranks, collected))
    return low, high


def _collect(
    bits: np.ndarray, ranks: tuple[int | None, int | None], sigmas: float, check_finite: bool = True
) -> list[Collected]:
    """For each rank, ``(how many keys lie below its bracket, the keys inside, their positions)``,
    from one pass over ``bits`` that also refuses non-finite values (unless told not to count them)."""
    chunks = cpu_kernels.n_chunks(bits.size)
    non_finite, below_1, keys_1, where_1, below_2, keys_2, where_2 = cpu_kernels.count_and_collect(
        bits, *_windows(bits, ranks, sigmas, chunks), chunks, *_SCRATCH.arrays(bits.size), check_finite
    )
    _check_no_non_finite_keys(int(non_finite), bits.size)
    return [(int(below_1), keys_1, where_1), (int(below_2), keys_2, where_2)]


def _cut_from(bits: np.ndarray, k: int, below: int, keys: np.ndarray, where: np.ndarray) -> Cut:
    """The cut at rank ``k`` from what its bracket collected. A bracket that missed the rank
    (about one in a hundred) is drawn again, ``_WIDE_BRACKET_SIGMAS`` wide, and collected in a
    second pass (which need not count non-finite keys again: the first pass did, or was told
    not to); should that miss too, the whole group is selected. Exact in every case."""
    if not 1 <= k - below <= keys.size:
        (below, keys, where), _ = _collect(bits, (k, None), _WIDE_BRACKET_SIGMAS, check_finite=False)
    if 1 <= k - below <= keys.size:
        return _cut_among(keys, where, k - below, below)
    return _cut_among(bits & cpu_kernels.MAGNITUDE_BITS, None, k, 0)


def _check_no_non_finite_keys(count: int, m: int) -> None:
    if count:
        raise NonFiniteValuesError(count, (1, m))


def _windows(
    bits: np.ndarray, ranks: tuple[int | None, int | None], sigmas: float, chunks: int
) -> tuple[np.uint32, ...]:
    """``(lo_1, width_1, lo_2, width_2)``: for each 1-based rank k, a key window that likely
    holds the k-th smallest key: the order statistics of a seeded random sample ``sigmas``
    binomial standard deviations either side of where it should fall (:func:`_window_plan`)."""
    statistic_ranks, ends = _window_plan(bits.size, ranks, sigmas)
    sample = cpu_kernels.gather_keys(bits, _sample_positions(bits.size), chunks)
    statistics = cpu_kernels.kth_smallest_many(sample, statistic_ranks)
    windows: list[np.uint32] = []
    for end in ends:
        if end is None:
            windows.extend(cpu_kernels.EMPTY_WINDOW)
            continue
        low = statistics[end[0]] if end[0] is not None else np.uint32(0)
        high = statistics[end[1]] if end[1] is not None else cpu_kernels.MAGNITUDE_BITS
        windows.extend((low, np.uint32(high - low)))
    return tuple(windows)


@functools.lru_cache(maxsize=1024)
def _window_plan(
    m: int, ranks: tuple[int | None, int | None], sigmas: float
) -> tuple[np.ndarray, tuple[tuple[int | None, int | None] | None, ...]]:
    """Which order statistics of the sample bound each rank's window: ``(statistic_ranks,
    ends)``, the 1-based ranks to select in the sample (sorted, distinct) and, per rank, the
    indices into them of its window's two ends (None: that end is the end of the key range,
    as when it would fall at either end of the sample; a rank of None has no window)."""
    spans = {}
    for k in ranks:
        if k is not None:
            q = k / m
            half_width = sigmas * math.sqrt(_SAMPLE_SIZE * q * (1.0 - q)) + 2.0
            spans[k] = (math.floor(q * _SAMPLE_SIZE - half_width), math.ceil(q * _SAMPLE_SIZE + half_width))
    # 0-based positions in the sorted sample; one at either end stands for the end of the key range.
    inner = sorted({p for span in spans.values() for p in span if 0 < p < _SAMPLE_SIZE - 1})
    index = {p: i for i, p in enumerate(inner)}
    ends = tuple(None if k is None else tuple(index.get(p) for p in spans[k]) for k in ranks)
    statistic_ranks = np.array(inner, dtype=np.int64) + 1
    statistic_ranks.flags.writeable = False
    return statistic_ranks, ends


class _Scratch(threading.local):
    """Per-thread work space of the collecting pass, grown to the largest group seen and kept:
    fresh buffers would cost a page fault for every page the pass writes to, on every call."""

    keys = np.empty((2, 0), dtype=np.uint32)
    positions = np.empty((2, 0), dtype=np.int64)

    def arrays(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        if self.keys.shape[1] < size:
            self.keys = np.empty((2, size), dtype=np.uint32)
            self.positions = np.empty((2, size), dtype=np.int64)
        return self.keys, self.positions


_SCRATCH = _Scratch()


@functools.lru_cache(maxsize=256)
def _sample_positions(m: int) -> np.ndarray:
    """``_SAMPLE_SIZE`` seeded random positions in ``[0, m)``, sorted for memory locality."""
    positions = np.sort(np.random.default_rng(_SAMPLE_SEED).integers(0, m, size=_SAMPLE_SIZE))
    positions.flags.writeable = False
    return positions


def _cut_among(keys: np.ndarray, positions: np.ndarray | None, rank: int, n_below: int) -> Cut:
    """The ``rank``-th smallest of ``keys`` (which hold every key equal to it), with counts
    offset by ``n_below``. ``positions`` are the keys' positions in the group (None: ``keys``
    is the whole group)."""
    key, n_less, tied = cpu_kernels.select_rank(keys, rank)
    return Cut(
        value=np.array([key], dtype=np.uint32).view(np.float32),
        n_less=np.array([n_below + n_less], dtype=np.int64),
        n_equal=np.array([tied.size], dtype=np.int64),
        tied_positions=tied if positions is None else positions[tied],
    )


# --------------------------------------------------------------------------------- torch path
def _check_finite_torch(values: Tensor) -> None:
    if not bool(torch.isfinite(values.sum())) and not bool(torch.isfinite(values).all()):
        raise NonFiniteValuesError(int((~torch.isfinite(values)).sum()), tuple(values.shape))


def _cuts_torch(values: Tensor, k: int) -> Cut:
    """The k-th smallest (1-based) magnitude of every row, by ``torch.kthvalue``."""
    magnitudes = values.abs()
    value = torch.kthvalue(magnitudes, k, dim=1).values
    n_less = (magnitudes < value[:, None]).sum(dim=1)
    n_equal = (magnitudes == value[:, None]).sum(dim=1)
    return Cut(value, n_less, n_equal)


def _mask_splitting_ties(magnitudes: Tensor, band: RankBand) -> Tensor:
    """Band mask when tied magnitudes straddle a cut: ties are split by position, counted with a
    cumulative sum along each row."""
    keep = torch.ones_like(magnitudes, dtype=torch.bool)
    if band.low is not None:
        value = torch.as_tensor(band.low.value, device=magnitudes.device)[:, None]
        n_dropped = torch.as_tensor(band.low_ties_dropped, device=magnitudes.device)[:, None]
        equal = magnitudes == value
        keep &= (magnitudes > value) | (equal & (equal.cumsum(dim=1) > n_dropped))
    if band.high is not None:
        value = torch.as_tensor(band.high.value, device=magnitudes.device)[:, None]
        n_kept = torch.as_tensor(band.high_ties_kept, device=magnitudes.device)[:, None]
        equal = magnitudes == value
        keep &= (magnitudes < value) | (equal & (equal.cumsum(dim=1) <= n_kept))
    return keep
