"""Checkpoint I/O: safetensors and weights-only torch files, checks, and atomic saving."""

from __future__ import annotations

import pickle

import pytest
import torch
from helpers import small_model

from breadcrumbs_lib import load_state_dict, save_state_dict
from breadcrumbs_lib.core import state_dicts


def test_safetensors_round_trip(tmp_path):
    state = small_model(0, torch.bfloat16)
    state["counter"] = torch.tensor(3)
    path = save_state_dict(state, tmp_path / "model.safetensors", metadata={"seed": "0"})
    loaded = load_state_dict(path)
    assert sorted(loaded) == sorted(state)  # safetensors does not keep insertion order
    for key in state:
        assert loaded[key].dtype == state[key].dtype and torch.equal(loaded[key], state[key])


def test_torch_files_load_with_weights_only(tmp_path):
    state = small_model(0)
    torch.save(state, tmp_path / "plain.pt")
    torch.save({"state_dict": state, "epoch": 3}, tmp_path / "wrapped.ckpt")
    for name in ("plain.pt", "wrapped.ckpt"):
        loaded = load_state_dict(tmp_path / name)
        assert torch.equal(loaded["layer.weight"], state["layer.weight"])


class NotAWeight:
    pass


def test_arbitrary_pickles_are_refused(tmp_path):
    path = tmp_path / "evil.pt"
    with open(path, "wb") as file:
        pickle.dump({"w": NotAWeight()}, file, protocol=2)
    with pytest.raises(ValueError, match="not a weights-only torch checkpoint"):
        load_state_dict(path)


def test_non_tensor_entries_and_missing_files_are_named(tmp_path):
    torch.save({"w": torch.zeros(2), "note": "hello"}, tmp_path / "mixed.pt")
    with pytest.raises(ValueError, match="entry 'note' is a str"):
        load_state_dict(tmp_path / "mixed.pt")
    with pytest.raises(FileNotFoundError, match="nowhere.safetensors"):
        load_state_dict(tmp_path / "nowhere.safetensors")


def test_non_finite_checkpoints_are_refused_with_file_and_key(tmp_path):
    state = small_model(0)
    state["layer.bias"][0] = float("nan")
    path = save_state_dict(state, tmp_path / "bad.safetensors")
    with pytest.raises(ValueError, match="bad.safetensors: tensor 'layer.bias' of shape \\(6,\\) has 1 non-finite"):
        load_state_dict(path)
    assert load_state_dict(path, check_finite=False)["layer.bias"].isnan().any()


def test_a_crash_while_saving_leaves_the_old_file_and_no_debris(tmp_path, monkeypatch):
    path = save_state_dict({"w": torch.ones(3)}, tmp_path / "model.safetensors")

    def crash(tensors, filename, metadata=None):
        with open(filename, "wb") as file:
            file.write(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(state_dicts, "save_file", crash)
    with pytest.raises(KeyboardInterrupt):
        save_state_dict({"w": torch.zeros(3)}, path)
    assert torch.equal(load_state_dict(path)["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]


def test_only_safetensors_are_written(tmp_path):
    with pytest.raises(ValueError, match="saved as .safetensors"):
        save_state_dict({"w": torch.ones(1)}, tmp_path / "model.pt")
