"""Benchmark: the text world (a tiny T5, four prompted tasks), its cost and its four-task table.

``--smoke`` times the pipeline at its smallest (preset ``text-smoke``, in a fresh temporary cache):
pretrain the T5, fine-tune two tasks, merge them with Breadcrumbs, evaluate; the goal is under
two minutes on a 2-core CPU. Otherwise, for each seed it builds (or loads from the cache) the text
world of ``--preset`` and takes every measurement of notebook 10's claims table
(:func:`breadcrumbs_lib.study.fidelity_study.measure`: settings chosen on the validation splits,
scores on the test splits), then prints the four-task table (zero-shot, fine-tuned, task
arithmetic, Breadcrumbs; mean test accuracy, merges also normalized) and the claims over the seeds.

    .venv/bin/python benchmarks/bench_text.py --smoke
    .venv/bin/python benchmarks/bench_text.py --seeds 0 1 2 [--preset text] [--cache data/cache]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import pandas as pd

from breadcrumbs_lib import merge
from breadcrumbs_lib.paths import DEFAULT_CACHE_DIR
from breadcrumbs_lib.study import fidelity, fidelity_study
from breadcrumbs_lib.study.results_store import ResultsStore, default_store_path
from breadcrumbs_lib.study.sweep_units import SweepContext
from breadcrumbs_lib.workbook.notebook import markdown_table
from breadcrumbs_lib.worlds.prepare import prepare
from breadcrumbs_lib.worlds.presets import TEXT_SMOKE, get_preset

SMOKE_GOAL_SECONDS = 120.0

#: The four-task table's rows: (label, measurement, what the number is).
TABLE_ROWS = (
    ("zero-shot foundation", "zero_shot", "accuracy"),
    ("fine-tuned (one model per task)", "finetuned", "accuracy"),
    ("task arithmetic (alpha on val)", "task_arithmetic", "normalized"),
    ("Breadcrumbs (alpha, beta, gamma on val)", "breadcrumbs", "normalized"),
    ("Breadcrumbs at 85% (alpha on val)", "breadcrumbs_85", "normalized"),
    ("TIES (alpha, density on val)", "ties", "normalized"),
    ("one 85% breadcrumb alone: retention", "retention", "share"),
)


def smoke() -> None:
    """Time pretrain / fine-tune two tasks / merge / evaluate on ``text-smoke`` from nothing."""
    tasks = ["topic", "sentiment"]
    with tempfile.TemporaryDirectory() as cache:
        start = time.perf_counter()
        bench = prepare(TEXT_SMOKE, "small", tasks=tasks, cache_dir=cache, device="cpu")
        built = time.perf_counter() - start
        merged = merge(bench.base, [bench.finetuned[t] for t in tasks], "breadcrumbs", alpha=0.5, beta=0.85, gamma=0.01)
        scores = bench.evaluators(["test"])["test"].evaluate(merged)
        total = time.perf_counter() - start
    verdict = "meets" if total < SMOKE_GOAL_SECONDS else "MISSES"
    print(f"text smoke pipeline: {total:.1f} s in all (building {built:.1f} s: "
          + ", ".join(f"{k} {v:.1f} s" for k, v in bench.seconds.items())
          + f"); merged test accuracy {scores}; {verdict} the {SMOKE_GOAL_SECONDS:.0f} s goal")


def four_tasks(args: argparse.Namespace) -> None:
    preset = get_preset(args.preset)
    size = args.size or list(preset.model_names)[-1]
    store = ResultsStore(args.store or default_store_path(preset.name))
    rows = []
    for seed in args.seeds:
        start = time.perf_counter()
        context = SweepContext(preset, size, seed=seed, cache_dir=args.cache, data_root=args.data_root)
        rows.append({"seed": seed, **fidelity_study.measure(context, store=store, workers=args.workers,
                                                            progress=False)})
        print(f"seed {seed}: measured in {time.perf_counter() - start:.0f} s", flush=True)
    per_seed = pd.DataFrame(rows).set_index("seed")
    table = pd.DataFrame({
        "row": [label for label, _, _ in TABLE_ROWS],
        "measured as": [kind for _, _, kind in TABLE_ROWS],
        **{f"seed {seed}": [f"{100 * per_seed.loc[seed, key]:.1f}" for _, key, _ in TABLE_ROWS] for seed in args.seeds},
    })
    if len(args.seeds) > 1:
        table["mean (sd)"] = [f"{100 * per_seed[key].mean():.1f} ({100 * per_seed[key].std():.1f})"
                              for _, key, _ in TABLE_ROWS]
    print(f"\n{preset.name}, {size}: four tasks, percent (chance {100 * per_seed['chance'].mean():.1f}):")
    print(markdown_table(table))
    print(f"\nclaims over seeds {' '.join(map(str, args.seeds))} (percent; gaps in points):")
    print(markdown_table(fidelity.claims_over_seeds(per_seed, fidelity.TEXT_CLAIMS)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="time the smallest pipeline instead (goal: 120 s)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--preset", default="text", help="text (default), text-smoke, or paper-text (GPU, --data-root)")
    parser.add_argument("--size", default=None, help="T5 size (default: the preset's largest)")
    parser.add_argument("--cache", default=str(DEFAULT_CACHE_DIR))
    parser.add_argument("--data-root", default=None, help="paper-text only: the folder of the T5 and the datasets")
    parser.add_argument("--store", default=None, help="results store (default: outputs/<preset>/results.sqlite)")
    parser.add_argument("--workers", type=int, default=None, help="sweep processes (default: one per core)")
    args = parser.parse_args()
    if args.smoke:
        smoke()
    else:
        four_tasks(args)


if __name__ == "__main__":
    main()
