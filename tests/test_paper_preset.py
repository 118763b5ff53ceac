"""The paper preset: registry, the real ViT-B-32 architecture offline, and a clear offline error."""

from __future__ import annotations

import time

import pytest
import torch

from breadcrumbs_lib import merge
from breadcrumbs_lib.modeling.models import create_clip
from breadcrumbs_lib.worlds.paper.data import PaperAssetsMissing, check_paper_assets, load_pretrained_clip
from breadcrumbs_lib.worlds.paper.tasks import PAPER_TASKS, clean_classname
from breadcrumbs_lib.worlds.prepare import prepare
from breadcrumbs_lib.worlds.presets import PAPER

EXPECTED = {"Cars": 196, "DTD": 47, "EuroSAT": 10, "GTSRB": 43, "MNIST": 10, "RESISC45": 45, "SUN397": 397, "SVHN": 10}


def test_registry_has_the_papers_datasets_class_counts_and_templates():
    assert {name: task.num_classes for name, task in PAPER_TASKS.items()} == EXPECTED
    assert PAPER_TASKS["MNIST"].split_sizes == (55000, 5000, 10000)
    assert PAPER_TASKS["SUN397"].split_sizes == (17865, 1985, 19850)
    for task in PAPER_TASKS.values():
        assert task.templates and all(template.count("{}") == 1 for template in task.templates)
        if task.classnames is not None:
            assert len(task.classnames) == task.num_classes
    assert len(PAPER_TASKS["RESISC45"].templates) == 18 and len(PAPER_TASKS["DTD"].templates) == 8
    assert PAPER_TASKS["GTSRB"].classnames[14] == "stop"
    assert clean_classname("/a/abbey") == "abbey" and clean_classname("baseball_diamond") == "baseball diamond"


def test_class_names_keep_what_tells_classes_apart():
    # torchvision's SUN397 names drop the letter folder but keep the sub-scene; the paper's code reads both parts
    sun = ["apartment_building/outdoor", "church/indoor", "church/outdoor", "/a/abbey", "/b/bakery/shop"]
    assert [clean_classname(name) for name in sun] == [
        "apartment building outdoor", "church indoor", "church outdoor", "abbey", "bakery shop"]
    assert clean_classname("Ram C/V Cargo Van Minivan 2012", slash_in_names=PAPER_TASKS["Cars"].slash_in_names) == (
        "Ram C/V Cargo Van Minivan 2012")
    assert not any(task.slash_in_names for name, task in PAPER_TASKS.items() if name != "Cars")


def test_paper_recipe_is_the_papers():
    assert (PAPER.finetune.steps, PAPER.finetune.batch_size, PAPER.finetune.lr) == (2000, 128, 1e-5)
    assert (PAPER.finetune.weight_decay, PAPER.finetune.warmup_steps) == (0.1, 200)
    assert PAPER.model_names == {"B-32": "ViT-B-32", "B-16": "ViT-B-16", "L-14": "ViT-L-14"}


def test_vit_b32_architecture_builds_offline_and_merges():
    encoder = create_clip("ViT-B-32", seed=0).visual
    base = {key: value.detach().clone() for key, value in encoder.state_dict().items()}
    assert sum(value.numel() for value in base.values()) == 87_849_216
    generator = torch.Generator().manual_seed(0)
    finetuned = [{key: value + 1e-3 * torch.randn(value.shape, generator=generator) for key, value in base.items()}
                 for _ in range(2)]
    merged = merge(base, finetuned, "breadcrumbs", alpha=0.3, beta=0.85, gamma=0.01)
    encoder.load_state_dict(merged)
    with torch.inference_mode():
        assert encoder(torch.randn(1, 3, 224, 224)).shape == (1, 512)


def test_offline_the_paper_preset_fails_fast_naming_what_is_missing(tmp_path):
    start = time.perf_counter()
    with pytest.raises(PaperAssetsMissing) as caught:
        prepare("paper", "B-32", data_root=tmp_path, cache_dir=tmp_path / "cache")
    message = str(caught.value)
    assert time.perf_counter() - start < 30
    assert "CLIP weights 'openai' for ViT-B-32" in message and "dataset SUN397" in message
    assert "weights={size:" in message and "data_root" in message
    (tmp_path / "MNIST").mkdir()
    with pytest.raises(PaperAssetsMissing) as caught:
        check_paper_assets(tmp_path, ["MNIST", "SVHN"], "ViT-B-32", weights=tmp_path / "missing.pt")
    assert "dataset MNIST" not in str(caught.value) and "dataset SVHN" in str(caught.value)
    assert "missing.pt" in str(caught.value)
    with pytest.raises(PaperAssetsMissing, match="not in the local cache"):
        load_pretrained_clip("ViT-B-32")


def test_resisc45_folder_loader_splits_a_small_copy(tmp_path, monkeypatch):
    """The real loading code on a small dataset made here in RESISC45's folder layout."""
    import dataclasses

    import numpy as np
    from PIL import Image

    from breadcrumbs_lib.worlds.paper import data as paper_data
    from breadcrumbs_lib.worlds.paper import tasks as paper_tasks

    root = tmp_path / "resisc45" / "NWPU-RESISC45"
    for k in range(45):
        folder = root / f"class_{k:02d}_name"
        folder.mkdir(parents=True)
        for i in range(4):
            Image.fromarray(np.full((8, 8, 3), k * 5 + i, dtype=np.uint8)).save(folder / f"{i}.png")
    small = dataclasses.replace(paper_tasks.PAPER_TASKS["RESISC45"], split_sizes=(108, 12, 60))
    monkeypatch.setitem(paper_data.PAPER_TASKS, "RESISC45", small)
    splits, names = paper_data.load_split_datasets("RESISC45", tmp_path, seed=0)
    assert [len(splits[s]) for s in ("train", "val", "test")] == [108, 12, 60]
    assert names[0] == "class 00 name" and len(names) == 45
    again, _ = paper_data.load_split_datasets("RESISC45", tmp_path, seed=0)
    assert list(again["test"].indices) == list(splits["test"].indices)
    seen = set(splits["test"].indices) | set(splits["train"].dataset.indices[i] for i in splits["train"].indices)
    assert len(seen) == 60 + 108  # disjoint
    loader = paper_data.loader(splits["val"], batch_size=4, shuffle=False, seed=0)
    assert loader.batch_size == 4


def test_svhn_loads_from_the_folder_the_asset_check_names(tmp_path, monkeypatch):
    """SVHN on a small copy in torchvision's layout (its .mat files), under data_root/svhn."""
    import dataclasses

    import numpy as np
    import torchvision
    from scipy.io import savemat

    from breadcrumbs_lib.worlds.paper import data as paper_data
    from breadcrumbs_lib.worlds.paper import tasks as paper_tasks

    folder = tmp_path / paper_data.DATASET_FOLDERS["SVHN"]
    folder.mkdir()
    for split, count in (("train", 40), ("test", 20)):
        images = np.random.default_rng(0).integers(0, 255, (32, 32, 3, count), dtype=np.uint8)
        savemat(folder / f"{split}_32x32.mat", {"X": images, "y": (np.arange(count) % 10 + 1).reshape(-1, 1)})
    monkeypatch.setattr(torchvision.datasets.SVHN, "_check_integrity", lambda self: True)  # no md5 of the real files
    monkeypatch.setitem(paper_data.PAPER_TASKS, "SVHN", dataclasses.replace(paper_tasks.PAPER_TASKS["SVHN"],
                                                                          split_sizes=(36, 4, 20)))
    paper_data.check_paper_assets(tmp_path, ["SVHN"], "ViT-B-32", weights=__file__)  # the folder is where it looks
    splits, names = paper_data.load_split_datasets("SVHN", tmp_path, seed=0)
    assert [len(splits[s]) for s in ("train", "val", "test")] == [36, 4, 20] and names == [str(d) for d in range(10)]


def test_a_torchscript_weights_file_loads_as_open_clip_reads_it(tmp_path):
    """OpenAI released its CLIP weights as TorchScript archives, which torch.load refuses in
    weights_only mode: a small scripted open_clip model stands in for one."""
    import open_clip

    from breadcrumbs_lib.modeling.models import register_mini_configs
    from breadcrumbs_lib.worlds.paper.data import is_torchscript_archive

    register_mini_configs()
    torch.manual_seed(0)
    model = open_clip.create_model("mini-ViT-B-32", pretrained=None)
    mask = model._buffers.pop("attn_mask")  # OpenAI's model holds its mask as a plain attribute, not a buffer
    model.attn_mask = mask
    scripted = torch.jit.script(model)
    torch.jit.save(scripted, tmp_path / "scripted.pt")
    torch.save(scripted.state_dict(), tmp_path / "state.pt")
    assert is_torchscript_archive(tmp_path / "scripted.pt") and not is_torchscript_archive(tmp_path / "state.pt")
    for name in ("scripted.pt", "state.pt"):
        model, _, _ = load_pretrained_clip("mini-ViT-B-32", weights=tmp_path / name)
        loaded = model.state_dict()
        assert all(torch.equal(loaded[key], value) for key, value in scripted.state_dict().items()), name


def test_every_weights_branch_builds_openais_activation(monkeypatch, tmp_path):
    """OpenAI's CLIP was trained with QuickGELU: a download and a local file build the same model."""
    import open_clip

    from breadcrumbs_lib.worlds.paper import data as paper_data

    calls = []
    monkeypatch.setattr(open_clip, "create_model_and_transforms",
                        lambda name, **options: calls.append(options) or (torch.nn.Identity(), None, None))
    monkeypatch.setattr(paper_data, "local_weights", lambda *args: None)
    paper_data.load_pretrained_clip("ViT-B-32", download=True)
    torch.save({}, tmp_path / "weights.pt")
    paper_data.load_pretrained_clip("ViT-B-32", weights=tmp_path / "weights.pt")
    assert [call["force_quick_gelu"] for call in calls] == [True, True]
    assert calls[0]["pretrained"] == "openai" and calls[1]["weights_only"] is True


def test_sun397_splits_do_not_depend_on_the_file_systems_order(tmp_path, monkeypatch):
    """A small SUN397 in torchvision's layout, listed in two orders: the same splits and names."""
    import dataclasses
    from pathlib import Path

    import numpy as np
    from PIL import Image

    from breadcrumbs_lib.worlds.paper import data as paper_data
    from breadcrumbs_lib.worlds.paper import tasks as paper_tasks

    root = tmp_path / "SUN397"
    classes = ["/a/abbey", "/c/church/indoor", "/c/church/outdoor"]
    root.mkdir()
    (root / "ClassName.txt").write_text("\n".join(classes) + "\n")
    for k, name in enumerate(classes):
        folder = root / name.strip("/")
        folder.mkdir(parents=True)
        for i in range(6):
            Image.fromarray(np.full((8, 8, 3), 10 * k + i, dtype=np.uint8)).save(folder / f"sun_{k}{i}.jpg")
    small = dataclasses.replace(paper_tasks.PAPER_TASKS["SUN397"], num_classes=3, split_sizes=(9, 1, 8))
    monkeypatch.setitem(paper_data.PAPER_TASKS, "SUN397", small)

    def files(dataset):  # the image files of a split, through its nested subsets
        if isinstance(dataset, torch.utils.data.Subset):
            inner = files(dataset.dataset)
            return [inner[i] for i in dataset.indices]
        return list(dataset._image_files)

    first, names = paper_data.load_split_datasets("SUN397", tmp_path, seed=0)
    real_rglob = Path.rglob
    monkeypatch.setattr(Path, "rglob", lambda self, pattern: reversed(list(real_rglob(self, pattern))))
    second, _ = paper_data.load_split_datasets("SUN397", tmp_path, seed=0)
    assert names == ["abbey", "church indoor", "church outdoor"]
    assert [len(first[s]) for s in ("train", "val", "test")] == [9, 1, 8]
    assert all(files(first[split]) == files(second[split]) for split in ("train", "val", "test"))


def test_fine_tuning_reads_open_clips_training_transform_and_evaluation_the_other(monkeypatch, tmp_path):
    from breadcrumbs_lib.worlds.paper import build as paper_build

    clip = torch.nn.Module()
    clip.visual = torch.nn.Linear(2, 2)
    monkeypatch.setattr(paper_build, "check_paper_assets", lambda *args: None)
    monkeypatch.setattr(paper_build, "load_pretrained_clip", lambda *args, **kwargs: (clip, "train-tf", "eval-tf"))
    monkeypatch.setattr(paper_build, "tokenizer_for", lambda name: None)
    monkeypatch.setattr(paper_build, "zero_shot_head", lambda *args: torch.zeros(10, 2))
    raw = {split: [("image", 0)] for split in ("train", "val", "test")}
    monkeypatch.setattr(paper_build, "load_task", lambda task, root, seed: (raw, list("0123456789"), ("{}",)))
    monkeypatch.setattr(paper_build, "cached_split", lambda dataset, transform, folder, recompute: transform)
    bench = paper_build._workbench(PAPER, "B-32", ["MNIST"], 0, torch.device("cpu"), "/data", None, False,
                                   images_dir=tmp_path)
    used = {"train": bench.splits["MNIST"]["train"].dataset.transform,
            **{split: bench.splits["MNIST"][split] for split in ("val", "test")}}  # decoded once, through this
    assert used == {"train": "train-tf", "val": "eval-tf", "test": "eval-tf"}


def _loader_workers(queue) -> None:
    from breadcrumbs_lib.worlds.paper.data import loader

    queue.put(loader([(0, 0)], batch_size=1, shuffle=False, seed=0).num_workers)


def test_a_daemonic_worker_reads_data_in_process():
    """Dask's workers are daemonic processes, which may not start DataLoader workers."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_loader_workers, args=(queue,), daemon=True)
    process.start()
    workers = queue.get(timeout=120)
    process.join(timeout=60)
    assert workers == 0


def _small_resisc45(tmp_path, monkeypatch, per_class: int = 4):
    """45 class folders of ``per_class`` images in RESISC45's layout; the spec's sizes made small."""
    import dataclasses

    import numpy as np
    from PIL import Image

    from breadcrumbs_lib.worlds.paper import data as paper_data
    from breadcrumbs_lib.worlds.paper import tasks as paper_tasks

    names = []
    for k in range(45):
        folder = tmp_path / "resisc45" / "NWPU-RESISC45" / f"class{k:02d}"
        folder.mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(np.full((8, 8, 3), k, dtype=np.uint8)).save(folder / f"class{k:02d}_{i:03d}.jpg")
            names.append(f"class{k:02d}_{i:03d}.jpg")
    monkeypatch.setitem(paper_data.PAPER_TASKS, "RESISC45", dataclasses.replace(
        paper_tasks.PAPER_TASKS["RESISC45"], split_sizes=(122, 13, 45)))
    return names


def _files_of(dataset) -> list[str]:
    """The image file names of a split, through its nested subsets."""
    from pathlib import Path

    if isinstance(dataset, torch.utils.data.Subset):
        inner = _files_of(dataset.dataset)
        return [inner[i] for i in dataset.indices]
    paths = dataset._image_files if hasattr(dataset, "_image_files") else [path for path, _ in dataset.samples]
    return [Path(path).name for path in paths]


def test_resisc45_takes_its_published_train_and_test_lists(tmp_path, monkeypatch):
    import warnings

    from breadcrumbs_lib.worlds.paper import data as paper_data

    names = _small_resisc45(tmp_path, monkeypatch)
    train_names = [name for name in names if not name.endswith("_003.jpg")]
    test_names = [name for name in names if name.endswith("_003.jpg")]
    (tmp_path / "resisc45" / "resisc45-train.txt").write_text("\n".join(train_names) + "\n")
    (tmp_path / "resisc45" / "resisc45-test.txt").write_text("\n".join(test_names) + "\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning: the published split is used
        splits, _ = paper_data.load_split_datasets("RESISC45", tmp_path, seed=0)
    assert _files_of(splits["test"]) == test_names
    assert sorted(_files_of(splits["train"]) + _files_of(splits["val"])) == sorted(train_names)
    assert [len(splits[s]) for s in ("train", "val", "test")] == [122, 13, 45]


def test_without_the_published_lists_the_split_is_a_seeded_shuffle_and_says_so(tmp_path, monkeypatch):
    from breadcrumbs_lib.worlds.paper import data as paper_data

    _small_resisc45(tmp_path, monkeypatch)
    with pytest.warns(UserWarning, match="no published split.*seeded shuffle"):
        splits, _ = paper_data.load_split_datasets("RESISC45", tmp_path, seed=0)
    assert [len(splits[s]) for s in ("train", "val", "test")] == [122, 13, 45]


def test_a_listed_image_that_is_not_there_is_named(tmp_path, monkeypatch):
    from breadcrumbs_lib.worlds.paper import data as paper_data
    from breadcrumbs_lib.worlds.paper.data import PaperAssetsMissing

    names = _small_resisc45(tmp_path, monkeypatch)
    (tmp_path / "resisc45" / "resisc45-train.txt").write_text("\n".join(names[:-1]) + "\n")
    (tmp_path / "resisc45" / "resisc45-test.txt").write_text("airplane_700.jpg\n")
    with pytest.raises(PaperAssetsMissing, match="resisc45-test.txt lists 1 image.*airplane_700.jpg"):
        paper_data.load_split_datasets("RESISC45", tmp_path, seed=0)


@pytest.mark.parametrize("lists", ["Partitions", "."])  # Partitions.zip unpacked into its own folder or SUN397's
def test_sun397_takes_its_first_official_partition(tmp_path, monkeypatch, lists):
    import dataclasses

    import numpy as np
    from PIL import Image

    from breadcrumbs_lib.worlds.paper import data as paper_data
    from breadcrumbs_lib.worlds.paper import tasks as paper_tasks

    root = tmp_path / "SUN397"
    classes = ["/a/abbey", "/c/church/indoor"]
    root.mkdir()
    (root / "ClassName.txt").write_text("\n".join(classes) + "\n")
    lines = {"Training_01.txt": [], "Testing_01.txt": []}
    for k, name in enumerate(classes):
        (root / name.strip("/")).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(np.full((8, 8, 3), 10 * k + i, dtype=np.uint8)).save(root / name.strip("/") / f"sun_{k}{i}.jpg")
            lines["Training_01.txt" if i % 2 else "Testing_01.txt"].append(f"{name}/sun_{k}{i}.jpg")
    (root / lists).mkdir(exist_ok=True)
    for file, listed in lines.items():
        (root / lists / file).write_text("\n".join(listed) + "\n")
    monkeypatch.setitem(paper_data.PAPER_TASKS, "SUN397", dataclasses.replace(
        paper_tasks.PAPER_TASKS["SUN397"], num_classes=2, split_sizes=(5, 1, 6)))
    splits, names = paper_data.load_split_datasets("SUN397", tmp_path, seed=0)
    assert names == ["abbey", "church indoor"]
    assert _files_of(splits["test"]) == [line.rsplit("/", 1)[1] for line in lines["Testing_01.txt"]]
    assert sorted(_files_of(splits["train"]) + _files_of(splits["val"])) == sorted(
        line.rsplit("/", 1)[1] for line in lines["Training_01.txt"])
