"""Exact rank selection in O(n): which entries of a group lie in the middle band of an ordering.

Every mask in this library (Breadcrumbs, TIES trimming) is a statement about *ranks*: order the
``m`` entries of a group by magnitude and keep those whose rank ``r`` (0-based, smallest first)
satisfies ``n_low <= r < m - n_high``. Ranks are made total by breaking ties in magnitude by
position: of two equal magnitudes, the entry with the lower index has the lower rank. The result
is therefore deterministic and independent of the device or of the selection algorithm used.

The k-th smallest magnitude of a group is found without a full sort:

* many small groups (rows) at once: ``torch.kthvalue`` along the last dimension (quickselect);
* one large group: a seeded random sample brackets the k-th value, one counting pass fixes its
  exact rank, and ``torch.kthvalue`` runs only on the few entries inside the bracket. If the
  bracket misses (probability far below 1e-6), a full ``torch.kthvalue`` is used instead, so the
  answer is exact either way.

Entries whose magnitude equals a cut value are split by position with a cumulative count, which
is only computed when such a split is really needed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

# Groups with at least this many entries use the sample-bracket path.
_BRACKET_MIN_SIZE = 1 << 17
# Size of the random sample that brackets the k-th value.
_SAMPLE_SIZE = 1 << 14
# Half-width of the bracket, in binomial standard deviations of the sample count.
_BRACKET_SIGMAS = 6.0
_SAMPLE_SEED = 20231211


@dataclass(frozen=True)
class _Cut:
    """The k-th smallest value per group and how many entries lie strictly below / equal to it."""

    value: Tensor  # (G,)
    n_less: Tensor  # (G,) int64
    n_equal: Tensor  # (G,) int64


def middle_band_mask(magnitudes: Tensor, n_low: int, n_high: int) -> Tensor:
    """Boolean mask of the entries whose rank lies in ``[n_low, m - n_high)`` within each row.

    Args:
        magnitudes: ``(G, m)`` tensor of non-negative, finite values; each row is a group.
        n_low: number of smallest entries per row to drop (ranks ``0 .. n_low - 1``).
        n_high: number of largest entries per row to drop (ranks ``m - n_high .. m - 1``).

    Returns:
        ``(G, m)`` bool tensor with exactly ``m - n_low - n_high`` True entries per row.
    """
    if magnitudes.dim() != 2:
        raise ValueError(f"magnitudes must be 2-D (groups, entries), got shape {tuple(magnitudes.shape)}")
    n_groups, m = magnitudes.shape
    if n_low < 0 or n_high < 0 or n_low + n_high > m:
        raise ValueError(f"cannot drop {n_low} + {n_high} entries from groups of {m}")
    keep = torch.ones_like(magnitudes, dtype=torch.bool)
    if m == 0 or n_groups == 0:
        return keep
    if n_low > 0:
        cut = _kth_smallest(magnitudes, n_low)
        _drop_lowest(keep, magnitudes, cut, n_low)
    if n_high > 0:
        cut = _kth_smallest(magnitudes, m - n_high + 1)
        _drop_highest(keep, magnitudes, cut, n_high)
    return keep


def _drop_lowest(keep: Tensor, magnitudes: Tensor, cut: _Cut, count: int) -> None:
    """Clear ``keep`` at the ``count`` lowest ranks: all values below the cut, then the
    first ``count - n_less`` entries equal to it (lowest index first)."""
    take_equal = count - cut.n_less  # how many of the tied entries belong to the dropped set
    if bool((take_equal == cut.n_equal).all()):
        keep &= magnitudes > cut.value[:, None]
        return
    equal = magnitudes == cut.value[:, None]
    position_among_equal = equal.cumsum(dim=1)  # 1-based, in index order
    dropped = (magnitudes < cut.value[:, None]) | (equal & (position_among_equal <= take_equal[:, None]))
    keep &= ~dropped


def _drop_highest(keep: Tensor, magnitudes: Tensor, cut: _Cut, count: int) -> None:
    """Clear ``keep`` at the ``count`` highest ranks: all values above the cut, then the
    last ``count - n_greater`` entries equal to it (highest index first).

    Here ``cut`` is the (m - count + 1)-th smallest value, i.e. the lowest dropped rank.
    """
    m = magnitudes.shape[1]
    n_greater = m - cut.n_less - cut.n_equal
    take_equal = count - n_greater
    if bool((take_equal == cut.n_equal).all()):
        keep &= magnitudes < cut.value[:, None]
        return
    equal = magnitudes == cut.value[:, None]
    position_from_end = equal.flip(1).cumsum(dim=1).flip(1)  # 1-based, counted from the end
    dropped = (magnitudes > cut.value[:, None]) | (equal & (position_from_end <= take_equal[:, None]))
    keep &= ~dropped


def _kth_smallest(magnitudes: Tensor, k: int) -> _Cut:
    """The k-th smallest value (1-based) of every row, with exact counts below and equal."""
    n_groups, m = magnitudes.shape
    if n_groups == 1 and m >= _BRACKET_MIN_SIZE:
        cut = _kth_smallest_bracketed(magnitudes[0], k)
        if cut is not None:
            return cut
    value = torch.kthvalue(magnitudes, k, dim=1).values
    n_less = (magnitudes < value[:, None]).sum(dim=1)
    n_equal = (magnitudes == value[:, None]).sum(dim=1)
    return _Cut(value, n_less, n_equal)


def _kth_smallest_bracketed(values: Tensor, k: int) -> _Cut | None:
    """Sample-bracket selection on one large 1-D group; ``None`` if the bracket missed."""
    m = values.numel()
    generator = torch.Generator(device="cpu").manual_seed(_SAMPLE_SEED)
    sample_index = torch.randint(m, (_SAMPLE_SIZE,), generator=generator).to(values.device)
    sample = values[sample_index].sort().values
    q = k / m
    expected = q * _SAMPLE_SIZE
    half_width = _BRACKET_SIGMAS * math.sqrt(_SAMPLE_SIZE * q * (1.0 - q)) + 2.0
    lo_pos = math.floor(expected - half_width)
    hi_pos = math.ceil(expected + half_width)
    in_band = torch.ones_like(values, dtype=torch.bool)
    n_below = 0
    if lo_pos > 0:
        lo = sample[lo_pos]
        below = values < lo
        n_below = int(below.sum())
        in_band &= ~below
    if hi_pos < _SAMPLE_SIZE - 1:
        in_band &= values <= sample[hi_pos]
    band = values[in_band]
    rank_in_band = k - n_below
    if not 1 <= rank_in_band <= band.numel():
        return None
    value = torch.kthvalue(band, rank_in_band).values
    n_less = n_below + int((band < value).sum())
    n_equal = int((band == value).sum())
    counts = torch.tensor([n_less, n_equal], dtype=torch.int64, device=values.device)
    return _Cut(value.reshape(1), counts[:1], counts[1:])
