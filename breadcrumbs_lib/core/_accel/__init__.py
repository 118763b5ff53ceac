"""The fast path of the masks: O(n) rank-band selection and its numba kernels. Private: the
public definitions (and the reference the fast path is tested against) are in :mod:`..masks`."""
