"""A tiny variant of the ``mini`` preset for tests: a few steps of pretraining and fine-tuning on
a handful of images, so that the whole pipeline (and a sweep over it) runs in seconds."""

from __future__ import annotations

import dataclasses

from breadcrumbs_lib.worlds.presets import MINI, MiniPretraining
from breadcrumbs_lib.modeling.fisher import FisherConfig
from breadcrumbs_lib.modeling.training import OptimConfig

TINY = dataclasses.replace(
    MINI,
    name="tiny",
    finetune=OptimConfig(steps=6, batch_size=16, lr=1e-3, warmup_steps=2),
    split_sizes={"train": 4, "val": 2, "test": 3},
    fisher=FisherConfig(examples=8),
    pretraining=MiniPretraining(corpus_per_class=2, optim=OptimConfig(steps=6, batch_size=32, lr=1e-3, warmup_steps=1)),
)

TINY_TASKS = ("signs", "letters", "digits")


def tiny_context(cache_dir):
    """The sweep context of the tests: the tiny preset on three tasks, on the CPU."""
    from breadcrumbs_lib.study.sweeps import SweepContext

    return SweepContext(TINY, "B-32", cache_dir=str(cache_dir), tasks=TINY_TASKS, device="cpu")


def tiny_sweeps():
    """Breadcrumbs on a 2 x 2 grid and task arithmetic on two alphas, over all 7 subsets."""
    from breadcrumbs_lib.study.sweeps import Sweep, grid

    return [Sweep("breadcrumbs", grid(alpha=[0.3, 0.6], beta=[0.5, 0.8], gamma=0.05)),
            Sweep("task_arithmetic", grid(alpha=[0.3, 0.6]))]
