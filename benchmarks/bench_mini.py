"""Benchmark and headline numbers of the ``mini`` preset, from scratch, in one run.

Pretrains the foundation, fine-tunes all eight tasks (in a fresh cache unless ``--cache`` is
given), times one evaluation of a model on all eight test sets, and prints the table of
zero-shot, fine-tuned and 8-task merged accuracies. Merges use the scaling coefficient alpha
(and for Breadcrumbs beta 0.85, gamma 0.01: the paper's 85% sparsity) chosen on the validation
splits over alpha = 0.05, 0.10, ..., 1.00, then scored on the test splits.

    .venv/bin/python benchmarks/bench_mini.py [--size B-32] [--cache DIR]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np

from breadcrumbs_lib import merge
from breadcrumbs_lib.evaluation import Evaluator
from breadcrumbs_lib.pipeline import prepare

ALPHAS = [round(0.05 * k, 2) for k in range(1, 21)]


def best_alpha(bench, validation: Evaluator, finetuned_val: dict[str, float], method: str, **fixed) -> tuple[float, float]:
    """The alpha with the best mean normalized validation accuracy, and that value."""
    scores = {}
    for alpha in ALPHAS:
        merged = merge(bench.base, [bench.finetuned[t] for t in bench.tasks], method, alpha=alpha, **fixed)
        accuracy = validation.evaluate(merged)
        scores[alpha] = statistics.mean(accuracy[t] / finetuned_val[t] for t in bench.tasks)
    alpha = max(scores, key=scores.get)
    return alpha, scores[alpha]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="B-32")
    parser.add_argument("--cache", default=None, help="cache folder (default: a fresh temporary one, to time everything)")
    args = parser.parse_args()

    cache = args.cache or tempfile.mkdtemp(prefix="bench-mini-")
    start = time.perf_counter()
    bench = prepare("mini", args.size, cache_dir=cache)
    total = time.perf_counter() - start
    finetuning = sum(v for k, v in bench.seconds.items() if k.startswith("fine-tuning"))
    print(f"mini {args.size}: prepared in {total:.0f} s; pretraining {bench.seconds.get('pretraining', 0):.0f} s, "
          f"fine-tuning all {len(bench.tasks)} tasks {finetuning:.0f} s")

    test = Evaluator(bench.classifier(), bench.heads, {t: bench.splits[t]["test"] for t in bench.tasks})
    val = Evaluator(bench.classifier(), bench.heads, {t: bench.splits[t]["val"] for t in bench.tasks})
    test.evaluate(bench.base)  # warm-up
    timings = []
    for _ in range(5):
        began = time.perf_counter()
        zero_shot = test.evaluate(bench.base)
        timings.append(time.perf_counter() - began)
    n_images = sum(len(bench.splits[t]["test"]) for t in bench.tasks)
    print(f"evaluating one model on all 8 test sets ({n_images} images): best {min(timings):.3f} s, "
          f"median {statistics.median(timings):.3f} s")

    finetuned = {t: test.evaluate(bench.finetuned[t], [t])[t] for t in bench.tasks}
    finetuned_val = {t: val.evaluate(bench.finetuned[t], [t])[t] for t in bench.tasks}
    rows = {"zero-shot": zero_shot, "fine-tuned (one model per task)": finetuned}
    for label, method, fixed in (("task arithmetic, 8 tasks", "task_arithmetic", {}),
                                 ("breadcrumbs 85%, 8 tasks", "breadcrumbs", {"beta": 0.85, "gamma": 0.01})):
        alpha, _ = best_alpha(bench, val, finetuned_val, method, **fixed)
        merged = merge(bench.base, [bench.finetuned[t] for t in bench.tasks], method, alpha=alpha, **fixed)
        rows[f"{label} (alpha {alpha} on val)"] = test.evaluate(merged)

    width = max(len(t) for t in bench.tasks)
    print(f"\n| model | {' | '.join(t[:width] for t in bench.tasks)} | mean | mean normalized |")
    print("|---|" + "---|" * (len(bench.tasks) + 2))
    for label, accuracy in rows.items():
        mean = np.mean([accuracy[t] for t in bench.tasks])
        normalized = np.mean([accuracy[t] / finetuned[t] for t in bench.tasks])
        cells = " | ".join(f"{100 * accuracy[t]:.1f}" for t in bench.tasks)
        print(f"| {label} | {cells} | {100 * mean:.1f} | {100 * normalized:.1f} |")
    chance = np.mean([1 / bench.heads[t].shape[0] for t in bench.tasks])
    print(f"\nchance: {100 * chance:.1f}%")


if __name__ == "__main__":
    main()
