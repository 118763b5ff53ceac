"""Benchmark: the many-task sequence (the paper's 200 ImageNet tasks, in miniature), seed by seed.

For each seed it builds (or loads from the cache) the many-task world of ``--preset``'s run
(``mini``: the glyph pool cut into 200 tasks of five; ``smoke``: its quick variant, to check this
script; ``paper``: ImageNet-1k cut the same way, on a GPU with ``--data-root``), fine-tunes the
first ``--tasks`` tasks, and runs :func:`breadcrumbs_lib.study.many_task_study.sequence_curves`:
settings chosen on the validation splits of the first five tasks, then kept while tasks are
added. It prints the curve of both methods, the gap at the end against the paper's +5.88, and
where the time went.

    .venv/bin/python benchmarks/bench_many_tasks.py --tasks 200 --seeds 0 [--cache data/cache]
"""

from __future__ import annotations

import argparse
import time

import pandas as pd

from breadcrumbs_lib.paths import DEFAULT_CACHE_DIR
from breadcrumbs_lib.study.many_task_study import sequence_curves
from breadcrumbs_lib.study.results_store import ResultsStore, default_store_path
from breadcrumbs_lib.study.sweep_units import SweepContext, workbench_for
from breadcrumbs_lib.worlds.presets import many_task_preset

PAPER_GAP = 5.88  # points, 200 ImageNet tasks on ViT-B/32 (a later version of the paper)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="mini", help="the run whose many-task world to use: mini, smoke or paper")
    parser.add_argument("--tasks", type=int, default=None, help="tasks in the sequence (default: all of the world's)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--size", default="B-32")
    parser.add_argument("--cache", default=str(DEFAULT_CACHE_DIR))
    parser.add_argument("--data-root", default=None, help="paper only: the folder holding imagenet/")
    parser.add_argument("--store", default=None, help="results store (default: outputs/<preset>/results.sqlite)")
    parser.add_argument("--workers", type=int, default=None, help="sweep processes (default: one per core)")
    args = parser.parse_args()

    world = many_task_preset(args.preset, args.tasks)
    store = ResultsStore(args.store or default_store_path(args.preset))
    ends = []
    for seed in args.seeds:
        context = SweepContext(world, args.size, seed=seed, cache_dir=args.cache, data_root=args.data_root)
        start = time.perf_counter()
        bench = workbench_for(context)
        built = time.perf_counter() - start
        finetuning = sum(v for k, v in bench.seconds.items() if k.startswith("fine-tuning"))
        curves = sequence_curves(context, store=store, workers=args.workers, progress=False)
        merged = time.perf_counter() - start - built
        table = curves.pivot_table(index="n_tasks", columns="method", values="score") * 100
        table["gap"] = table["breadcrumbs"] - table["task_arithmetic"]
        settings = curves.drop_duplicates("method").set_index("method")["hyperparameters"].to_dict()
        print(f"\n{world.name}, seed {seed}, {len(bench.tasks)} tasks: built in {built:.0f} s (pretraining "
              f"{bench.seconds.get('pretraining', 0):.0f} s, fine-tuning {finetuning:.0f} s), merged and scored in "
              f"{merged:.0f} s; settings {settings}")
        print(table.round(1).to_string())
        ends.append(table.iloc[-1]["gap"])
    if len(ends) > 1:
        spread = pd.Series(ends)
        print(f"\ngap at the end: {spread.mean():+.1f} points (sd {spread.std():.1f}) over seeds {args.seeds}; "
              f"the paper: +{PAPER_GAP}")
    else:
        print(f"\ngap at the end: {ends[0]:+.1f} points; the paper: +{PAPER_GAP}")


if __name__ == "__main__":
    main()
