"""Benchmark: all 255 task subsets of the ``mini`` preset, for task arithmetic and Breadcrumbs at
fixed hyperparameters, each merged model scored on all eight test sets (Fig. 2a in kind).

Runs the sweep into a fresh results store and prints the wall time and where it went: merging
(masks, running sums, applying to the base) against evaluation, summed over workers, from the
store's timings. The ``mini`` artifacts come from the cache (built first if missing, not timed).

    .venv/bin/python benchmarks/bench_sweep.py [--size B-32] [--executor processes|inline|dask] [--workers 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

from breadcrumbs_lib.worlds.presets import MINI
from breadcrumbs_lib.study.results_store import ResultsStore
from breadcrumbs_lib.study.sweep_units import workbench_for
from breadcrumbs_lib.study.sweeps import InlineExecutor, Sweep, SweepContext, dask_executor, grid, run_sweep

SWEEPS = [
    Sweep("task_arithmetic", grid(alpha=0.3), splits=("test",)),
    Sweep("breadcrumbs", grid(alpha=0.4, beta=0.85, gamma=0.01), splits=("test",)),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="B-32")
    parser.add_argument("--executor", choices=["processes", "inline", "dask"], default="processes")
    parser.add_argument("--workers", type=int, default=None, help="processes or dask workers (default: one per core)")
    args = parser.parse_args()

    context = SweepContext(MINI, args.size)
    workbench_for(context)  # build or load the cache before the clock starts
    store = ResultsStore(Path(tempfile.mkdtemp(prefix="bench-sweep-")) / "results.sqlite")
    executors = {"processes": nullcontext(None), "inline": nullcontext(InlineExecutor()),
                 "dask": dask_executor(n_workers=args.workers)}
    start = time.perf_counter()
    with executors[args.executor] as executor:
        frame = run_sweep(SWEEPS, context, store=store, executor=executor, workers=args.workers)
    wall = time.perf_counter() - start

    timings = store.timings()
    merged = timings[timings["method"].isin([s.method for s in SWEEPS])]
    print(f"mini {args.size}, executor {args.executor}: {len(merged)} merged models "
          f"(255 subsets x task arithmetic and Breadcrumbs) + {len(timings) - len(merged)} baselines, "
          f"{len(frame)} records, each model scored on all 8 test sets")
    print(f"wall time: {wall:.0f} s ({wall / 60:.1f} min), including worker start-up")
    print(f"summed over workers: merging {merged['merge_seconds'].sum():.1f} s, "
          f"evaluating {merged['eval_seconds'].sum():.1f} s "
          f"(per merged model: merge {1000 * merged['merge_seconds'].mean():.0f} ms, "
          f"evaluation {1000 * merged['eval_seconds'].mean():.0f} ms)")
    for method in [s.method for s in SWEEPS]:
        rows = frame[(frame["method"] == method) & (frame["n_tasks"] == 8)]
        print(f"  {method:16s} 8 tasks: mean normalized accuracy {100 * rows['normalized_accuracy'].mean():.1f}%")


if __name__ == "__main__":
    main()
