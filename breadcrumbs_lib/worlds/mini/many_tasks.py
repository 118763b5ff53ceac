"""The many-task world: the glyph pool cut by a seed into two hundred tasks of five classes.

The paper's many-task experiment splits ImageNet into 200 tasks of 5 classes and merges them one
after another. Here the first :data:`POOL_SIZE` classes of :mod:`.glyph_pool` (all of them in the
foundation's pretraining corpus, a seeded share of them named there, as for the eight tasks) are
shuffled by the world's seed and cut into :data:`TASK_COUNT` (200) tasks of :data:`CLASSES_PER_TASK`:
task ``glyphs-017`` is the 18th slice. Each is a :class:`.tasks.MiniTask`, so splits, zero-shot
heads, fine-tuning and merging treat it like the eight.
"""

from __future__ import annotations

import functools

import numpy as np

from .glyph_pool import CONCEPT, GENERIC, GlyphClass, draw_glyph, pool_classes
from .tasks import MiniTask

POOL_SIZE = 1000  # classes of the pool the tasks are cut from
CLASSES_PER_TASK = 5
TASK_COUNT = POOL_SIZE // CLASSES_PER_TASK
PREFIX = "glyphs-"
STREAM_OFFSET = 1_000_000  # task k draws its images from random stream STREAM_OFFSET + k (the eight tasks': below 2,000)
TEMPLATES = ('a picture of the character "{}".', "the {}, drawn in a font.")


def many_task_names(count: int = TASK_COUNT) -> tuple[str, ...]:
    """The names of the first ``count`` tasks, in the order they are merged."""
    if not 1 <= count <= TASK_COUNT:
        raise ValueError(f"the many-task world has {TASK_COUNT} tasks; asked for {count}")
    return tuple(f"{PREFIX}{index:03d}" for index in range(count))


def is_many_task(name: str) -> bool:
    return name.startswith(PREFIX)


@functools.lru_cache(maxsize=None)
def many_task(name: str, seed: int) -> MiniTask:
    """The task called ``name`` in the world of ``seed``: its five classes, heads' templates, drawing."""
    index = _index(name)
    order = np.random.default_rng([seed, 15485863]).permutation(POOL_SIZE)
    pool = pool_classes(POOL_SIZE)
    classes = tuple(pool[i] for i in order[index * CLASSES_PER_TASK:(index + 1) * CLASSES_PER_TASK])
    return MiniTask(name, "ImageNet (5 classes)", tuple(g.name for g in classes), TEMPLATES, CONCEPT, GENERIC,
                    functools.partial(_draw, classes), stream=STREAM_OFFSET + index)


def _draw(classes: tuple[GlyphClass, ...], rng: np.random.Generator, label: int, split: str) -> np.ndarray:
    return draw_glyph(rng, classes[label])


def _index(name: str) -> int:
    if name not in many_task_names():
        raise ValueError(f"unknown many-task name {name!r}; expected {PREFIX}000 to {PREFIX}{TASK_COUNT - 1:03d}")
    return int(name[len(PREFIX):])
