"""What identifies a sweep's results in the store: preset, size, seed, library version, recipe
and the SHA-256 digests of the checkpoints merged (see :class:`.results_store.RunIdentity`)."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from .. import __version__
from ..core.state_dicts import state_dict_digest
from ..worlds.workbench import AnyWorkbench, artifact_key
from .results_store import RunIdentity
from .sweep_units import SweepContext


def run_identity(context: SweepContext, bench: AnyWorkbench) -> RunIdentity:
    """What identifies the results of ``bench``: preset, size, seed, library version, recipe and
    the digests of the base and of every fine-tuned checkpoint."""
    base_digest, finetuned_digests = checkpoint_digests(bench)
    return RunIdentity(
        preset=context.preset.name,
        size=context.size,
        seed=context.seed,
        library_version=__version__,
        artifact_key=artifact_key(context.preset, context.preset.model_name(context.size), context.seed),
        base_digest=base_digest,
        finetuned_digests=finetuned_digests,
    )


def checkpoint_digests(bench: AnyWorkbench) -> tuple[str, dict[str, str]]:
    """The digests of ``bench``'s base and of each task's fine-tuned model, computed once for the
    workbench object last asked about: every sweep of a notebook asks, and hashing ViT-L/14
    checkpoints takes seconds."""
    base_digest, finetuned_digests = _digests(_ByIdentity(bench))
    return base_digest, dict(finetuned_digests)


@dataclass(frozen=True, eq=False)
class _ByIdentity:
    """A workbench, compared and hashed as the object it is (workbenches hold tensors): the key
    under which its digests are cached, holding it so that its ``id`` is not reused meanwhile."""

    bench: AnyWorkbench

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _ByIdentity) and other.bench is self.bench

    def __hash__(self) -> int:
        return id(self.bench)


@functools.lru_cache(maxsize=1)
def _digests(held: _ByIdentity) -> tuple[str, dict[str, str]]:
    bench = held.bench
    return state_dict_digest(bench.base), {task: state_dict_digest(state) for task, state in bench.finetuned.items()}
