"""The Breadcrumbs mask ordered over a whole task vector (``granularity="global"``), one tensor at a time.

In memory, :meth:`breadcrumbs_lib.TaskVector.breadcrumbs_masks` orders the concatenation of a
task vector's tensors (each flattened, in key order; 0-d tensors left out and never masked) by
``|tau|``, ties by position, and keeps the ranks ``[floor(beta * N), N - floor(gamma * N))``.
A task vector too large to hold gets the same mask from its tensors visited in turn, in the same
order, by two histogram passes and a masking pass:

1. :class:`BandLocator` (or :func:`locate_global_band`, for tensors at hand) finds the two
   cuts: the largest magnitude dropped from the bottom (rank ``floor(beta * N) - 1``) and the
   smallest dropped from the top (rank ``N - floor(gamma * N)``), with how many entries lie
   below each. A non-negative float32 orders
   as its bit pattern does, so the first pass counts the upper 16 bits of every ``|tau|`` and
   the second the lower 16 bits inside the two bins that hold the cuts: exact, O(N), and a few
   hundred KiB of counts whatever N.
2. :class:`GlobalMasker` gives each tensor's mask: entries strictly inside the cuts are kept;
   of the entries equal to a cut, the first ones by position are the ones ranked below the
   others, so the masker counts them across tensors.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import Tensor

from .masks import band_counts, check_fractions

_HALF_BITS = 16
_BINS = 1 << 15  # upper halves of non-negative float32 bit patterns: the sign bit is 0
_FINE_BINS = 1 << _HALF_BITS
_INFINITY_BITS = 0x7F800000  # +inf; NaN patterns lie above it


@dataclass(frozen=True)
class GlobalBand:
    """The kept ranks ``[n_low, n - n_high)`` of ``n`` ordered entries, located by value.

    ``low``: the float32 bit pattern of the largest magnitude dropped from the bottom (``None``
    when ``n_low == 0``), with ``low_less`` entries strictly below it; ``high``: that of the
    smallest magnitude dropped from the top (``None`` when ``n_high == 0``), ``high_less`` below.
    """

    n: int
    n_low: int
    n_high: int
    low: int | None
    low_less: int
    high: int | None
    high_less: int

    @property
    def low_ties_dropped(self) -> int:
        """Of the entries equal to ``low``, how many (the first by position) are dropped."""
        return self.n_low - self.low_less

    @property
    def high_ties_kept(self) -> int:
        """Of the entries equal to ``high``, how many (the first by position) are kept."""
        return self.n - self.n_high - self.high_less


def magnitude_bits(delta: Tensor) -> Tensor:
    """``|delta|`` in float32, flattened, as int32 bit patterns (ordered as the magnitudes are).
    ``ValueError`` if an entry is not finite."""
    bits = delta.detach().to(torch.float32).abs().reshape(-1).view(torch.int32)
    bad = int((bits >= _INFINITY_BITS).sum())
    if bad:
        raise ValueError(f"delta of shape {tuple(delta.shape)} has {bad} non-finite entries")
    return bits


def locate_global_band(tensors: Iterable[Tensor], again: Iterable[Tensor], beta: float, gamma: float) -> GlobalBand:
    """The :class:`GlobalBand` of the concatenation of ``tensors`` (a task vector's non-0-d
    tensors, in order), read twice: ``tensors`` for the coarse counts, ``again`` (the same
    tensors once more, in any order) for the fine ones."""
    locator = BandLocator(beta, gamma)
    for delta in tensors:
        locator.count(delta)
    for delta in again if locator.needs_refinement else ():
        locator.refine(delta)
    return locator.band()


class BandLocator:
    """The :class:`GlobalBand` of one task vector, from two visits of its non-0-d tensors:
    :meth:`count` each in the first, :meth:`refine` each in the second (unless
    :attr:`needs_refinement` is False: no entry is dropped), then :meth:`band`. Several locators
    (one per model) can share one visit of the tensors."""

    def __init__(self, beta: float, gamma: float):
        check_fractions(beta, gamma)
        self.beta, self.gamma = beta, gamma
        self._coarse = torch.zeros(_BINS, dtype=torch.int64)
        self._n = 0
        self._bins: dict[str, int] | None = None  # cut -> the upper 16 bits of its bin, once counted
        self._fine: dict[str, Tensor] = {}

    def count(self, delta: Tensor) -> None:
        """First visit: the upper 16 bits of each ``|delta|``."""
        if self._bins is not None:
            raise RuntimeError("count() after refine(): every tensor is counted before any is refined")
        bits = magnitude_bits(delta)
        self._coarse += torch.bincount(bits >> _HALF_BITS, minlength=_BINS)
        self._n += bits.numel()

    @property
    def needs_refinement(self) -> bool:
        """Whether a second visit is needed: False when ``beta`` and ``gamma`` drop no entry."""
        return bool(self._cut_bins())

    def refine(self, delta: Tensor) -> None:
        """Second visit: the lower 16 bits of each ``|delta|`` that falls in a cut's bin."""
        bits = magnitude_bits(delta)
        for side, upper_bits in self._cut_bins().items():
            inside = bits[(bits >> _HALF_BITS) == upper_bits]
            self._fine[side] += torch.bincount(inside & (_FINE_BINS - 1), minlength=_FINE_BINS)

    def band(self) -> GlobalBand:
        n_low, n_high = band_counts(self._n, self.beta, self.gamma)
        upper = torch.cumsum(self._coarse, 0)
        cuts: dict[str, tuple[int | None, int]] = {"low": (None, 0), "high": (None, 0)}
        for side, upper_bits in self._cut_bins().items():
            below_bin = int(upper[upper_bits - 1]) if upper_bits else 0
            lower = torch.cumsum(self._fine[side], 0)
            sub = int(torch.searchsorted(lower, self._ranks()[side] - below_bin, right=True))
            cuts[side] = ((upper_bits << _HALF_BITS) | sub, below_bin + (int(lower[sub - 1]) if sub else 0))
        return GlobalBand(self._n, n_low, n_high, *cuts["low"], *cuts["high"])

    def _ranks(self) -> dict[str, int]:
        """The 0-based rank of each cut: the largest dropped from the bottom, the smallest from the top."""
        n_low, n_high = band_counts(self._n, self.beta, self.gamma)
        ranks = {"low": n_low - 1, "high": self._n - n_high}
        return {side: rank for side, rank in ranks.items() if (n_low if side == "low" else n_high)}

    def _cut_bins(self) -> dict[str, int]:
        if self._bins is None:
            upper = torch.cumsum(self._coarse, 0)
            self._bins = {side: int(torch.searchsorted(upper, rank, right=True)) for side, rank in self._ranks().items()}
            self._fine = {side: torch.zeros(_FINE_BINS, dtype=torch.int64) for side in self._bins}
        return self._bins


class GlobalMasker:
    """Each tensor's keep-mask under a :class:`GlobalBand`, for the tensors given in the order
    the band was located in (each once)."""

    def __init__(self, band: GlobalBand):
        self.band = band
        self._low_seen = 0  # entries equal to the low cut in the tensors masked so far
        self._high_seen = 0

    def keep(self, delta: Tensor) -> Tensor:
        """The bool keep-mask of the next tensor ``delta`` (0-d tensors: kept, not counted)."""
        if delta.dim() == 0:
            return torch.ones_like(delta, dtype=torch.bool)
        bits, band = magnitude_bits(delta), self.band
        keep = torch.ones_like(bits, dtype=torch.bool)
        if band.low is not None:
            tied = bits == band.low
            count = int(tied.sum())
            keep &= (bits > band.low) | self._tied_from(tied, self._low_seen, count, band.low_ties_dropped)
            self._low_seen += count
        if band.high is not None:
            tied = bits == band.high
            count = int(tied.sum())
            keep &= (bits < band.high) | (tied & ~self._tied_from(tied, self._high_seen, count, band.high_ties_kept))
            self._high_seen += count
        return keep.reshape(delta.shape)

    @staticmethod
    def _tied_from(tied: Tensor, seen: int, count: int, start: int) -> Tensor:
        """The entries of ``tied`` (``count`` of them, after ``seen`` tied entries in earlier
        tensors) whose position among all tied entries is ``start`` or later; the running count
        is formed only for the one tensor where that position falls."""
        if seen >= start:
            return tied
        if seen + count <= start:
            return torch.zeros_like(tied)
        return tied & (seen + torch.cumsum(tied, 0) - 1 >= start)
