"""Benchmark: the cost of Breadcrumbs masking relative to plain task arithmetic.

Builds random task vectors with the exact tensor shapes of open_clip's ViT-B-32 image tower
(architecture only, ``pretrained=None``: nothing is downloaded), merges ``--tasks`` of them with
task arithmetic and with Breadcrumbs (beta 0.85, gamma 0.01, per tensor) on the same inputs,
interleaved with a plain loop of ``acc += ft - base`` (task arithmetic with no checks), and
prints every run's wall time, system time and page faults, and the ratios of the two methods to
each other and to the loop (best runs, medians, back-to-back pairs), measured in this one run.

    .venv/bin/python benchmarks/bench_merge.py [--tasks 8] [--repeats 9] [--granularity tensor]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
from dataclasses import dataclass

import open_clip
import torch

from breadcrumbs_lib import TaskVector, merge
from breadcrumbs_lib.core.masks import find_breadcrumbs_band
from breadcrumbs_lib.core._accel.selection import band_masked


def vit_b32_image_tower() -> dict[str, torch.Tensor]:
    model = open_clip.create_model("ViT-B-32", pretrained=None)
    return {key: value.detach().clone() for key, value in model.visual.state_dict().items()}


def finetuned_copies(base: dict[str, torch.Tensor], count: int, seed: int) -> list[dict[str, torch.Tensor]]:
    """``count`` perturbations of ``base``: Student-t deltas (heavy tails, like real task vectors)."""
    generator = torch.Generator().manual_seed(seed)
    copies = []
    for _ in range(count):
        copy = {}
        for key, weight in base.items():
            scale = 1e-3 * (float(weight.float().std()) if weight.numel() > 1 else 1.0)
            noise = torch.randn(weight.shape, generator=generator) / torch.rand(weight.shape, generator=generator).add_(0.05).sqrt()
            copy[key] = weight + scale * noise
        copies.append(copy)
    return copies


@dataclass(frozen=True)
class Run:
    """One merge: wall-clock seconds, and the process's system time and minor page faults in it."""

    wall: float
    system: float
    page_faults: int


def time_merge(base, finetuned, method: str, **hyperparameters) -> Run:
    before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    merge(base, finetuned, method, **hyperparameters)
    wall, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF)
    return Run(wall, after.ru_stime - before.ru_stime, after.ru_minflt - before.ru_minflt)


def plain_loop(base, finetuned, alpha: float) -> dict[str, torch.Tensor]:
    """Task arithmetic with nothing else: ``acc += ft - base`` per tensor, then ``base + alpha * acc``
    (no checks, no dtype handling): the floor the library's merges are measured against."""
    total = {key: finetuned[0][key] - value for key, value in base.items()}
    for model in finetuned[1:]:
        for key, value in base.items():
            total[key] += model[key] - value
    return {key: value + alpha * total[key] for key, value in base.items()}


def time_plain_loop(base, finetuned, alpha: float) -> Run:
    before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    plain_loop(base, finetuned, alpha)
    wall, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF)
    return Run(wall, after.ru_stime - before.ru_stime, after.ru_minflt - before.ru_minflt)


def breakdown(base, finetuned, repeats: int) -> dict[str, float]:
    """Best-of-``repeats`` seconds per fine-tuned model of each phase of a Breadcrumbs merge."""
    phases = {"form tau = theta' - theta": [], "locate the two cuts per tensor": [], "apply the mask": []}
    for _ in range(repeats):
        start = time.perf_counter()
        vector = TaskVector.from_state_dicts(base, finetuned[0])
        phases["form tau = theta' - theta"].append(time.perf_counter() - start)
        groups = [delta.reshape(1, -1) for delta in vector.values() if delta.dim() > 0]
        start = time.perf_counter()
        bands = [find_breadcrumbs_band(group, 0.85, 0.01) for group in groups]
        phases["locate the two cuts per tensor"].append(time.perf_counter() - start)
        start = time.perf_counter()
        for group, band in zip(groups, bands):
            band_masked(group, band, out=group)
        phases["apply the mask"].append(time.perf_counter() - start)
    return {phase: min(times) for phase, times in phases.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--granularity", default="tensor", choices=["tensor", "row", "global"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    base = vit_b32_image_tower()
    n_params = sum(value.numel() for value in base.values())
    finetuned = finetuned_copies(base, args.tasks, args.seed)
    print(f"ViT-B-32 image tower: {len(base)} tensors, {n_params / 1e6:.1f}M parameters; "
          f"{args.tasks} fine-tuned copies; torch {torch.__version__}, {torch.get_num_threads()} threads")

    loop, arithmetic, crumbs = [], [], []
    plain_loop(base, finetuned, 0.3)
    for method, hyperparameters in (("task_arithmetic", {}), ("breadcrumbs", {"beta": 0.85, "gamma": 0.01})):
        # Warm-up, one whole merge each: kernels loaded, work space grown, the allocator's heap at its size.
        merge(base, finetuned, method, alpha=0.3, **hyperparameters)
    for _ in range(args.repeats):  # interleaved, so that drifts in machine speed hit all alike
        loop.append(time_plain_loop(base, finetuned, 0.3))
        arithmetic.append(time_merge(base, finetuned, "task_arithmetic", alpha=0.3))
        crumbs.append(time_merge(base, finetuned, "breadcrumbs", alpha=0.3, beta=0.85, gamma=0.01,
                                 granularity=args.granularity))
    for label, runs in (("plain loop     ", loop), ("task arithmetic", arithmetic), ("breadcrumbs    ", crumbs)):
        print(f"{label} runs (s): {' '.join(f'{run.wall:.2f}' for run in runs)}   "
              f"system time (s): {' '.join(f'{run.system:.2f}' for run in runs)}   "
              f"page faults (median): {statistics.median(run.page_faults for run in runs):,.0f}")
    print(f"(breadcrumbs: beta 0.85, gamma 0.01, granularity {args.granularity})")
    # The best run is the least noisy estimate of a cost on a shared machine; the median, and the
    # median of the ratios of runs made back to back, are shown too.
    walls_ta, walls_bc = [run.wall for run in arithmetic], [run.wall for run in crumbs]
    print(f"ratio breadcrumbs / task arithmetic: {min(walls_bc) / min(walls_ta):.2f} (best runs), "
          f"{statistics.median(walls_bc) / statistics.median(walls_ta):.2f} (medians), "
          f"{statistics.median(bc / ta for bc, ta in zip(walls_bc, walls_ta)):.2f} (median of back-to-back pairs)")
    walls_loop = [run.wall for run in loop]
    for label, walls in (("task arithmetic", walls_ta), ("breadcrumbs", walls_bc)):
        print(f"ratio {label} / plain loop: {min(walls) / min(walls_loop):.2f} (best runs), "
              f"{statistics.median(walls) / statistics.median(walls_loop):.2f} (medians), "
              f"{statistics.median(m / p for m, p in zip(walls, walls_loop)):.2f} (median of back-to-back pairs)")
    print("where a Breadcrumbs merge spends its time, per fine-tuned model (best of the repeats):")
    for phase, seconds in breakdown(base, finetuned, args.repeats).items():
        print(f"  {phase:32s} {seconds:6.3f} s")


if __name__ == "__main__":
    main()
