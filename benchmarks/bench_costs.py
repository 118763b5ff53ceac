"""Benchmark: what each merge method costs, to build an 8-task model and to add a ninth task.

Notebook 08 times every method once, at the setting it chose on validation. This benchmark times
the same code paths (:func:`breadcrumbs_lib.study.costs.measure_costs` on the cached ``mini``
world of ``--seed``, :func:`breadcrumbs_lib.study.costs.estimate_for_architecture` on the paper's
CLIP architecture for the same size) ``--repeats`` times, at fixed representative settings (below:
how long a merge takes depends on its masks' densities, not on which alpha won), and prints each
figure's median with its range over the repeats, so that a reader can tell a real difference from
this machine's noise. A Fisher's seconds are the ones recorded when it was estimated (its first
run), so they do not vary between repeats.

    .venv/bin/python benchmarks/bench_costs.py [--seed 0] [--size B-32] [--repeats 3] [--cache data/cache]
"""

from __future__ import annotations

import argparse

import pandas as pd

from breadcrumbs_lib.paths import DEFAULT_CACHE_DIR
from breadcrumbs_lib.study import costs
from breadcrumbs_lib.worlds.prepare import prepare
from breadcrumbs_lib.worlds.presets import MINI, PAPER

#: Representative settings: the paper's 85% breadcrumbs, TIES' top 20%, DARE's 90% drop rate.
SETTINGS = {
    "task_arithmetic": {"alpha": 0.3},
    "breadcrumbs": {"alpha": 0.3, "beta": 0.85, "gamma": 0.01},
    "average": {},
    "ties": {"alpha": 1.0, "density": 0.2},
    "breadcrumbs_ties": {"alpha": 1.0, "beta": 0.85, "gamma": 0.01},
    "dare": {"alpha": 0.3, "p": 0.9},
    "fisher": {"alpha": 1.0},
}
FIGURES = ["examples to build", "seconds to build", "examples to add one", "seconds to add one"]


def summarize(tables: list[pd.DataFrame]) -> pd.DataFrame:
    """One row per method: each figure's median over the repeats, and its range for the seconds."""
    runs = pd.concat(tables, ignore_index=True)
    grouped = runs.groupby("method", sort=False)
    summary = grouped[FIGURES].median()
    summary[["examples to build", "examples to add one"]] = summary[["examples to build", "examples to add one"]].astype(int)
    for column in ("seconds to build", "seconds to add one"):
        low, high = grouped[column].min(), grouped[column].max()
        summary[f"{column}: range"] = [f"{a:.3g} - {b:.3g}" for a, b in zip(low, high)]
    return summary.reset_index()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", default="B-32")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cache", default=str(DEFAULT_CACHE_DIR))
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    bench = prepare(MINI, args.size, seed=args.seed, cache_dir=args.cache)
    measured, estimated = [], []
    for _ in range(args.repeats):
        measured.append(costs.totals(costs.measure_costs(bench, SETTINGS)))
        table, factors = costs.estimate_for_architecture(
            SETTINGS, model_name=PAPER.model_name(args.size), tasks=len(PAPER.tasks), fisher=PAPER.fisher,
            seed=args.seed, device=bench.device)
        estimated.append(costs.totals(table))
    print(f"mini {args.size}, seed {args.seed}, measured ({len(bench.tasks)} tasks; medians of {args.repeats} repeats):")
    print(summarize(measured).to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    print(f"\npaper {PAPER.model_name(args.size)}, estimated on this machine ({len(PAPER.tasks)} tasks; one Fisher term "
          f"{factors['Fisher seconds per example']:.2f} s, the last repeat's):")
    print(summarize(estimated).to_string(index=False, float_format=lambda v: f"{v:.3g}"))


if __name__ == "__main__":
    main()
