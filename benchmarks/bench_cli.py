"""Benchmark: ``breadcrumbs-merge`` against mergekit's ``breadcrumbs``, end to end, on disk.

Builds, in ``--workdir``, a base and ``--models`` fine-tuned copies of a CLIP image tower in
Hugging Face's layout (a ``CLIPVisionModelWithProjection`` folder: ``config.json`` and
``model.safetensors``, bf16, random weights: nothing is downloaded). ``--size L-14`` is the
ViT-L/14 tower with its projection, 304M parameters, about 0.6 GB a model. The fine-tuned copies are the base plus
heavy-tailed noise (Student-t-like, 5% of each tensor's spread), rounded to bf16.

Both tools then merge them with Breadcrumbs (beta 0.85, gamma 0.01, alpha 0.3, per tensor),
each in a fresh process, alternately ``--repeats`` times, with the inputs in the page cache:
``breadcrumbs-merge`` with the math in float32, and mergekit's ``mergekit-yaml`` with
``density = 1 - beta - gamma``, ``gamma``, ``lambda = alpha``, weight 1, no normalisation, and
``dtype: float32`` (its math in float32 too), ``out_dtype: bfloat16``. The table gives each
run's wall time and peak resident memory (the tool's process's own), then why the two outputs
differ: both tools' masks are recomputed for every model, and the outputs compared where all the
masks agree and where they do not. The masks differ where the two count or break ties
differently (mergekit keeps ``int(density * n)`` entries after dropping ``int(gamma * n)``
largest, this library drops ``floor(beta * n)`` smallest and ``floor(gamma * n)`` largest;
mergekit orders equal magnitudes by ``torch.sort``, this library by position), and bf16 deltas
are full of equal magnitudes.

    .venv/bin/python benchmarks/bench_cli.py [--size L-14] [--models 8] [--repeats 2]
        [--workdir /tmp/bench-cli] [--mergekit PATH/TO/mergekit-yaml] [--global] [--keep]

``--global`` also times ``breadcrumbs-merge`` with TIES as its authors' code orders it (density
0.15, one ordering over each whole task vector: ``granularity: global``), which reads the inputs
twice more to locate each model's band; mergekit has no such mode (its TIES trims per tensor).

mergekit is not a dependency of the workbook: install it in an environment of its own (for
example ``python -m venv mk && mk/bin/pip install mergekit``) and pass its ``mergekit-yaml``;
without it only ``breadcrumbs-merge`` is timed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from tqdm.auto import tqdm
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

from breadcrumbs_lib import breadcrumbs_mask, save_state_dict
from breadcrumbs_lib.checkpoints import open_checkpoint

#: CLIP image towers by size name: Hugging Face config fields.
SIZES = {
    "tiny": dict(hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                 image_size=32, patch_size=8, projection_dim=32),
    "B-32": dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                 image_size=224, patch_size=32, projection_dim=512),
    "L-14": dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                 image_size=224, patch_size=14, projection_dim=768),
}
ALPHA, BETA, GAMMA = 0.3, 0.85, 0.01


def build_models(folder: Path, size: str, count: int, seed: int = 0) -> tuple[Path, list[Path]]:
    """Write the base and ``count`` fine-tuned folders under ``folder`` (reused if present)."""
    config = CLIPVisionConfig(hidden_act="quick_gelu", **SIZES[size])
    config.architectures = ["CLIPVisionModelWithProjection"]
    names = ["base"] + [f"ft{index}" for index in range(count)]
    folders = [folder / name for name in names]
    if all((path / "model.safetensors").is_file() for path in folders):
        return folders[0], folders[1:]
    torch.manual_seed(seed)
    base = {key: value.detach().bfloat16() for key, value in CLIPVisionModelWithProjection(config).state_dict().items()}
    generator = torch.Generator().manual_seed(seed + 1)
    for name, path in tqdm(list(zip(names, folders)), desc="building models"):
        state = base if name == "base" else _finetuned(base, generator)
        save_state_dict(state, path / "model.safetensors", metadata={"format": "pt"})
        config.save_pretrained(path)
    return folders[0], folders[1:]


def _finetuned(base: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
    copy = {}
    for key, weight in base.items():
        spread = float(weight.float().std()) if weight.numel() > 1 else 1.0
        noise = torch.randn(weight.shape, generator=generator)
        noise /= torch.rand(weight.shape, generator=generator).add_(0.05).sqrt_()
        copy[key] = (weight.float() + 0.05 * spread * noise).bfloat16()
    return copy


def write_configs(folder: Path, base: Path, models: list[Path]) -> tuple[Path, Path]:
    ours = {"base": str(base), "models": [str(path) for path in models], "method": "breadcrumbs",
            "parameters": {"alpha": ALPHA, "beta": BETA, "gamma": GAMMA}, "dtype": "bfloat16"}
    density = 1.0 - BETA - GAMMA
    theirs = {"merge_method": "breadcrumbs", "base_model": str(base),
              "models": [{"model": str(path), "parameters": {"weight": 1.0, "density": density, "gamma": GAMMA}}
                         for path in models],
              "parameters": {"lambda": ALPHA, "normalize": False, "rescale": False},
              "dtype": "float32", "out_dtype": "bfloat16"}
    global_ties = {**ours, "method": "ties", "parameters": {"alpha": 1.0, "density": 0.15, "granularity": "global"}}
    (folder / "breadcrumbs-merge-global-ties.yaml").write_text(yaml.safe_dump(global_ties))
    (folder / "breadcrumbs-merge.yaml").write_text(yaml.safe_dump(ours))
    (folder / "mergekit.yaml").write_text(yaml.safe_dump(theirs))
    return folder / "breadcrumbs-merge.yaml", folder / "mergekit.yaml"


@dataclass(frozen=True)
class Run:
    tool: str
    seconds: float
    peak_rss_bytes: int


#: Runs argv[2:] and writes its peak resident memory (KiB) to the file argv[1]. A child forked
#: from this large process would count this process's pages in its own peak (Linux carries the
#: forked copy's high-water mark across exec): this small launcher forks the command instead.
_LAUNCHER = ("import resource, subprocess, sys; code = subprocess.call(sys.argv[2:]); "
             "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)); sys.exit(code)")


def timed(tool: str, command: list[str]) -> Run:
    """Run ``command`` in a fresh process; its wall time and its own peak resident memory."""
    with tempfile.TemporaryFile() as log, tempfile.NamedTemporaryFile("r") as peak:
        start = time.perf_counter()
        code = subprocess.call([sys.executable, "-c", _LAUNCHER, peak.name, *command], stdout=subprocess.DEVNULL, stderr=log)
        seconds = time.perf_counter() - start
        if code != 0:
            log.seek(0)
            raise RuntimeError(f"{' '.join(command)} failed ({code}):\n{log.read().decode()[-3000:]}")
        return Run(tool, seconds, int(peak.read()) * 1024)


def warm(paths: list[Path]) -> None:
    """Read every input once, so both tools find them in the page cache."""
    for folder in paths:
        with open(folder / "model.safetensors", "rb") as file:
            while file.read(64 << 20):
                pass


def mergekit_keep_mask(delta: torch.Tensor, density: float, gamma: float) -> torch.Tensor:
    """The entries mergekit 0.1.5's ``magnitude_outliers`` keeps, as its source states the rule:
    ascending order of ``|delta|`` by ``torch.sort``, ``int(gamma * n)`` largest dropped,
    ``int(density * n)`` kept below them (a fact to compare with, not this library's mask)."""
    n = delta.numel()
    keep, top = int(density * n), int(gamma * n)
    order = torch.sort(delta.abs().reshape(-1)).indices
    mask = torch.zeros(n, dtype=torch.bool)
    mask[order[max(0, n - keep - top):max(0, n - keep - top) + keep]] = True
    return mask.reshape(delta.shape)


def agreement(ours: Path, theirs: Path, base: Path, models: list[Path]) -> dict[str, float]:
    """How far the two merged models agree, and why they differ: for every entry, whether the two
    tools' masks agree for all models; the outputs compared where they do and where they do not."""
    opened = [open_checkpoint(path) for path in (ours, theirs, base, *models)]
    a, b, theta, tuned = opened[0], opened[1], opened[2], opened[3:]
    counts = {"entries": 0, "masks_agree": 0, "equal_where_masks_agree": 0, "equal_where_masks_differ": 0}
    largest_where_agree = 0.0
    try:
        for name in tqdm(list(a.specs), desc="comparing masks"):
            x, y, base_tensor = a.read(name).float(), b.read(name).float(), theta.read(name).float()
            agree = torch.ones(x.shape, dtype=torch.bool)
            for model in tuned:
                delta = model.read(name).float() - base_tensor
                agree &= breadcrumbs_mask(delta, BETA, GAMMA) == mergekit_keep_mask(delta, 1.0 - BETA - GAMMA, GAMMA)
            same = x == y
            counts["entries"] += x.numel()
            counts["masks_agree"] += int(agree.sum())
            counts["equal_where_masks_agree"] += int((same & agree).sum())
            counts["equal_where_masks_differ"] += int((same & ~agree).sum())
            if agree.any():
                largest_where_agree = max(largest_where_agree, float((x - y).abs()[agree].max()))
    finally:
        for checkpoint in opened:
            checkpoint.close()
    agreeing, differing = counts["masks_agree"], counts["entries"] - counts["masks_agree"]
    return {"entries": counts["entries"], "share where all masks agree": agreeing / counts["entries"],
            "equal outputs where they agree": counts["equal_where_masks_agree"] / max(agreeing, 1),
            "equal outputs where they differ": counts["equal_where_masks_differ"] / max(differing, 1),
            "largest difference where they agree": largest_where_agree}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="L-14")
    parser.add_argument("--models", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=None, help="where the models are built (default: a temporary folder)")
    parser.add_argument("--mergekit", default=shutil.which("mergekit-yaml"), help="mergekit's mergekit-yaml (default: on PATH)")
    parser.add_argument("--global", dest="global_ties", action="store_true",
                        help="also time breadcrumbs-merge with TIES ordered over whole task vectors")
    parser.add_argument("--keep", action="store_true", help="keep the workdir")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-cli-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        base, models = build_models(workdir / "models", args.size, args.models)
        ours_config, theirs_config = write_configs(workdir, base, models)
        commands = {"breadcrumbs-merge": [sys.executable, "-m", "breadcrumbs_lib.cli.merge", str(ours_config),
                                          str(workdir / "out-breadcrumbs-merge"), "--overwrite", "--no-progress"]}
        if args.global_ties:
            commands["breadcrumbs-merge, TIES global"] = [
                sys.executable, "-m", "breadcrumbs_lib.cli.merge", str(workdir / "breadcrumbs-merge-global-ties.yaml"),
                str(workdir / "out-global-ties"), "--overwrite", "--no-progress"]
        if args.mergekit:
            commands["mergekit"] = [args.mergekit, str(theirs_config), str(workdir / "out-mergekit"),
                                    "--no-copy-tokenizer", "--quiet", "--no-write-model-card"]
        opened = open_checkpoint(base)
        parameters = sum(spec.numel for spec in opened.specs.values())
        opened.close()
        print(f"{args.size} image tower, {parameters / 1e6:.0f}M parameters, bf16; base + {args.models} models; "
              f"Breadcrumbs beta {BETA}, gamma {GAMMA}, alpha {ALPHA}; torch threads {torch.get_num_threads()}")
        runs = []
        for _ in range(args.repeats):
            for tool, command in commands.items():
                shutil.rmtree(workdir / "out-mergekit", ignore_errors=True)
                warm([base, *models])
                runs.append(timed(tool, command))
                print(f"  {tool:18s} {runs[-1].seconds:7.1f} s  peak RSS {runs[-1].peak_rss_bytes / 2**30:5.2f} GiB", flush=True)
        report(runs, commands)
        if args.mergekit:
            print(json.dumps(agreement(workdir / "out-breadcrumbs-merge", workdir / "out-mergekit", base, models), indent=1))
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


def report(runs: list[Run], commands: dict[str, list[str]]) -> None:
    print("\n| tool | best wall time (s) | peak RSS (GiB) |\n|---|---|---|")
    best = {}
    for tool in commands:
        mine = [run for run in runs if run.tool == tool]
        best[tool] = min(run.seconds for run in mine)
        print(f"| {tool} | {best[tool]:.1f} | {max(run.peak_rss_bytes for run in mine) / 2**30:.2f} |")
    if "mergekit" in best:
        print(f"\nmergekit / breadcrumbs-merge: {best['mergekit'] / best['breadcrumbs-merge']:.1f}x the time")


if __name__ == "__main__":
    main()
