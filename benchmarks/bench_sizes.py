"""Benchmark: the cost of the three ``mini`` model sizes, per training step and per evaluation.

Builds each size's image encoder (random weights, nothing downloaded), times one AdamW training
step on a batch of 128 32x32 images (best of ``--repeats``) and inference on 1,000 images, and
prints each as a multiple of B-32: the figures the README quotes for the cost of the scale study
(notebook 06).

    .venv/bin/python benchmarks/bench_sizes.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import time

import torch

from breadcrumbs_lib.modeling.models import create_clip
from breadcrumbs_lib.worlds.presets import MINI, SIZES


def best_seconds(step, repeats: int) -> float:
    step()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    batch, images = torch.randn(128, 3, 32, 32), torch.randn(1000, 3, 32, 32)
    rows = {}
    for size in SIZES:
        encoder = create_clip(MINI.model_name(size), seed=0, device="cpu").visual
        optimizer = torch.optim.AdamW(encoder.parameters())

        def train_step() -> None:
            encoder(batch).square().mean().backward()
            optimizer.step()
            optimizer.zero_grad()

        def infer() -> None:
            with torch.inference_mode():
                encoder(images)

        parameters = sum(p.numel() for p in encoder.parameters())
        rows[size] = (parameters, best_seconds(train_step, args.repeats), best_seconds(infer, args.repeats))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print("size  parameters  train step (batch 128)  inference (1,000 images)")
    train_ref, infer_ref = rows["B-32"][1], rows["B-32"][2]
    for size, (parameters, train, infer) in rows.items():
        print(f"{size}  {parameters:>10,}  {1000 * train:8.0f} ms ({train / train_ref:4.1f}x)"
              f"  {1000 * infer:8.0f} ms ({infer / infer_ref:4.1f}x)")


if __name__ == "__main__":
    main()
