"""Validation splits held out of a training set by a seeded hash, not by position.

The ``paper`` worlds that build their own validation split (ImageNet's 200 tasks, the four text
datasets) take the examples whose keys hash lowest: the caller puts the seed and a stable name of
each example (a file's path, a record's task and line) in its key, so the choice depends on the
seed and the names, never on the order a filesystem or a file lists them in.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence


def lowest_hashes(keys: Sequence[str], count: int) -> set[int]:
    """The positions in ``keys`` of the ``count`` keys with the smallest SHA-256 digests."""
    ranked = sorted(range(len(keys)), key=lambda position: hashlib.sha256(keys[position].encode()).hexdigest())
    return set(ranked[:count])
