"""The mini preset's generated tasks: shapes, class counts, determinism, split separation."""

from __future__ import annotations

import numpy as np
import pytest

from breadcrumbs_lib.modeling.data import ImageSplit
from breadcrumbs_lib.worlds.mini.data import mini_split
from breadcrumbs_lib.worlds.mini.tasks import IMAGE_SIZE, MINI_TASKS, generate, pretraining_corpus
from breadcrumbs_lib.worlds.paper.tasks import PAPER_TASKS


def test_eight_tasks_each_mirroring_a_paper_dataset():
    assert len(MINI_TASKS) == 8
    assert sorted(task.paper_dataset for task in MINI_TASKS.values()) == sorted(PAPER_TASKS)
    for task in MINI_TASKS.values():
        assert task.num_classes >= 10
        assert len(set(task.classnames)) == task.num_classes
        assert task.templates and all("{}" in template for template in task.templates)


@pytest.mark.parametrize("name", sorted(MINI_TASKS))
def test_generation_is_deterministic_and_well_formed(name):
    task = MINI_TASKS[name]
    images, labels = generate(task, "test", 2, seed=5)
    again, _ = generate(task, "test", 2, seed=5)
    other, _ = generate(task, "test", 2, seed=6)
    assert images.shape == (2 * task.num_classes, IMAGE_SIZE, IMAGE_SIZE, 3) and images.dtype == np.uint8
    assert np.array_equal(images, again) and not np.array_equal(images, other)
    assert np.bincount(labels).tolist() == [2] * task.num_classes
    assert images.std() > 10  # not blank


def test_splits_differ():
    train, _ = generate(MINI_TASKS["photo_objects"], "train", 3, seed=0)
    test, _ = generate(MINI_TASKS["photo_objects"], "test", 3, seed=0)
    assert not np.array_equal(train, test)


def test_unknown_split_and_task_are_refused():
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        generate(MINI_TASKS["digits"], "dev", 1, seed=0)
    with pytest.raises(ValueError, match="unknown mini task 'cifar'"):
        mini_split("cifar", "train", 1, 0)


def test_cached_splits_round_trip(tmp_path):
    first = mini_split("letters", "val", 2, 0, tmp_path)
    files = list((tmp_path / "datasets").iterdir())
    assert len(files) == 1
    second = mini_split("letters", "val", 2, 0, tmp_path)
    assert isinstance(second, ImageSplit)
    assert np.array_equal(first.images.numpy(), second.images.numpy())
    assert first.images.shape == (20, 3, IMAGE_SIZE, IMAGE_SIZE)


def test_pretraining_captions_name_seven_of_ten_classes_per_task():
    images, captions = pretraining_corpus(2, seed=0, named_share=0.7)
    assert images.shape[0] == len(captions) == 2 * sum(task.num_classes for task in MINI_TASKS.values())
    at = 0
    for task in MINI_TASKS.values():
        _, labels = generate(task, "train", 2, seed=7919)
        named = set()
        for label, caption in zip(labels, captions[at:at + len(labels)]):
            if task.concept.format(task.classnames[label]) in caption:
                named.add(int(label))
            else:
                assert task.generic in caption
        assert len(named) == 7, task.name
        at += len(labels)
