"""The paper's many-task sequence: ImageNet-1k cut into 200 tasks of five classes.

The 1,000 classes (in ImageNet's index order, with CLIP's readable names and its 80 ImageNet
prompt templates, as open_clip ships them) are shuffled by the seed and cut into 200 tasks of 5:
task ``imagenet-017`` is the 18th slice, its labels 0..4 in the order of the slice. Images come
from torchvision's ImageNet folder layout under ``data_root/imagenet`` (``train/<wnid>/*`` and
``val/<wnid>/*``, which ``torchvision.datasets.ImageNet`` extracts): a task's test split is the
official validation images of its classes (50 per class), its validation split a seeded 10% of
its training images, taken by a rule that does not depend on the order files are listed in.
"""

from __future__ import annotations

import functools
from pathlib import Path

from torch.utils.data import Dataset

from ..task_cuts import TaskCut
from .held_out import lowest_hashes

CLASS_COUNT = 1000
CLASSES_PER_TASK = 5
CUT = TaskCut("imagenet-", CLASS_COUNT, CLASSES_PER_TASK, "ImageNet task", "the ImageNet sequence")
TASK_COUNT = CUT.task_count
VAL_SHARE = 0.1  # of each task's training images, held out for validation
#: Two pairs of ImageNet classes share a name in CLIP's list ("missile" 657 / 744, "sunglasses"
#: 836 / 837); one of each is renamed after its WordNet synonym, so that every name is distinct.
_RENAMED = {744: "projectile", 836: "sunglass"}


def imagenet_task_names(count: int = TASK_COUNT) -> tuple[str, ...]:
    """The names of the first ``count`` tasks, in the order they are merged."""
    return CUT.names(count)


def is_imagenet_task(name: str) -> bool:
    return CUT.holds(name)


def task_classes(name: str, seed: int) -> tuple[int, ...]:
    """The ImageNet class indices of task ``name`` in the sequence of ``seed``."""
    return CUT.classes(name, seed)


def classnames() -> tuple[str, ...]:
    """The 1,000 readable class names, distinct, in ImageNet's index order."""
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

    return tuple(_RENAMED.get(index, name) for index, name in enumerate(IMAGENET_CLASSNAMES))


def templates() -> tuple[str, ...]:
    """CLIP's 80 ImageNet prompt templates, as ``str.format`` patterns."""
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

    return tuple(template("{}") for template in OPENAI_IMAGENET_TEMPLATES)


class ClassSubset(Dataset):
    """The samples of ``dataset`` (an ``ImageFolder``) whose class is one of ``classes``,
    relabelled ``0 .. len(classes) - 1`` in that order."""

    def __init__(self, dataset, classes: tuple[int, ...], indices: list[int] | None = None) -> None:
        label_of = {c: k for k, c in enumerate(classes)}
        self.dataset, self.label_of = dataset, label_of
        self.indices = indices if indices is not None else [i for i, t in enumerate(dataset.targets) if t in label_of]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int):
        image, target = self.dataset[self.indices[index]]
        return image, self.label_of[target]


def load_task_splits(name: str, data_root: str | Path, seed: int) -> tuple[dict[str, Dataset], list[str]]:
    """``({"train", "val", "test"} -> dataset, class names)`` of ImageNet task ``name``
    (``FileNotFoundError`` from torchvision when a folder is missing or empty, ``ValueError``
    when a split does not hold the 1,000 class folders)."""
    root = Path(data_root) / "imagenet"
    classes = task_classes(name, seed)
    train_folder, test_folder = (_image_folder(str(root / split)) for split in ("train", "val"))
    train = ClassSubset(train_folder, classes)
    held_out = _held_out(train_folder, train.indices, seed)
    splits = {"train": ClassSubset(train_folder, classes, [i for i in train.indices if i not in held_out]),
              "val": ClassSubset(train_folder, classes, sorted(held_out)),
              "test": ClassSubset(test_folder, classes)}
    names = classnames()
    return splits, [names[c] for c in classes]


@functools.lru_cache(maxsize=2)
def _image_folder(path: str):
    """One scan of an ImageNet split folder (1.28 million files for train), shared by all tasks."""
    import torchvision.datasets as tv

    folder = tv.ImageFolder(path)
    if len(folder.classes) != CLASS_COUNT:
        raise ValueError(f"{path} has {len(folder.classes)} class folders, expected {CLASS_COUNT}")
    return folder


def _held_out(folder, indices: list[int], seed: int) -> set[int]:
    """A seeded ``VAL_SHARE`` of ``indices``, chosen by a seeded hash of each file's path
    (:func:`.held_out.lowest_hashes`): the same files whatever order the filesystem lists them in."""
    keys = [f"{seed}:{Path(folder.samples[index][0]).relative_to(folder.root).as_posix()}" for index in indices]
    return {indices[position] for position in lowest_hashes(keys, int(round(VAL_SHARE * len(indices))))}
