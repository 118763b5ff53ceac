"""A CLIP image tower's names in Hugging Face ``transformers`` and in ``open_clip``: converted
weights compute the same image embeddings in the other library, round trips are exact, bad input
is refused by name, and ``breadcrumbs-convert --names`` applies the conversion."""

from __future__ import annotations

import pytest
import torch
from open_clip.transformer import QuickGELU, VisionTransformer
from safetensors.torch import load_file, save_file
from transformers import CLIPVisionConfig, CLIPVisionModel, CLIPVisionModelWithProjection

from breadcrumbs_lib.checkpoints.clip_names import hf_clip_vision_to_open_clip, open_clip_to_hf_clip_vision
from breadcrumbs_lib.cli import convert as convert_cli

WIDTH, EMBED_DIM, LAYERS = 32, 16, 2
CONFIG = dict(hidden_size=WIDTH, intermediate_size=2 * WIDTH, num_hidden_layers=LAYERS, num_attention_heads=4,
              image_size=32, patch_size=8, projection_dim=EMBED_DIM, hidden_act="quick_gelu")
#: Two implementations of one network agree to float32 rounding only: they sum in different orders
#: (differences of a few 1e-6 on some CPUs); a wrong conversion differs by far more.
SAME_NETWORK = {"rtol": 1e-4, "atol": 1e-5}


def _perturbed(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """``model`` in eval mode with every parameter moved off its initial value (layer norms
    included), so that swapped names change the output."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn(parameter.shape, generator=generator))
    return model.eval()


def _hf(seed: int = 0, bare: bool = False) -> torch.nn.Module:
    torch.manual_seed(seed)
    kind = CLIPVisionModel if bare else CLIPVisionModelWithProjection
    return _perturbed(kind(CLIPVisionConfig(**CONFIG)), seed)


def _open_clip(seed: int = 0) -> VisionTransformer:
    torch.manual_seed(seed)
    tower = VisionTransformer(image_size=32, patch_size=8, width=WIDTH, layers=LAYERS, heads=4, mlp_ratio=2.0,
                              output_dim=EMBED_DIM, act_layer=QuickGELU)  # layer norms' eps 1e-5, HF's default
    return _perturbed(tower, seed)


def _images() -> torch.Tensor:
    return torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(7))


def _visual(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """open_clip's tower names without ``visual.``, as ``VisionTransformer.load_state_dict`` takes them."""
    assert all(key.startswith("visual.") for key in state)
    return {key.removeprefix("visual."): value for key, value in state.items()}


def _assert_equal_states(got: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key].dtype == value.dtype and torch.equal(got[key], value), key


@torch.no_grad()
def test_hf_weights_give_open_clip_the_same_image_embeddings():
    hf = _hf()
    state = hf_clip_vision_to_open_clip(hf.state_dict())
    assert state["visual.proj"].shape == (WIDTH, EMBED_DIM)
    assert torch.equal(state["visual.transformer.resblocks.1.attn.in_proj_weight"][WIDTH:2 * WIDTH],
                       hf.state_dict()["vision_model.encoder.layers.1.self_attn.k_proj.weight"])
    tower = _open_clip(seed=1)
    tower.load_state_dict(_visual(state), strict=True)
    torch.testing.assert_close(tower(_images()), hf(pixel_values=_images()).image_embeds, **SAME_NETWORK)


@torch.no_grad()
def test_open_clip_weights_give_hf_the_same_image_embeddings():
    tower = _open_clip()
    whole_model = {**{f"visual.{key}": value for key, value in tower.state_dict().items()},
                   "text_projection": torch.zeros(WIDTH, EMBED_DIM), "logit_scale": torch.tensor(4.6)}
    state = open_clip_to_hf_clip_vision(whole_model)  # the text tower is left out
    _assert_equal_states(open_clip_to_hf_clip_vision(tower.state_dict()), state)  # without "visual." too
    hf = _hf(seed=1)
    hf.load_state_dict(state, strict=True)
    torch.testing.assert_close(hf(pixel_values=_images()).image_embeds, tower(_images()), **SAME_NETWORK)


def test_round_trips_are_exact():
    hf_state = _hf().state_dict()
    _assert_equal_states(open_clip_to_hf_clip_vision(hf_clip_vision_to_open_clip(hf_state)), hf_state)
    open_clip_state = {f"visual.{key}": value for key, value in _open_clip().state_dict().items()}
    _assert_equal_states(hf_clip_vision_to_open_clip(open_clip_to_hf_clip_vision(open_clip_state)), open_clip_state)
    half = {key: value.half() for key, value in hf_state.items()}
    _assert_equal_states(open_clip_to_hf_clip_vision(hf_clip_vision_to_open_clip(half)), half)


@torch.no_grad()
def test_a_bare_vision_model_converts_with_or_without_a_projection():
    hf = _hf(bare=True)
    bare = hf.state_dict()  # transformers 5: no "vision_model." prefix
    assert "embeddings.patch_embedding.weight" in bare
    as_saved_by_v4 = {f"vision_model.{key}": value for key, value in bare.items()}
    as_saved_by_v4["vision_model.embeddings.position_ids"] = torch.arange(17)[None]  # a buffer, dropped
    without = hf_clip_vision_to_open_clip(bare)
    _assert_equal_states(hf_clip_vision_to_open_clip(as_saved_by_v4), without)
    assert "visual.proj" not in without

    tower = _open_clip(seed=1)
    tower.proj = None  # open_clip's tower without a head: the pooled width-dim feature
    tower.load_state_dict(_visual(without), strict=True)
    pooled = hf(pixel_values=_images()).pooler_output
    torch.testing.assert_close(tower(_images()), pooled, **SAME_NETWORK)

    projection = torch.randn(EMBED_DIM, WIDTH, generator=torch.Generator().manual_seed(3))
    with_projection = hf_clip_vision_to_open_clip(as_saved_by_v4, projection=projection)
    assert torch.equal(with_projection["visual.proj"], projection.T)
    tower = _open_clip(seed=1)
    tower.load_state_dict(_visual(with_projection), strict=True)
    torch.testing.assert_close(tower(_images()), pooled @ projection.T, **SAME_NETWORK)
    assert "visual_projection.weight" not in open_clip_to_hf_clip_vision(without)


def test_projections_that_do_not_fit_are_refused():
    state, bare = _hf().state_dict(), _hf(bare=True).state_dict()
    with pytest.raises(ValueError, match="has its own 'visual_projection.weight'"):
        hf_clip_vision_to_open_clip(state, projection=torch.zeros(EMBED_DIM, WIDTH))
    with pytest.raises(ValueError, match=r"'visual_projection.weight' has shape \[16, 48\].*width 32"):
        hf_clip_vision_to_open_clip(bare, projection=torch.zeros(EMBED_DIM, 48))
    with pytest.raises(ValueError, match=r"'visual.proj' has shape \[16, 32\]"):
        open_clip_to_hf_clip_vision({**hf_clip_vision_to_open_clip(state), "visual.proj": torch.zeros(EMBED_DIM, WIDTH)})


def test_unknown_missing_and_foreign_names_are_refused():
    state = _hf().state_dict()
    unknown = {**state, "vision_model.encoder.layers.0.self_attn.rotary.weight": torch.zeros(3)}
    with pytest.raises(ValueError, match="'vision_model.encoder.layers.0.self_attn.rotary.weight' is not a name"):
        hf_clip_vision_to_open_clip(unknown)
    with pytest.raises(ValueError, match="'vision_model.embeddings.patch_embedding.bias' is not a name"):
        hf_clip_vision_to_open_clip({**state, "vision_model.embeddings.patch_embedding.bias": torch.zeros(WIDTH)})
    missing = {key: value for key, value in state.items() if key != "vision_model.encoder.layers.1.self_attn.v_proj.bias"}
    with pytest.raises(ValueError, match="'vision_model.encoder.layers.1.self_attn.v_proj.bias' is missing"):
        hf_clip_vision_to_open_clip(missing)
    not_clip = {"fc.weight": torch.zeros(2, 2), "fc.bias": torch.zeros(2)}
    with pytest.raises(ValueError, match="not a Hugging Face CLIP vision tower.*'fc.weight'"):
        hf_clip_vision_to_open_clip(not_clip)
    with pytest.raises(ValueError, match="not an open_clip CLIP image tower.*'fc.weight'"):
        open_clip_to_hf_clip_vision(not_clip)
    open_clip_state = hf_clip_vision_to_open_clip(state)
    with pytest.raises(ValueError, match="not a Hugging Face CLIP vision tower"):
        hf_clip_vision_to_open_clip(open_clip_state)
    with pytest.raises(ValueError, match="'visual.transformer.resblocks.0.ls_1.gamma' is not a name"):
        open_clip_to_hf_clip_vision({**open_clip_state, "visual.transformer.resblocks.0.ls_1.gamma": torch.ones(WIDTH)})
    with pytest.raises(ValueError, match=r"'visual.transformer.resblocks.0.attn.in_proj_bias' has shape \[31\]"):
        open_clip_to_hf_clip_vision({**open_clip_state, "visual.transformer.resblocks.0.attn.in_proj_bias": torch.zeros(31)})


def test_the_command_converts_names(tmp_path, capsys):
    state = _hf().state_dict()
    save_file(state, tmp_path / "hf.safetensors")
    assert convert_cli.main([str(tmp_path / "hf.safetensors"), str(tmp_path / "oc.safetensors"), "--names", "open_clip"]) == 0
    written = load_file(tmp_path / "oc.safetensors")
    _assert_equal_states(written, hf_clip_vision_to_open_clip(state))
    assert convert_cli.main([str(tmp_path / "oc.safetensors"), str(tmp_path / "back.safetensors"), "--names", "hf-clip"]) == 0
    _assert_equal_states(load_file(tmp_path / "back.safetensors"), state)

    folder = tmp_path / "clip-vit-tiny_task"  # a Hugging Face folder holding a bare CLIPVisionModel
    folder.mkdir()
    save_file(_hf(bare=True).state_dict(), folder / "model.safetensors")
    assert convert_cli.main([str(folder), str(tmp_path / "bare.safetensors"), "--names", "open_clip",
                             "--projection", str(tmp_path / "hf.safetensors")]) == 0
    assert torch.equal(load_file(tmp_path / "bare.safetensors")["visual.proj"], state["visual_projection.weight"].T)
    capsys.readouterr()

    save_file({"fc.weight": torch.zeros(2, 2)}, tmp_path / "other.safetensors")
    assert convert_cli.main([str(tmp_path / "other.safetensors"), str(tmp_path / "x.safetensors"), "--names", "open_clip"]) == 1
    assert "other.safetensors: not a Hugging Face CLIP vision tower" in capsys.readouterr().err
    assert convert_cli.main([str(folder), str(tmp_path / "x.safetensors"), "--names", "open_clip",
                             "--projection", str(tmp_path / "other.safetensors")]) == 1
    assert "other.safetensors: no 'visual_projection.weight'" in capsys.readouterr().err
    assert convert_cli.main([str(folder), str(tmp_path / "x.safetensors"), "--projection", str(tmp_path / "hf.safetensors")]) == 1
    assert "needs --names open_clip" in capsys.readouterr().err
    assert not (tmp_path / "x.safetensors").exists()
