"""The paper's many-task sequence: ImageNet-1k cut into 200 tasks of five classes, read from
torchvision's folder layout (a small fake copy made here)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from breadcrumbs_lib.worlds.paper import imagenet_tasks as it
from breadcrumbs_lib.worlds.paper.data import PaperAssetsMissing, check_paper_assets, load_task
from breadcrumbs_lib.worlds.presets import PAPER_MANY, many_task_preset


@pytest.fixture(scope="module")
def imagenet_root(tmp_path_factory):
    """data_root/imagenet/{train,val}/<wnid>/: 1,000 class folders, 10 training and 2 test images each."""
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    for split, count in (("train", 10), ("val", 2)):
        for c in range(it.CLASS_COUNT):
            folder = root / "imagenet" / split / f"n{c:08d}"
            folder.mkdir(parents=True)
            for k in range(count):
                Image.fromarray(rng.integers(0, 255, (4, 4, 3), dtype=np.uint8)).save(folder / f"{c}_{k}.png")
    return root


def test_two_hundred_tasks_partition_the_thousand_classes():
    names = it.imagenet_task_names()
    classes = [c for name in names for c in it.task_classes(name, 0)]
    assert len(names) == 200 and sorted(classes) == list(range(1000))
    assert it.task_classes("imagenet-005", 0) != it.task_classes("imagenet-005", 1)
    assert len(set(it.classnames())) == 1000  # CLIP's two repeated names made distinct
    assert len(it.templates()) == 80 and all("{}" in t for t in it.templates())


def test_a_task_reads_its_five_classes_with_a_held_out_validation_share(imagenet_root):
    splits, names, templates = load_task("imagenet-003", imagenet_root, seed=0)
    classes = it.task_classes("imagenet-003", 0)
    assert names == [it.classnames()[c] for c in classes] and len(templates) == 80
    assert (len(splits["train"]), len(splits["val"]), len(splits["test"])) == (45, 5, 10)
    assert set(splits["train"].indices).isdisjoint(splits["val"].indices)
    labels = sorted(label for _, label in (splits["test"][i] for i in range(len(splits["test"]))))
    assert labels == sorted([0, 1, 2, 3, 4] * 2)
    image, _ = splits["val"][0]
    assert image.size == (4, 4)


def test_the_validation_share_does_not_depend_on_file_order(imagenet_root):
    import torchvision.datasets as tv

    folder = tv.ImageFolder(imagenet_root / "imagenet" / "train")
    indices = it.ClassSubset(folder, it.task_classes("imagenet-010", 0)).indices
    assert it._held_out(folder, indices, 0) == it._held_out(folder, list(reversed(indices)), 0)
    assert it._held_out(folder, indices, 0) != it._held_out(folder, indices, 1)


def test_offline_imagenet_is_named_as_missing(tmp_path):
    with pytest.raises(PaperAssetsMissing, match=r"dataset ImageNet \(.*imagenet\)"):
        check_paper_assets(tmp_path, list(it.imagenet_task_names(3)), "ViT-B-32", download=True)
    (tmp_path / "imagenet" / "train").mkdir(parents=True)
    with pytest.raises(PaperAssetsMissing, match="ImageNet not found under .*Couldn't find any class folder"):
        load_task("imagenet-000", tmp_path, seed=0)


def test_the_paper_many_task_preset():
    assert many_task_preset("paper", 10).tasks == it.imagenet_task_names(10)
    assert PAPER_MANY.world == "paper" and len(PAPER_MANY.tasks) == 200
    assert many_task_preset("paper", 201).tasks == PAPER_MANY.tasks
    with pytest.raises(ValueError, match="no workbook run for preset 'many'"):
        many_task_preset("many")
