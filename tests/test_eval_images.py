"""The paper world's evaluation images, decoded once into memory-mapped uint8 splits."""

from __future__ import annotations

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from breadcrumbs_lib.modeling.data import normalize
from breadcrumbs_lib.worlds.paper import eval_images
from breadcrumbs_lib.worlds.paper.eval_images import cached_split, read_split, split_key, uint8_transform


def _images(count: int, seed: int = 0) -> list[Image.Image]:
    """Images of several sizes and modes, as the datasets have them (MNIST's are grayscale)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        height, width = (int(v) for v in rng.integers(20, 300, size=2))
        if i % 3 == 0:
            out.append(Image.fromarray(rng.integers(0, 256, (height, width), dtype=np.uint8), mode="L"))
        else:
            out.append(Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)))
    return out


@pytest.fixture(scope="module")
def eval_transform():
    return open_clip.image_transform(64, is_train=False)  # open_clip's evaluation preprocessing, at a small size


def test_decoded_uint8_images_normalise_to_open_clips_output_bit_for_bit(eval_transform):
    as_uint8 = uint8_transform(eval_transform)
    for image in _images(6):
        decoded = as_uint8(image)
        assert decoded.dtype == torch.uint8 and decoded.shape == (3, 64, 64)
        assert torch.equal(normalize(decoded[None])[0], eval_transform(image))


def test_a_transform_the_evaluator_cannot_finish_is_refused():
    with pytest.raises(ValueError, match="ending with ToTensor and Normalize"):
        uint8_transform(T.Compose([T.Resize(8), T.ToTensor()]))
    with pytest.raises(ValueError, match="not CLIP's"):
        uint8_transform(T.Compose([T.ToTensor(), T.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))]))


def test_a_split_is_decoded_once_and_read_memory_mapped(tmp_path, eval_transform, monkeypatch):
    dataset = [(image, i % 4) for i, image in enumerate(_images(7))]
    folder = tmp_path / split_key("MNIST", "test", 0, tmp_path, len(dataset), eval_transform)
    split = cached_split(dataset, eval_transform, folder, batch_size=3, progress=False)
    assert split.images.shape == (7, 3, 64, 64) and split.labels.tolist() == [0, 1, 2, 3, 0, 1, 2]
    expected = torch.stack([uint8_transform(eval_transform)(image) for image, _ in dataset])
    assert torch.equal(split.images, expected)
    assert isinstance(np.load(folder / "images.npy", mmap_mode="c"), np.memmap)
    assert [p.name for p in tmp_path.iterdir()] == [folder.name]  # no partial folder left

    monkeypatch.setattr(eval_images, "_write", lambda *args, **kwargs: pytest.fail("decoded twice"))
    assert torch.equal(cached_split(dataset, eval_transform, folder).images, expected)
    assert torch.equal(read_split(folder).labels, split.labels)


def test_a_crash_while_decoding_leaves_nothing_behind(tmp_path, eval_transform):
    class Broken:
        def __len__(self):
            return 5

        def __getitem__(self, index):
            if index == 3:
                raise OSError("image file is truncated")
            return Image.new("RGB", (40, 30)), 0

    with pytest.raises(OSError, match="truncated"):
        cached_split(Broken(), eval_transform, tmp_path / "split", batch_size=2, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_the_key_changes_with_what_the_split_is_read_from(tmp_path, eval_transform):
    key = split_key("MNIST", "test", 0, tmp_path, 100, eval_transform)
    assert key.startswith("MNIST-test-")
    others = {split_key("MNIST", "val", 0, tmp_path, 100, eval_transform),
              split_key("MNIST", "test", 1, tmp_path, 100, eval_transform),
              split_key("MNIST", "test", 0, tmp_path / "other", 100, eval_transform),
              split_key("MNIST", "test", 0, tmp_path, 101, eval_transform),
              split_key("MNIST", "test", 0, tmp_path, 100, open_clip.image_transform(32, is_train=False))}
    assert key not in others and len(others) == 5


def test_an_empty_split_is_named(tmp_path, eval_transform):
    with pytest.raises(ValueError, match="MNIST-val.*empty"):
        cached_split([], eval_transform, tmp_path / "MNIST-val-0123", progress=False)
