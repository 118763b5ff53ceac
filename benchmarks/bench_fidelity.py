"""Benchmark: which of the paper's findings the ``mini`` world reproduces, seed by seed.

For each seed it builds (or loads from the cache) that seed's world (foundation, eight
fine-tuned models) and takes every measurement of the claims table
(:func:`breadcrumbs_lib.study.fidelity_study.measure`: settings chosen on the validation splits,
scores on the test splits); with ``--scale`` also the 8-task scores at B-32, B-16 and L-14
(Fig. 4; builds two more worlds per seed, long).

It prints every measurement per seed, then one table: each claim, the paper's figure, this
world's mean and spread (standard deviation) over the seeds, and whether it holds on every seed
and in the mean.

    .venv/bin/python benchmarks/bench_fidelity.py --seeds 0 1 2 [--scale] [--cache data/cache]
"""

from __future__ import annotations

import argparse
import time

import pandas as pd

from breadcrumbs_lib.study import fidelity, fidelity_study
from breadcrumbs_lib.paths import DEFAULT_CACHE_DIR
from breadcrumbs_lib.worlds.presets import SIZES, get_preset
from breadcrumbs_lib.study.results_store import ResultsStore, default_store_path
from breadcrumbs_lib.study.sweep_units import SweepContext
from breadcrumbs_lib.workbook.notebook import markdown_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--size", default="B-32")
    parser.add_argument("--preset", default="mini", help="mini (default) or smoke (a quick check of this script)")
    parser.add_argument("--cache", default=str(DEFAULT_CACHE_DIR))
    parser.add_argument("--store", default=None, help="results store (default: the preset's, outputs/<preset>/results.sqlite)")
    parser.add_argument("--workers", type=int, default=None, help="sweep processes (default: one per core)")
    parser.add_argument("--scale", action="store_true", help="also build and merge B-16 and L-14 (long)")
    args = parser.parse_args()

    preset = get_preset(args.preset)
    store = ResultsStore(args.store or default_store_path(preset.name))
    rows = []
    for seed in args.seeds:
        start = time.perf_counter()
        context = SweepContext(preset, args.size, seed=seed, cache_dir=args.cache)
        row = {"seed": seed, **fidelity_study.measure(context, store=store, workers=args.workers, progress=False)}
        if args.scale:
            row.update(fidelity_study.scale_scores(context, SIZES, store=store, workers=args.workers, progress=False))
        rows.append(row)
        print(f"seed {seed}: measured in {time.perf_counter() - start:.0f} s", flush=True)
    per_seed = pd.DataFrame(rows).set_index("seed")
    print("\nmeasurements per seed (shares; gaps in normalized accuracy):")
    print(per_seed.drop(columns=["chance"]).T.to_string(float_format=lambda v: f"{v:.4f}"))
    print(f"\nclaims over seeds {' '.join(map(str, args.seeds))} (percent; gaps in points):")
    print(markdown_table(fidelity.claims_over_seeds(per_seed)))


if __name__ == "__main__":
    main()
