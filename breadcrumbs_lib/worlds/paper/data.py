"""The ``paper`` preset's real inputs: open_clip's pretrained CLIP weights and the eight datasets.

Nothing here downloads unless asked to (``download=True``, for CLIP's weights).
:func:`check_paper_assets` runs first and raises one :class:`PaperAssetsMissing` that lists every
missing weight file and dataset folder and says how to provide them, instead of a stack trace
from deep inside a download.

Datasets are read with torchvision (``download=False``) from ``data_root`` in torchvision's own
folder layout, RESISC45 with an ``ImageFolder`` over ``data_root/resisc45/NWPU-RESISC45``. Splits
follow Table 1: a seeded validation share of the training set (10%, at most 5,000 images).
torchvision gives EuroSAT, RESISC45 and SUN397 no train / test split: SUN397 and RESISC45 take
the published lists the task_vectors protocol reads when they are under ``data_root``
(:data:`PUBLISHED_SPLITS`); EuroSAT, and the other two without those files (with a warning), are
split by a seeded shuffle into the sizes of Table 1.
"""

from __future__ import annotations

import multiprocessing
import os
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path

import open_clip
import torch
from torch import nn
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Subset

from .imagenet_tasks import is_imagenet_task, load_task_splits
from .imagenet_tasks import templates as imagenet_templates
from .tasks import PAPER_TASKS, clean_classname


class PaperAssetsMissing(FileNotFoundError):
    """Raised before any work when the ``paper`` preset lacks weights, datasets or checkpoints."""


HOW_TO_PROVIDE = (
    "The paper preset reads its inputs from disk and downloads nothing unless asked to:\n"
    "  * CLIP weights: pass weights={size: '/path/to/ViT-B-32.pt'}, or download=True on a machine with "
    "internet (open_clip then caches them);\n"
    "  * datasets: pass data_root=/path/to/datasets holding torchvision's folders "
    "(stanford_cars, dtd, eurosat, gtsrb, MNIST, svhn, SUN397) and resisc45/NWPU-RESISC45/<class>/; for the "
    "many-task sequence, imagenet/train/<wnid>/ and imagenet/val/<wnid>/ (as torchvision.datasets.ImageNet extracts them);\n"
    "  * already fine-tuned models (optional): pass finetuned_dir=/path holding <size>/<task>.safetensors (or .pt, "
    "or a Hugging Face folder; open_clip's or Hugging Face's CLIP names)."
)


#: Each dataset's folder under ``data_root``: the one torchvision's class for it reads (SVHN's
#: class takes the folder itself), and RESISC45's as the task_vectors release lays it out.
DATASET_FOLDERS = {"Cars": "stanford_cars", "DTD": "dtd", "EuroSAT": "eurosat", "GTSRB": "gtsrb", "MNIST": "MNIST",
                   "RESISC45": "resisc45", "SUN397": "SUN397", "SVHN": "svhn"}


def local_weights(model_name: str, pretrained: str = "openai") -> Path | None:
    """The cached file of open_clip's ``pretrained`` weights for ``model_name``, if one is on
    disk (Hugging Face cache, or open_clip's URL cache); never touches the network."""
    from huggingface_hub import try_to_load_from_cache

    config = open_clip.get_pretrained_cfg(model_name, pretrained)
    if not config:
        raise ValueError(f"open_clip has no pretrained weights {pretrained!r} for {model_name!r}")
    if config.get("hf_hub"):
        for filename in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"):
            found = try_to_load_from_cache(config["hf_hub"].rstrip("/"), filename)
            if isinstance(found, str):
                return Path(found)
    if config.get("url"):
        found = Path.home() / ".cache" / "clip" / os.path.basename(config["url"])
        if found.is_file():
            return found
    return None


def load_pretrained_clip(model_name: str, weights: str | Path | None = None, pretrained: str = "openai",
                         device: torch.device | str = "cpu", download: bool = False) -> tuple[nn.Module, Callable, Callable]:
    """The pretrained open_clip model and its preprocessing for training (open_clip's, with its
    random resized crop) and for evaluation, as ``open_clip.create_model_and_transforms`` gives them.

    ``weights`` is a checkpoint file of the paper's (OpenAI) CLIP weights: a state dict, or the
    TorchScript archive OpenAI released (``ViT-B-32.pt``), read as open_clip reads it; by default
    the copy in the local open_clip / Hugging Face cache is used. Without ``download=True``
    nothing is fetched, and :class:`PaperAssetsMissing` is raised at once when neither is there.
    Every branch builds the activation the weights were trained with (QuickGELU for OpenAI's).
    """
    if weights is not None and not Path(weights).is_file():
        raise PaperAssetsMissing(f"CLIP weights for {model_name}: file not found: {weights}\n{HOW_TO_PROVIDE}")
    path = Path(weights) if weights is not None else local_weights(model_name, pretrained)
    if path is None and not download:
        raise PaperAssetsMissing(f"CLIP weights {pretrained!r} for {model_name} are not in the local cache.\n{HOW_TO_PROVIDE}")
    quick_gelu = bool((open_clip.get_pretrained_cfg(model_name, pretrained) or {}).get("quick_gelu", False))
    source = {"pretrained": pretrained} if path is None else {
        # a TorchScript archive is read by torch.jit (its code runs in TorchScript, not through
        # pickle), which torch.load's weights_only mode refuses outright
        "pretrained": str(path), "weights_only": not is_torchscript_archive(path)}
    model, train_transform, eval_transform = open_clip.create_model_and_transforms(
        model_name, device=device, force_quick_gelu=quick_gelu, **source)
    return model.eval(), train_transform, eval_transform


class Transformed(Dataset):
    """``dataset``'s ``(image, label)`` pairs with ``transform`` applied to each image: one split
    of a dataset read once, seen through the transform of its use (training or evaluation)."""

    def __init__(self, dataset: Dataset, transform: Callable):
        self.dataset, self.transform = dataset, transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        image, label = self.dataset[index]
        return self.transform(image), label


def is_torchscript_archive(path: str | Path) -> bool:
    """Whether ``path`` is a TorchScript archive (``torch.jit.save``: a zip with ``constants.pkl``
    and ``code/``), as OpenAI's released CLIP weights are, rather than a ``torch.save`` file."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.split("/", 1)[-1] == "constants.pkl" for name in archive.namelist())


def load_split_datasets(task: str, data_root: str | Path, seed: int) -> tuple[dict[str, Dataset], list[str]]:
    """``({"train", "val", "test"} -> dataset, class names)`` of one of the paper's datasets, its
    images as read (PIL images: each use applies its own transform, see :class:`Transformed`)."""
    import torchvision.datasets as tv

    root = Path(data_root)
    spec = PAPER_TASKS[task]
    n_train, n_val, n_test = spec.split_sizes
    try:
        if task == "Cars":
            train, test = (tv.StanfordCars(root, split=s) for s in ("train", "test"))
            classes = train.classes
        elif task == "DTD":
            parts = [tv.DTD(root, split=s) for s in ("train", "val", "test")]
            train, test, classes = ConcatDataset(parts[:2]), parts[2], parts[0].classes
        elif task == "GTSRB":
            train, test = (tv.GTSRB(root, split=s) for s in ("train", "test"))
            classes = None
        elif task == "MNIST":
            train, test = (tv.MNIST(root, train=flag) for flag in (True, False))
            classes = None
        elif task == "SVHN":  # torchvision's SVHN reads its .mat files from the folder it is given
            train, test = (tv.SVHN(root / DATASET_FOLDERS["SVHN"], split=s) for s in ("train", "test"))
            classes = None
        else:  # no train/test split in torchvision: EuroSAT, RESISC45, SUN397
            if task == "EuroSAT":
                full = tv.EuroSAT(root)
            elif task == "SUN397":
                full = _in_path_order(tv.SUN397(root))
            else:
                full = tv.ImageFolder(root / DATASET_FOLDERS["RESISC45"] / "NWPU-RESISC45")
            published = published_split(task, root, full)
            if published is not None:
                train, test = published
            else:
                order = torch.randperm(len(full), generator=torch.Generator().manual_seed(seed)).tolist()
                test = Subset(full, order[:n_test])
                train = Subset(full, order[n_test:n_test + n_train + n_val])
            classes = full.classes
    except (RuntimeError, FileNotFoundError) as error:
        raise PaperAssetsMissing(f"dataset {task} not found under {root} ({error}).\n{HOW_TO_PROVIDE}") from None
    names = list(spec.classnames) if spec.classnames is not None else [
        clean_classname(c, slash_in_names=spec.slash_in_names) for c in classes]
    if len(names) != spec.num_classes:
        raise ValueError(f"dataset {task} under {root} has {len(names)} classes, expected {spec.num_classes}")
    if len(set(names)) != len(names):
        repeated = sorted({name for name in names if names.count(name) > 1})
        raise ValueError(f"dataset {task} under {root}: class names {repeated[:5]} are given to more than one class")
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed)).tolist()
    n_val = min(n_val, len(train) // 10) if task not in ("EuroSAT", "RESISC45", "SUN397") else n_val
    return {"train": Subset(train, order[n_val:]), "val": Subset(train, order[:n_val]), "test": test}, names


#: The published train / test lists the task_vectors protocol reads, in the dataset's folder
#: (:data:`DATASET_FOLDERS`): SUN397's first official partition (from the dataset's
#: ``Partitions.zip``) and RESISC45's train / test files (the 60 / 20 / 20 split of TensorFlow
#: Datasets; the paper's validation share is carved from train, as for every dataset, so its val
#: file is not read).
PUBLISHED_SPLITS = {
    "SUN397": ("Training_01.txt", "Testing_01.txt"),
    "RESISC45": ("resisc45-train.txt", "resisc45-test.txt"),
}
#: Where in the dataset's folder the lists are looked for, in order: ``Partitions.zip`` unpacked
#: into a ``Partitions/`` folder of its own, or into SUN397's folder itself (where task_vectors'
#: loader reads them); RESISC45's files sit in its folder.
SPLIT_LIST_FOLDERS = {"SUN397": ("Partitions", "."), "RESISC45": (".",)}


def published_split(task: str, root: Path, full: Dataset) -> tuple[Subset, Subset] | None:
    """``(train, test)`` of ``full`` as the files of :data:`PUBLISHED_SPLITS` list them, or
    ``None`` (with a warning saying what is used instead) when they are not in its folder.

    A line names an image by its path under the dataset's folder (SUN397:
    ``/a/abbey/sun_aaalbzqrimafwbiv.jpg``) or by its file name (RESISC45: ``airplane_001.jpg``);
    a listed image that is not in the dataset is an error naming it."""
    if task not in PUBLISHED_SPLITS:
        return None
    folder = root / DATASET_FOLDERS[task]
    candidates = [[folder / place / name for name in PUBLISHED_SPLITS[task]] for place in SPLIT_LIST_FOLDERS[task]]
    files = next((files for files in candidates if all(file.is_file() for file in files)), None)
    if files is None:
        looked = " or ".join(", ".join(str(file) for file in lists) for lists in candidates)
        warnings.warn(f"{task}: no published split ({looked}); its train and test splits are a seeded shuffle "
                      f"of all its images into the sizes of the paper's Table 1, not the published partition",
                      stacklevel=3)
        return None
    by_path = {_relative_name(task, folder, path): index for index, path in enumerate(_image_paths(full))}
    splits = []
    for file in files:
        names = [line.strip() for line in file.read_text().splitlines() if line.strip()]
        unknown = [name for name in names if _listed_name(task, name) not in by_path]
        if unknown:
            raise PaperAssetsMissing(f"{file} lists {len(unknown)} image(s) not found in {task} under {root}, "
                                     f"e.g. {unknown[0]}")
        splits.append(Subset(full, [by_path[_listed_name(task, name)] for name in names]))
    return splits[0], splits[1]


def _image_paths(dataset: Dataset) -> list[str]:
    if hasattr(dataset, "_image_files"):  # torchvision's SUN397
        return [str(path) for path in dataset._image_files]
    return [path for path, _ in dataset.samples]  # an ImageFolder


def _relative_name(task: str, folder: Path, path: str) -> str:
    """How a split file names the image at ``path``: SUN397 by its path under the dataset's
    ``folder`` (from the letter folder on), RESISC45 by its file name."""
    return Path(path).relative_to(folder).as_posix() if task == "SUN397" else Path(path).name


def _listed_name(task: str, line: str) -> str:
    return line.strip("/") if task == "SUN397" else Path(line).name


def _in_path_order(dataset: Dataset) -> Dataset:
    """``dataset`` with its images in path order: torchvision lists SUN397's files in the order
    the file system gives them, and the seeded split below picks by position, so without this the
    splits would differ between two copies of the same files."""
    pairs = sorted(zip(dataset._image_files, dataset._labels))
    dataset._image_files, dataset._labels = [path for path, _ in pairs], [label for _, label in pairs]
    return dataset


def load_task(task: str, data_root: str | Path, seed: int) -> tuple[dict[str, Dataset], list[str], tuple[str, ...]]:
    """``(splits, class names, prompt templates)`` of one of the eight datasets or of an ImageNet
    task of the many-task sequence (:mod:`.imagenet_tasks`)."""
    if is_imagenet_task(task):
        try:
            splits, names = load_task_splits(task, data_root, seed)
        except (RuntimeError, FileNotFoundError) as error:
            raise PaperAssetsMissing(f"ImageNet not found under {Path(data_root) / 'imagenet'} ({error}).\n"
                                     f"{HOW_TO_PROVIDE}") from None
        return splits, names, imagenet_templates()
    splits, names = load_split_datasets(task, data_root, seed)
    return splits, names, PAPER_TASKS[task].templates


def loader(dataset: Dataset, *, batch_size: int, shuffle: bool, seed: int) -> DataLoader:
    """A DataLoader with a seeded shuffle and a worker per core (at most 8); in a daemonic process
    (a Dask worker), which may not start processes of its own, it reads in the process itself."""
    workers = 0 if multiprocessing.current_process().daemon else min(8, os.cpu_count() or 1)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=workers,
                      generator=torch.Generator().manual_seed(seed), pin_memory=torch.cuda.is_available())


def check_paper_assets(data_root: str | Path | None, tasks: list[str], model_name: str,
                       weights: str | Path | None = None, download: bool = False) -> None:
    """Raise :class:`PaperAssetsMissing` naming every missing input: the CLIP weights of
    ``model_name`` and the dataset folder of each task under ``data_root``."""
    missing = []
    if weights is not None and not Path(weights).is_file():
        missing.append(f"CLIP weights file {weights}")
    elif weights is None and not download and local_weights(model_name) is None:
        missing.append(f"CLIP weights 'openai' for {model_name} (not in the local cache)")
    if data_root is None:
        missing.append("data_root (no dataset folder given)")
    else:
        root = Path(data_root)
        named = {("ImageNet", "imagenet") if is_imagenet_task(task) else (task, DATASET_FOLDERS[task]) for task in tasks}
        missing += [f"dataset {name} ({root / folder})" for name, folder in sorted(named) if not (root / folder).exists()]
    if missing:
        raise PaperAssetsMissing("the paper preset is missing: " + "; ".join(missing) + ".\n" + HOW_TO_PROVIDE)
