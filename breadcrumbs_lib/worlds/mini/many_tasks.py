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

from ..task_cuts import TaskCut
from .glyph_pool import CONCEPT, GENERIC, GlyphClass, draw_glyph, pool_classes
from .tasks import MiniTask

POOL_SIZE = 1000  # classes of the pool the tasks are cut from
CLASSES_PER_TASK = 5
CUT = TaskCut("glyphs-", POOL_SIZE, CLASSES_PER_TASK, "many-task name", "the many-task world")
TASK_COUNT = CUT.task_count
STREAM_OFFSET = 1_000_000  # task k draws its images from random stream STREAM_OFFSET + k (the eight tasks': below 2,000)
TEMPLATES = ('a picture of the character "{}".', "the {}, drawn in a font.")


def many_task_names(count: int = TASK_COUNT) -> tuple[str, ...]:
    """The names of the first ``count`` tasks, in the order they are merged."""
    return CUT.names(count)


def is_many_task(name: str) -> bool:
    return CUT.holds(name)


@functools.lru_cache(maxsize=None)
def many_task(name: str, seed: int) -> MiniTask:
    """The task called ``name`` in the world of ``seed``: its five classes, heads' templates, drawing."""
    pool = pool_classes(POOL_SIZE)
    classes = tuple(pool[i] for i in CUT.classes(name, seed))
    return MiniTask(name, "ImageNet (5 classes)", tuple(g.name for g in classes), TEMPLATES, CONCEPT, GENERIC,
                    functools.partial(_draw, classes), stream=STREAM_OFFSET + CUT.index(name))


def _draw(classes: tuple[GlyphClass, ...], rng: np.random.Generator, label: int, split: str) -> np.ndarray:
    return draw_glyph(rng, classes[label])
