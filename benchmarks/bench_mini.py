"""Benchmark and headline numbers of the ``mini`` preset, from scratch, in one run.

Pretrains the foundation, fine-tunes all eight tasks (in a fresh cache unless ``--cache`` is
given), times one evaluation of a model on all eight test sets, and prints the table of
zero-shot, fine-tuned and 8-task merged accuracies. Merges use the scaling coefficient alpha
(and for Breadcrumbs beta 0.85, gamma 0.01: the paper's 85% sparsity) chosen on the validation
splits over alpha = 0.05, 0.10, ..., 1.00 by the sweep engine, then scored on the test splits.

    .venv/bin/python benchmarks/bench_mini.py [--size B-32] [--cache DIR]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from breadcrumbs_lib.modeling.evaluation import Evaluator
from breadcrumbs_lib.worlds.presets import MINI
from breadcrumbs_lib.study.results_store import ResultsStore
from breadcrumbs_lib.study.sweep_units import FINETUNED, ZERO_SHOT, workbench_for
from breadcrumbs_lib.study.sweeps import InlineExecutor, Sweep, SweepContext, grid, run_sweep
from breadcrumbs_lib.study.tuning import best_per_subset

ALPHAS = [round(0.05 * k, 2) for k in range(1, 21)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="B-32")
    parser.add_argument("--cache", default=None, help="cache folder (default: a fresh temporary one, to time everything)")
    args = parser.parse_args()

    context = SweepContext(MINI, args.size, cache_dir=args.cache or tempfile.mkdtemp(prefix="bench-mini-"))
    start = time.perf_counter()
    bench = workbench_for(context)
    total = time.perf_counter() - start
    finetuning = sum(v for k, v in bench.seconds.items() if k.startswith("fine-tuning"))
    print(f"mini {args.size}: prepared in {total:.0f} s; pretraining {bench.seconds.get('pretraining', 0):.0f} s, "
          f"fine-tuning all {len(bench.tasks)} tasks {finetuning:.0f} s")

    test = Evaluator(bench.classifier(), bench.heads, {t: bench.splits[t]["test"] for t in bench.tasks})
    test.evaluate(bench.base)  # warm-up
    timings = []
    for _ in range(5):
        began = time.perf_counter()
        test.evaluate(bench.base)
        timings.append(time.perf_counter() - began)
    n_images = sum(len(bench.splits[t]["test"]) for t in bench.tasks)
    print(f"evaluating one model on all 8 test sets ({n_images} images): best {min(timings):.3f} s, "
          f"median {statistics.median(timings):.3f} s")

    sweeps = [Sweep("task_arithmetic", grid(alpha=ALPHAS), subsets=[bench.tasks]),
              Sweep("breadcrumbs", grid(alpha=ALPHAS, beta=0.85, gamma=0.01), subsets=[bench.tasks])]
    store = ResultsStore(Path(tempfile.mkdtemp(prefix="bench-mini-")) / "results.sqlite")
    frame = run_sweep(sweeps, context, store=store, executor=InlineExecutor(), progress=False)
    test_rows = frame[frame["split"] == "test"]
    rows = {"zero-shot": test_rows[test_rows["method"] == ZERO_SHOT],
            "fine-tuned (one model per task)": test_rows[test_rows["method"] == FINETUNED]}
    best = best_per_subset(frame[frame["method"].isin(["task_arithmetic", "breadcrumbs"])]).set_index("method")
    for label, method in (("task arithmetic, 8 tasks", "task_arithmetic"), ("breadcrumbs 85%, 8 tasks", "breadcrumbs")):
        setting = best.loc[method, "hyperparameters"]
        alpha = test_rows.loc[test_rows["hyperparameters"] == setting, "alpha"].iloc[0]
        rows[f"{label} (alpha {alpha:g} on val)"] = test_rows[(test_rows["method"] == method)
                                                            & (test_rows["hyperparameters"] == setting)]

    print(f"\n| model | {' | '.join(bench.tasks)} | mean | mean normalized |")
    print("|---|" + "---|" * (len(bench.tasks) + 2))
    for label, records in rows.items():
        by_task = records.set_index("scored_task")
        cells = " | ".join(f"{100 * by_task.loc[t, 'accuracy']:.1f}" for t in bench.tasks)
        print(f"| {label} | {cells} | {100 * by_task['accuracy'].mean():.1f} | "
              f"{100 * by_task['normalized_accuracy'].mean():.1f} |")
    chance = np.mean([1 / bench.heads[t].shape[0] for t in bench.tasks])
    print(f"\nchance: {100 * chance:.1f}%")


if __name__ == "__main__":
    main()
