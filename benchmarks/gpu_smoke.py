"""GPU smoke test of the ``paper`` path: every stage a GPU run goes through, on fake data, offline.

    .venv/bin/python benchmarks/gpu_smoke.py                   # on a GPU: about the default sizes below
    .venv/bin/python benchmarks/gpu_smoke.py --device cpu --batch-size 4 --steps 2 --large-steps 1 \\
        --eval-images 64                                       # the same stages, small, on a CPU

What it runs, in a temporary folder (``--workdir`` to keep it), downloading nothing:

1. fake MNIST (idx files) and DTD (images and label files) in torchvision's on-disk layouts;
2. a randomly initialised CLIP ViT-B/32 with QuickGELU (as OpenAI's weights are) saved as
   safetensors, read back through the ``weights`` option as real weights would be;
3. ``prepare("paper")`` with the preset's recipe cut to ``--steps`` fine-tuning steps per task
   (bf16 autocast on the GPU), the evaluation images decoded once into the cache;
4. evaluation throughput (images per second) of one merged model over the cached test images;
5. ``--large-steps`` fine-tuning steps of a random ViT-L/14 at ``--batch-size``, with the peak
   GPU memory;
6. a sweep of a few units in two local worker processes and the same sweep on a one-worker local
   Dask cluster (their records must agree);
7. the fine-tuned models written in both ``finetuned_dir`` layouts (open_clip files, Hugging Face
   CLIP vision folders) and read back by ``prepare`` equal to the originals.

It prints one table (stage, seconds, what it measured) and exits non-zero if a check fails.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import shutil
import struct
import tempfile
import time
from pathlib import Path

import numpy as np
import open_clip
import pandas as pd
import torch
from PIL import Image
from safetensors.torch import save_file

from breadcrumbs_lib import merge
from breadcrumbs_lib.checkpoints.clip_names import open_clip_to_hf_clip_vision
from breadcrumbs_lib.modeling.data import ImageSplit
from breadcrumbs_lib.modeling.devices import pick_device
from breadcrumbs_lib.modeling.models import ImageClassifier
from breadcrumbs_lib.modeling.training import OptimConfig, finetune
from breadcrumbs_lib.study.sweep_units import SweepContext
from breadcrumbs_lib.study.sweeps import Sweep, dask_executor, grid, run_sweep
from breadcrumbs_lib.worlds.paper.tasks import PAPER_TASKS
from breadcrumbs_lib.worlds.prepare import prepare
from breadcrumbs_lib.worlds.presets import get_preset
from breadcrumbs_lib.workbook.notebook import markdown_table

TASKS = ("MNIST", "DTD")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default=None, help="default: cuda, then mps, then cpu")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20, help="fine-tuning steps per task (ViT-B/32)")
    parser.add_argument("--large-steps", type=int, default=3, help="fine-tuning steps of the ViT-L/14")
    parser.add_argument("--eval-images", type=int, default=4096, help="test images of the fake MNIST")
    parser.add_argument("--workdir", default=None, help="keep the data, cache and stores here")
    args = parser.parse_args()

    logging.getLogger("distributed").setLevel(logging.WARNING)  # the local cluster's start and stop
    device = torch.device(args.device) if args.device else pick_device()
    root = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="gpu-smoke-"))
    rows: list[dict[str, object]] = []
    try:
        run(args, device, root, rows)
    finally:
        print(markdown_table(pd.DataFrame(rows)))
        if not args.workdir:
            shutil.rmtree(root, ignore_errors=True)


def run(args: argparse.Namespace, device: torch.device, root: Path, rows: list[dict[str, object]]) -> None:
    def stage(name: str, start: float, result: str) -> None:
        rows.append({"stage": name, "seconds": round(time.perf_counter() - start, 1), "result": result})
        print(f"{name}: {result}", flush=True)

    start = time.perf_counter()
    data_root = root / "data"
    write_fake_mnist(data_root, train_per_class=max(4, args.batch_size // 10), test_images=args.eval_images)
    write_fake_dtd(data_root, per_class_and_split=2)
    stage("fake datasets", start, f"MNIST ({args.eval_images} test images), DTD (47 classes) in torchvision's layouts")

    start = time.perf_counter()
    weights = root / "ViT-B-32-random.safetensors"
    clip = open_clip.create_model("ViT-B-32", pretrained=None, force_quick_gelu=True)
    save_file({key: value.contiguous() for key, value in clip.state_dict().items()}, str(weights))
    stage("random ViT-B/32 weights", start, f"{sum(p.numel() for p in clip.parameters()) / 1e6:.1f}M parameters, "
          "QuickGELU, safetensors")

    paper = get_preset("paper")
    preset = dataclasses.replace(paper, finetune=dataclasses.replace(
        paper.finetune, steps=args.steps, batch_size=args.batch_size, warmup_steps=min(args.steps, 2)))
    context = SweepContext(preset, "B-32", seed=0, cache_dir=str(root / "cache"), tasks=TASKS, device=str(device),
                           data_root=str(data_root), weights=(("B-32", str(weights)),))

    start = time.perf_counter()
    bench = context.prepare()
    tuned = ", ".join(f"{task} {bench.seconds[f'fine-tuning {task}']:.1f} s" for task in TASKS)
    stage(f"prepare: {args.steps} fine-tuning steps per task, batch {args.batch_size}", start, tuned)

    start = time.perf_counter()
    merged = merge(bench.base, [bench.finetuned[task] for task in TASKS], "breadcrumbs", alpha=0.3, beta=0.85,
                   gamma=0.01)
    evaluator = bench.evaluators(["test"])["test"]
    evaluator.load(merged)
    evaluator.accuracy("MNIST")  # warm-up: kernels, and the images' pages read once
    sync(device)
    timed = time.perf_counter()
    evaluator.accuracy("MNIST")
    sync(device)
    per_second = args.eval_images / (time.perf_counter() - timed)
    stage("evaluation of a merged model", start, f"{per_second:,.0f} images / s (MNIST test, cached uint8, bf16)")

    start = time.perf_counter()
    stage(f"ViT-L/14: {args.large_steps} fine-tuning step(s), batch {args.batch_size}", start,
          large_model_steps(args.large_steps, args.batch_size, device))

    start = time.perf_counter()
    sweep = Sweep("task_arithmetic", grid(alpha=[0.3, 0.5]), subsets="all")
    local = run_sweep(sweep, context, store=root / "local.sqlite", workers=2, progress=False)
    stage("sweep, two local worker processes", start, f"{len(local)} records")
    start = time.perf_counter()
    with dask_executor(n_workers=1) as executor:
        on_dask = run_sweep(sweep, context, store=root / "dask.sqlite", executor=executor, progress=False)
    columns = ["method", "hyperparameters", "subset", "scored_task", "split", "accuracy"]
    same = local[columns].sort_values(columns[:5]).reset_index(drop=True).equals(
        on_dask[columns].sort_values(columns[:5]).reset_index(drop=True))
    stage("sweep, one-worker Dask cluster", start, f"{len(on_dask)} records, equal to the local sweep's: {same}")
    check(same, "the Dask sweep's records differ from the local sweep's")

    start = time.perf_counter()
    stage("finetuned_dir, both layouts", start, read_back_both_layouts(context, bench, root))


def write_fake_mnist(data_root: Path, *, train_per_class: int, test_images: int) -> None:
    """MNIST's four idx files (uncompressed, as torchvision reads them) under ``MNIST/raw``."""
    raw = data_root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for prefix, count in (("train", 10 * train_per_class), ("t10k", test_images)):
        labels = (np.arange(count) % 10).astype(np.uint8)
        images = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">iiii", 2051, count, 28, 28) + images.tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">ii", 2049, count) + labels.tobytes())


def write_fake_dtd(data_root: Path, *, per_class_and_split: int) -> None:
    """DTD's images and partition-1 label files under ``dtd/dtd``, one folder per class."""
    folder = data_root / "dtd" / "dtd"
    rng = np.random.default_rng(1)
    names = [name.replace(" ", "_") for name in PAPER_TASKS["DTD"].classnames or [f"texture{k}" for k in range(47)]]
    (folder / "labels").mkdir(parents=True, exist_ok=True)
    for split in ("train", "val", "test"):
        lines = []
        for name in names:
            (folder / "images" / name).mkdir(parents=True, exist_ok=True)
            for i in range(per_class_and_split):
                file = f"{name}_{split}_{i}.jpg"
                Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(folder / "images" / name / file)
                lines.append(f"{name}/{file}")
        (folder / "labels" / f"{split}1.txt").write_text("\n".join(lines) + "\n")


def large_model_steps(steps: int, batch_size: int, device: torch.device) -> str:
    """``steps`` fine-tuning steps of a random ViT-L/14 image tower (bf16 autocast where the device
    has it), through a random frozen head; the peak GPU memory on a GPU."""
    encoder = open_clip.create_model("ViT-L-14", pretrained=None, force_quick_gelu=True).visual
    classifier = ImageClassifier(encoder, torch.nn.functional.normalize(torch.randn(10, encoder.output_dim), dim=1))
    images = torch.randint(0, 256, (2 * batch_size, 3, 224, 224), dtype=torch.uint8)
    train = ImageSplit(images, torch.arange(2 * batch_size) % 10)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    finetune(classifier.to(device), train, OptimConfig(steps=steps, batch_size=batch_size, lr=1e-5), seed=0,
             device=device)
    sync(device)
    seconds = (time.perf_counter() - started) / steps
    peak = f", peak GPU memory {torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB" if device.type == "cuda" else ""
    return f"{seconds:.2f} s per step{peak}"


def read_back_both_layouts(context: SweepContext, bench, root: Path) -> str:
    """The fine-tuned models as open_clip files and as Hugging Face CLIP vision folders, read back
    by ``prepare`` equal to the originals (models given in ``finetuned_dir`` take the place of
    the cached ones)."""
    for layout in ("open_clip", "hugging_face"):
        folder = root / f"finetuned-{layout}" / "B-32"
        for task in TASKS:
            state = {key: value.contiguous() for key, value in bench.finetuned[task].items()}
            if layout == "open_clip":
                folder.mkdir(parents=True, exist_ok=True)
                save_file(state, str(folder / f"{task}.safetensors"))
            else:
                (folder / task.lower()).mkdir(parents=True, exist_ok=True)
                save_file(open_clip_to_hf_clip_vision(state), str(folder / task.lower() / "model.safetensors"))
        again = dataclasses.replace(context, finetuned_dir=str(folder.parent)).prepare()
        equal = all(torch.equal(again.finetuned[task][key], bench.finetuned[task][key])
                    for task in TASKS for key in bench.finetuned[task])
        check(equal, f"the {layout} layout did not read back the models written")
    return "open_clip files and Hugging Face folders read back equal"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def check(condition: bool, message: str) -> None:
    if not condition:
        raise SystemExit(f"gpu_smoke: {message}")


if __name__ == "__main__":
    main()
