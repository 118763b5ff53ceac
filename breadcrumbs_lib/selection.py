"""Exact rank selection in O(n): which entries of a group lie in the middle band of an ordering.

Every mask in this library (Breadcrumbs, TIES trimming) is a statement about *ranks*: order the
``m`` entries of a group by magnitude ``|x|`` and keep those whose rank ``r`` (0-based, smallest
first) satisfies ``n_low <= r < m - n_high``. Ranks are made total by breaking ties in magnitude
by position: of two equal magnitudes, the entry with the lower index has the lower rank. The
result is therefore deterministic and independent of the device and of the algorithm.

A band is located by its two *cuts*: the ``n_low``-th smallest magnitude and the
``(m - n_high + 1)``-th smallest, each with exact counts of entries below and equal to it. When
no run of tied magnitudes straddles a cut (the usual case for real-valued weights), the band is
simply the open interval ``low < |x| < high``; otherwise ties are split by position.

Cuts are found without a full sort:

* one group on the CPU: a seeded random sample brackets each cut, one fused parallel pass
  (:mod:`.cpu_kernels`) counts the entries below each bracket and collects those inside, and
  ``np.partition`` finds the exact value among the few collected. A bracket that misses (far
  below one chance in a million) falls back to partitioning the whole group: exact either way.
* many groups (rows), or other devices: ``torch.kthvalue`` along the last dimension.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from . import cpu_kernels

_SAMPLE_SIZE = 1 << 14  # entries drawn to bracket a cut
_SMALL_GROUP = 1 << 16  # groups up to this size are partitioned whole
_BRACKET_SIGMAS = 5.0  # half-width of a bracket, in binomial standard deviations
_SAMPLE_SEED = 20231211
_NO_LOW_CUT = -1.0  # below every magnitude
_NO_HIGH_CUT = math.inf  # above every (finite) magnitude
_BEYOND_FINITE_KEYS = np.uint32(0x80000000)  # above the key of every finite magnitude


@dataclass(frozen=True)
class Cut:
    """The k-th smallest magnitude of each group and how many entries lie below / at it.

    Fields are ``(G,)`` arrays: numpy on the one-group CPU path (cheaper to build), torch
    tensors on the values' device otherwise.
    """

    value: Tensor | np.ndarray  # (G,) float32
    n_less: Tensor | np.ndarray  # (G,) int64
    n_equal: Tensor | np.ndarray  # (G,) int64


@dataclass(frozen=True)
class RankBand:
    """Ranks ``[n_low, m - n_high)`` of each of the G groups of ``m`` entries, located by value."""

    m: int
    n_low: int
    n_high: int
    low: Cut | None  # the n_low-th smallest magnitude; None when n_low == 0
    high: Cut | None  # the (m - n_high + 1)-th smallest magnitude; None when n_high == 0

    @property
    def is_open_interval(self) -> bool:
        """True when the band is exactly ``{x : low < |x| < high}`` in every group."""
        low_ok = self.low is None or bool((self.n_low - self.low.n_less == self.low.n_equal).all())
        high_ok = self.high is None or bool((self.high.n_less == self.m - self.n_high).all())
        return low_ok and high_ok

    def bounds(self, device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
        """``(low, high)`` per group as tensors on ``device``, with -1 / inf for a missing cut."""
        n_groups = next((len(cut.value) for cut in (self.low, self.high) if cut is not None), 1)
        low = _as_tensor(self.low.value, device) if self.low is not None else None
        high = _as_tensor(self.high.value, device) if self.high is not None else None
        low = low if low is not None else torch.full((n_groups,), _NO_LOW_CUT, device=device)
        high = high if high is not None else torch.full((n_groups,), _NO_HIGH_CUT, device=device)
        return low, high


def find_band(values: Tensor, n_low: int, n_high: int) -> RankBand:
    """Locate the ranks ``[n_low, m - n_high)`` of ``|values|`` in each row of a ``(G, m)`` tensor.

    ``values`` must be float32 and finite.
    """
    if values.dim() != 2 or values.dtype != torch.float32:
        raise ValueError(f"values must be a 2-D float32 tensor, got {values.dtype} of shape {tuple(values.shape)}")
    n_groups, m = values.shape
    if n_low < 0 or n_high < 0 or n_low + n_high > m:
        raise ValueError(f"cannot drop {n_low} + {n_high} entries from groups of {m}")
    ranks = (n_low if n_low > 0 else None, m - n_high + 1 if n_high > 0 else None)
    if m == 0 or n_groups == 0 or ranks == (None, None):
        return RankBand(m, n_low, n_high, None, None)
    if n_groups == 1 and values.device.type == "cpu":
        low, high = _cuts_one_group_cpu(values[0], ranks)
    else:
        low, high = (None if k is None else _cuts_torch(values, k) for k in ranks)
    return RankBand(m, n_low, n_high, low, high)


def band_mask(values: Tensor, band: RankBand) -> Tensor:
    """Bool ``(G, m)`` mask of the entries of ``values`` inside ``band``."""
    if _cpu_fast_path(values):
        out = torch.empty(values.shape, dtype=torch.bool)
        if band.is_open_interval:
            cpu_kernels.fill_keep_mask(_bits(values), *_key_range(band), out.view(-1).numpy())
        else:
            rule = _tie_rule(band)
            cpu_kernels.fill_keep_mask(_bits(values), *_closed_key_range(rule), out.view(-1).numpy())
            cpu_kernels.drop_split_ties(_bits(values), *rule, out.view(-1).numpy())
        return out
    if band.is_open_interval:
        low, high = (bound[:, None] for bound in band.bounds(values.device))
        magnitudes = values.abs()
        return (magnitudes > low) & (magnitudes < high)
    return _mask_splitting_ties(values.abs(), band)


def band_masked(values: Tensor, band: RankBand, out: Tensor | None = None) -> Tensor:
    """``values`` with the entries outside ``band`` set to 0, written to ``out`` (a new float32
    tensor by default; ``out=values`` masks in place)."""
    if out is None:
        out = torch.empty_like(values)
    if not (_cpu_fast_path(values) and out.is_contiguous()):
        return torch.mul(values, band_mask(values, band), out=out)
    array = values.reshape(-1).numpy()
    if band.is_open_interval:
        cpu_kernels.fill_masked(array, array.view(np.uint32), *_key_range(band), out.view(-1).numpy())
    else:
        rule = _tie_rule(band)
        cpu_kernels.fill_masked(array, array.view(np.uint32), *_closed_key_range(rule), out.view(-1).numpy())
        cpu_kernels.drop_split_ties(array.view(np.uint32), *rule, out.view(-1).numpy())
    return out


def middle_band_mask(values: Tensor, n_low: int, n_high: int) -> Tensor:
    """Bool mask with exactly ``m - n_low - n_high`` True entries per row of ``(G, m)`` ``values``:
    those whose rank by ``|values|`` (ties: lower index first) lies in ``[n_low, m - n_high)``."""
    return band_mask(values, find_band(values, n_low, n_high))


def _as_tensor(array: Tensor | np.ndarray, device: torch.device | str) -> Tensor:
    return torch.as_tensor(array, device=device)


def _cpu_fast_path(values: Tensor) -> bool:
    return values.device.type == "cpu" and values.shape[0] == 1 and values.is_contiguous()


def _bits(values: Tensor) -> np.ndarray:
    """The uint32 view of a contiguous float32 CPU tensor (no copy)."""
    return values.reshape(-1).numpy().view(np.uint32)


def _key(value: Tensor) -> np.uint32:
    """The magnitude key of a one-element float32 tensor."""
    return np.float32(abs(float(value[0]))).view(np.uint32)


def _key_range(band: RankBand) -> tuple[np.uint32, np.uint32]:
    """``(first, span)``: the band is exactly the keys in ``[first, first + span)``."""
    first = np.uint32(_key(band.low.value) + 1) if band.low is not None else np.uint32(0)
    end = _key(band.high.value) if band.high is not None else _BEYOND_FINITE_KEYS
    return first, np.uint32(end - first)


# --------------------------------------------------------------------------------- locating cuts
def _cuts_torch(values: Tensor, k: int) -> Cut:
    """The k-th smallest (1-based) magnitude of every row, by ``torch.kthvalue``."""
    magnitudes = values.abs()
    value = torch.kthvalue(magnitudes, k, dim=1).values
    n_less = (magnitudes < value[:, None]).sum(dim=1)
    n_equal = (magnitudes == value[:, None]).sum(dim=1)
    return Cut(value, n_less, n_equal)


def _cuts_one_group_cpu(values: Tensor, ranks: tuple[int | None, int | None]) -> tuple[Cut | None, Cut | None]:
    """Cuts at 1-based ranks of one contiguous float32 group on the CPU: sample, bracket,
    count and collect (one fused pass over both windows), then select among the collected."""
    bits = _bits(values.contiguous())
    m = bits.size
    if m <= _SMALL_GROUP:  # cheaper to partition all keys than to launch the parallel scan
        keys = bits & cpu_kernels.MAGNITUDE_BITS
        return tuple(None if k is None else _cut_from_band(keys, k, 0) for k in ranks)
    sample = _sorted_sample_keys(bits)
    windows = [_window(sample, k, m) for k in ranks]
    below_1, band_1, below_2, band_2 = cpu_kernels.count_and_collect(
        bits, *windows[0], *windows[1], cpu_kernels.n_chunks(m)
    )
    cuts = []
    for k, below, band in zip(ranks, (below_1, below_2), (band_1, band_2)):
        if k is None:
            cuts.append(None)
            continue
        if not 1 <= k - below <= band.size:  # the bracket missed: select over the whole group
            below, band = 0, bits & cpu_kernels.MAGNITUDE_BITS
        cuts.append(_cut_from_band(band, k - int(below), int(below)))
    return cuts[0], cuts[1]


def _sorted_sample_keys(bits: np.ndarray) -> np.ndarray:
    """Sorted magnitude keys of a seeded random sample."""
    rng = np.random.default_rng(_SAMPLE_SEED)
    return np.sort(bits[rng.integers(0, bits.size, size=_SAMPLE_SIZE)] & cpu_kernels.MAGNITUDE_BITS)


def _window(sample: np.ndarray, k: int | None, m: int) -> tuple[np.uint32, np.uint32]:
    """A key window ``(lo, width)`` that very likely holds the k-th smallest of m keys."""
    if k is None:
        return cpu_kernels.EMPTY_WINDOW
    q = k / m
    expected = q * sample.size
    half_width = _BRACKET_SIGMAS * math.sqrt(sample.size * q * (1.0 - q)) + 2.0
    lo_pos, hi_pos = math.floor(expected - half_width), math.ceil(expected + half_width)
    lo = sample[lo_pos] if lo_pos > 0 else np.uint32(0)
    hi = sample[hi_pos] if hi_pos < sample.size - 1 else cpu_kernels.MAGNITUDE_BITS
    return np.uint32(lo), np.uint32(hi - lo)


def _cut_from_band(band: np.ndarray, rank_in_band: int, n_below: int) -> Cut:
    """The ``rank_in_band``-th smallest key of ``band``, with counts offset by ``n_below``."""
    key = np.partition(band, rank_in_band - 1)[rank_in_band - 1]
    n_less = n_below + int(np.count_nonzero(band < key))
    n_equal = int(np.count_nonzero(band == key))
    return Cut(
        np.array([key], dtype=np.uint32).view(np.float32),
        np.array([n_less], dtype=np.int64),
        np.array([n_equal], dtype=np.int64),
    )


# --------------------------------------------------------------------------------- splitting ties
def _tie_rule(band: RankBand) -> tuple:
    """Arguments ``(low_key, drop_low, high_key, keep_high_end, chunks)`` of
    :func:`cpu_kernels.drop_split_ties` for a one-group band whose cuts split ties."""
    low_key, drop_low = np.uint32(0), 0
    if band.low is not None:
        low_key, drop_low = _key(band.low.value), band.n_low - int(band.low.n_less[0])
    high_key, keep_high_end = cpu_kernels.MAGNITUDE_BITS, band.m  # no finite key equals it
    if band.high is not None:
        high_key, keep_high_end = _key(band.high.value), band.m - band.n_high - int(band.high.n_less[0])
    return low_key, drop_low, high_key, keep_high_end, cpu_kernels.n_chunks(band.m)


def _closed_key_range(rule: tuple) -> tuple[np.uint32, np.uint32]:
    """``(first, span)`` of the keys in ``[low_key, high_key]`` of a tie rule."""
    low_key, _, high_key, _, _ = rule
    return np.uint32(low_key), np.uint32(int(high_key) - int(low_key) + 1)


def _mask_splitting_ties(magnitudes: Tensor, band: RankBand) -> Tensor:
    """Band mask when tied magnitudes straddle a cut: the tie is split by position."""
    keep = torch.ones_like(magnitudes, dtype=torch.bool)
    device = magnitudes.device
    if band.low is not None:
        value = _as_tensor(band.low.value, device)[:, None]
        take = _as_tensor(band.n_low - band.low.n_less, device)[:, None]  # tied entries to drop, lowest first
        equal = magnitudes == value
        keep &= ~((magnitudes < value) | (equal & (equal.cumsum(dim=1) <= take)))
    if band.high is not None:
        value = _as_tensor(band.high.value, device)[:, None]
        n_greater = band.m - band.high.n_less - band.high.n_equal
        take = _as_tensor(band.n_high - n_greater, device)[:, None]  # tied entries to drop, highest first
        equal = magnitudes == value
        from_end = equal.flip(1).cumsum(dim=1).flip(1)
        keep &= ~((magnitudes > value) | (equal & (from_end <= take)))
    return keep
