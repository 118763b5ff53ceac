"""The paper world's ``finetuned_dir``: the layouts people have (open_clip files, Hugging Face CLIP
vision folders, names in any case), and an error for every entry it cannot use."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file
from transformers import CLIPVisionConfig, CLIPVisionModel

from breadcrumbs_lib.checkpoints.clip_names import hf_clip_vision_to_open_clip
from breadcrumbs_lib.worlds.paper.finetuned import read_finetuned_dir

CONFIG = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                          image_size=32, patch_size=8, projection_dim=16, hidden_act="quick_gelu")


def _hf_tower(seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return {key: value.detach().clone() for key, value in CLIPVisionModel(CONFIG).state_dict().items()}


@pytest.fixture
def base() -> dict[str, torch.Tensor]:
    """A foundation's image encoder in open_clip's names without ``visual.``, with its projection."""
    projection = torch.randn(16, 32, generator=torch.Generator().manual_seed(9))
    state = hf_clip_vision_to_open_clip(_hf_tower(0), projection=projection)
    return {key.removeprefix("visual."): value for key, value in state.items()}


def test_open_clip_files_and_hugging_face_folders_are_read(tmp_path, base):
    folder = tmp_path / "B-32"
    folder.mkdir()
    tuned = {f"visual.{key}": value + 0.01 for key, value in base.items()}
    save_file(tuned, str(folder / "MNIST.safetensors"))
    (folder / "sun397").mkdir()  # FusionBench's layout: a bare CLIPVisionModel, no projection
    save_file(_hf_tower(1), str(folder / "sun397" / "model.safetensors"))
    (folder / ".DS_Store").write_text("")
    found = read_finetuned_dir(tmp_path, "B-32", ["MNIST", "SUN397", "DTD"], base)
    assert sorted(found) == ["MNIST", "SUN397"]
    assert all(torch.equal(found["MNIST"][key], base[key] + 0.01) for key in base)
    assert found["SUN397"].keys() == base.keys() and torch.equal(found["SUN397"]["proj"], base["proj"])
    assert not torch.equal(found["SUN397"]["conv1.weight"], base["conv1.weight"])


@pytest.mark.parametrize(("name", "content", "message"), [
    ("notes.txt", "text", "not a model file"),
    ("imagenet.safetensors", None, "none of the paper's tasks"),
    ("DTD.pt", "pickle", "breadcrumbs-convert --trust-pickle"),
])
def test_entries_it_cannot_use_are_named(tmp_path, base, name, content, message):
    folder = tmp_path / "B-32"
    folder.mkdir()
    if content == "pickle":
        torch.save(torch.nn.Linear(2, 2), folder / name)  # a whole pickled model, as task_vectors publishes
    elif content is None:
        save_file({key: value.clone() for key, value in base.items()}, str(folder / name))
    else:
        (folder / name).write_text(content)
    with pytest.raises(ValueError, match=message):
        read_finetuned_dir(tmp_path, "B-32", ["DTD"], base)
    with pytest.raises(FileNotFoundError, match="no folder L-14/"):
        read_finetuned_dir(tmp_path, "L-14", ["DTD"], base)
