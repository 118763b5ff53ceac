"""Run the tests' tiny sweep in a process of its own (test_sweeps starts it, and kills it).

    python tests/run_tiny_sweep.py CACHE STORE [--executor inline|processes] [--kill-after N]

``--kill-after N`` sends this process SIGKILL right after the N-th unit's records are committed:
a real, uncatchable signal in the middle of a sweep.
"""

from __future__ import annotations

import argparse
import os
import signal

from tiny_preset import tiny_context, tiny_sweeps

from breadcrumbs_lib.study.sweeps import InlineExecutor, run_sweep


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("cache")
    parser.add_argument("store")
    parser.add_argument("--executor", choices=["inline", "processes"], default="processes")
    parser.add_argument("--kill-after", type=int, default=None)
    args = parser.parse_args()
    done = []

    def count(result) -> None:
        done.append(result)
        if args.kill_after is not None and len(done) >= args.kill_after:
            os.kill(os.getpid(), signal.SIGKILL)

    executor = InlineExecutor() if args.executor == "inline" else None
    run_sweep(tiny_sweeps(), tiny_context(args.cache), store=args.store, executor=executor, workers=2,
              progress=False, on_result=count)


if __name__ == "__main__":
    main()
