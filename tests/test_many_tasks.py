"""The many-task world: two hundred 5-class tasks cut from the glyph pool by the seed, with
disjoint splits; its presets; the checkpoints of the sequence study."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest

from breadcrumbs_lib.study.many_task_study import checkpoints
from breadcrumbs_lib.worlds.mini import many_tasks as mt
from breadcrumbs_lib.worlds.mini.data import mini_split, mini_task
from breadcrumbs_lib.worlds.mini.glyph_pool import pool_classes
from breadcrumbs_lib.worlds.mini.tasks import generate
from breadcrumbs_lib.worlds.presets import MANY, MINI, many_task_preset


def test_the_tasks_partition_the_pool():
    names = mt.many_task_names()
    assert len(names) == mt.TASK_COUNT == 200 and len(set(names)) == 200
    classes = [name for task in names for name in mini_task(task, 0).classnames]
    assert len(classes) == len(set(classes)) == mt.POOL_SIZE
    assert set(classes) == {g.name for g in pool_classes(mt.POOL_SIZE)}
    for task in names[:3]:
        definition = mini_task(task, 0)
        assert definition.num_classes == mt.CLASSES_PER_TASK and all("{}" in t for t in definition.templates)


_CUT_AND_IMAGES = """
import hashlib, json
from breadcrumbs_lib.worlds.mini import many_tasks as mt
from breadcrumbs_lib.worlds.mini.tasks import generate
tasks = [mt.many_task(name, 0) for name in mt.many_task_names(5)]
images = [hashlib.sha256(generate(task, "train", 2, seed=0)[0].tobytes()).hexdigest() for task in tasks]
print(json.dumps([[list(task.classnames) for task in tasks], images]))
"""


def test_the_cut_and_its_images_are_deterministic_in_the_seed():
    """A fresh process (the glyph pool scanned from the fonts again, no cache) makes the same five
    tasks, with the same classes and images, as this one; another seed cuts the pool differently."""
    names = mt.many_task_names(5)
    here = [[list(mini_task(t, 0).classnames) for t in names],
            [hashlib.sha256(generate(mini_task(t, 0), "train", 2, seed=0)[0].tobytes()).hexdigest() for t in names]]
    fresh = subprocess.run([sys.executable, "-c", _CUT_AND_IMAGES], capture_output=True, text=True, check=True)
    assert json.loads(fresh.stdout) == here
    assert [mini_task(t, 1).classnames for t in names] != [tuple(classes) for classes in here[0]]


@pytest.mark.parametrize("task_name", mt.many_task_names()[::10])
def test_splits_hold_different_images_and_every_class(task_name):
    """Every tenth task of the cut, first to last: each split has every class, and no image is in two splits."""
    task = mini_task(task_name, 0)
    digests = {}
    for split in ("train", "val", "test"):
        images, labels = generate(task, split, 3, seed=0)
        assert images.shape == (15, 32, 32, 3) and np.bincount(labels).tolist() == [3] * 5
        digests[split] = {hashlib.sha256(image.tobytes()).hexdigest() for image in images}
        assert len(digests[split]) == 15
    assert not digests["train"] & digests["val"] and not digests["train"] & digests["test"]
    assert not digests["val"] & digests["test"]


def test_tasks_draw_apart_from_each_other():
    """Names like glyphs-017 and glyphs-071 share their letters: each task still draws its own images."""
    a, _ = generate(mini_task("glyphs-017", 0), "train", 2, seed=0)
    b, _ = generate(mini_task("glyphs-071", 0), "train", 2, seed=0)
    background = lambda images: images[:, :3, :3].astype(float).mean()  # a corner: background, not glyph
    assert background(a) != background(b)


def test_cached_split_of_a_many_task(tmp_path):
    first = mini_split("glyphs-010", "test", 2, 0, tmp_path)
    second = mini_split("glyphs-010", "test", 2, 0, tmp_path)
    assert np.array_equal(first.images.numpy(), second.images.numpy()) and len(first.labels) == 10


def test_bad_names_and_counts_are_refused():
    for name in ("glyphs-200", "glyphs-7", "glyphs-0007"):
        with pytest.raises(ValueError, match=f"unknown many-task name '{name}'"):
            mini_task(name, 0)
    with pytest.raises(ValueError, match="unknown mini task 'cifar'"):
        mini_task("cifar", 0)
    with pytest.raises(ValueError, match="has 200 tasks; asked for 201"):
        mt.many_task_names(201)


def test_presets_of_the_many_task_world():
    assert many_task_preset("mini", 20).tasks == mt.many_task_names(20)
    assert many_task_preset("mini").tasks == MANY.tasks
    assert many_task_preset("smoke").name == "many-smoke"
    assert MANY.pretraining.pool_classes >= mt.POOL_SIZE  # every class the tasks use is in the corpus
    assert MANY.model_names == MINI.model_names
    assert many_task_preset("mini", 500).tasks == MANY.tasks  # at most the world's 200
    assert len(many_task_preset("smoke", 20).tasks) == 6
    with pytest.raises(ValueError, match="n_tasks must be at least 1"):
        many_task_preset("mini", 0)


def test_checkpoints_cover_every_count_to_ten_then_every_tenth():
    assert checkpoints(4) == [1, 2, 3, 4]
    assert checkpoints(35) == [*range(1, 11), 20, 30, 35]
    assert checkpoints(200)[-3:] == [180, 190, 200]
    with pytest.raises(ValueError):
        checkpoints(0)


def test_every_task_has_its_own_random_stream():
    from breadcrumbs_lib.worlds.mini.tasks import MINI_TASKS

    streams = [task.stream_key for task in MINI_TASKS.values()] + [mini_task(t, 0).stream_key for t in mt.many_task_names()]
    assert len(set(streams)) == len(streams) == 208


def test_the_pool_changes_the_foundation_key_and_its_absence_keeps_the_old_one():
    import dataclasses

    from breadcrumbs_lib.worlds import workbench

    name = MINI.model_name("B-32")
    assert workbench.foundation_key(MANY, name, 0) != workbench.foundation_key(MINI, name, 0)
    # without the pool the key is that of the recipe before the pool's fields existed
    fields = workbench._foundation_fields(MINI, name, 0)
    before = {k: v for k, v in dataclasses.asdict(MINI.pretraining).items() if not k.startswith("pool_")}
    assert before["optim"].pop("grad_clip") is None  # added later too, and off: not in the key either
    assert fields["pretraining"] == before
    assert workbench._foundation_fields(MANY, name, 0)["pretraining"]["pool_classes"] == mt.POOL_SIZE
