"""The fast path of the masks: O(n) rank-band selection and its numba kernels. Private: the
public definitions (and the reference the fast path is tested against) are in :mod:`..masks`.

The rest of :mod:`..core` imports only the names below; the kernels in :mod:`.cpu_kernels` are
reached through them.
"""

from .difference import add_float32_difference, float32_difference
from .selection import NonFiniteValuesError, RankBand, band_mask, band_masked, find_band, masked_outside_ranks

__all__ = ["NonFiniteValuesError", "RankBand", "add_float32_difference", "band_mask", "band_masked", "find_band",
           "float32_difference", "masked_outside_ranks"]
