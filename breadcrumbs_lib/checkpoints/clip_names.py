"""The names of a CLIP image tower (a ViT) in Hugging Face ``transformers`` and in ``open_clip``.

Both libraries hold the same weights under different names. With ``i`` a block index, ``p`` the
patch size and ``g = image_size / p``, HF's names relative to ``vision_model.`` -> open_clip's
relative to ``visual.``:

* ``embeddings.class_embedding`` (width,) -> ``class_embedding``, the same;
* ``embeddings.patch_embedding.weight`` (width, 3, p, p) -> ``conv1.weight``, the same (neither
  library gives this conv a bias);
* ``embeddings.position_embedding.weight`` (1 + g*g, width) -> ``positional_embedding``, the same;
* ``pre_layrnorm.{weight,bias}`` (HF's spelling) -> ``ln_pre.{weight,bias}``;
* ``encoder.layers.i.`` -> ``transformer.resblocks.i.``, and in each block

  - ``layer_norm1.*`` -> ``ln_1.*``, ``layer_norm2.*`` -> ``ln_2.*``;
  - ``self_attn.{q,k,v}_proj.weight``, three (width, width) -> ``attn.in_proj_weight`` (3 width,
    width) = ``[q; k; v]`` stacked along dim 0 (``nn.MultiheadAttention``'s packed layout), and
    ``self_attn.{q,k,v}_proj.bias`` -> ``attn.in_proj_bias`` (3 width,) likewise;
  - ``self_attn.out_proj.*`` -> ``attn.out_proj.*``;
  - ``mlp.fc1.*`` -> ``mlp.c_fc.*``, ``mlp.fc2.*`` -> ``mlp.c_proj.*``;

* ``post_layernorm.{weight,bias}`` -> ``ln_post.{weight,bias}``;
* ``visual_projection.weight`` (embed_dim, width), a ``Linear`` without bias beside the tower
  (not under ``vision_model.``) -> ``proj`` (width, embed_dim), its transpose.

The two compute the same image embedding: HF applies ``post_layernorm`` to the class token,
open_clip (``pool_type="tok"``) applies ``ln_post`` to every token and takes the class token,
the same numbers because a layer norm acts on each token alone; then ``x @ proj`` equals
``visual_projection(x) = x @ visual_projection.weight.T``. Their hyperparameters are not in a
state dict and must agree separately: the activation (``quick_gelu`` for OpenAI's CLIP, open_clip's
``QuickGELU``) and the layer-norm eps (1e-5 in both by default).

Only the names and the q/k/v and projection tensors change; every other tensor is passed through
as is, so a round trip gives back bitwise-equal tensors under the original names.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import torch
from torch import Tensor

#: HF's image tower prefix, in ``CLIPModel`` and ``CLIPVisionModelWithProjection``, and in
#: ``CLIPVisionModel`` files written by transformers 4 (transformers 5 writes those without it).
HF_TOWER = "vision_model."
#: HF's image projection, (embed_dim, width), beside the tower.
HF_PROJECTION = "visual_projection.weight"
#: HF's position index buffer: not a weight; older transformers versions saved it.
HF_POSITION_IDS = "embeddings.position_ids"
#: The rest of a whole HF ``CLIPModel`` (its text tower), left out.
HF_TEXT = ("text_model.", "text_projection.weight", "logit_scale")
#: open_clip's image tower prefix in a whole CLIP model.
OPEN_CLIP_TOWER = "visual."
#: open_clip's image projection, (width, embed_dim).
OPEN_CLIP_PROJECTION = "proj"

#: Names outside the blocks: (HF, open_clip), one tensor each.
_STEM = (
    ("embeddings.class_embedding", "class_embedding"),
    ("embeddings.patch_embedding.weight", "conv1.weight"),
    ("embeddings.position_embedding.weight", "positional_embedding"),
    ("pre_layrnorm.weight", "ln_pre.weight"),
    ("pre_layrnorm.bias", "ln_pre.bias"),
    ("post_layernorm.weight", "ln_post.weight"),
    ("post_layernorm.bias", "ln_post.bias"),
)
#: Names inside block ``i`` (after ``encoder.layers.i.`` and ``transformer.resblocks.i.``), one tensor each.
_BLOCK = (
    ("layer_norm1.weight", "ln_1.weight"),
    ("layer_norm1.bias", "ln_1.bias"),
    ("self_attn.out_proj.weight", "attn.out_proj.weight"),
    ("self_attn.out_proj.bias", "attn.out_proj.bias"),
    ("layer_norm2.weight", "ln_2.weight"),
    ("layer_norm2.bias", "ln_2.bias"),
    ("mlp.fc1.weight", "mlp.c_fc.weight"),
    ("mlp.fc1.bias", "mlp.c_fc.bias"),
    ("mlp.fc2.weight", "mlp.c_proj.weight"),
    ("mlp.fc2.bias", "mlp.c_proj.bias"),
)
#: The order in which open_clip's ``in_proj_*`` stacks HF's three projections.
_QKV = ("q_proj", "k_proj", "v_proj")
_HF_BLOCK = re.compile(r"encoder\.layers\.(\d+)\.")
_OPEN_CLIP_BLOCK = re.compile(r"transformer\.resblocks\.(\d+)\.")

_HF_EXPECTED = ("a Hugging Face CLIP vision tower (CLIPVisionModel, CLIPVisionModelWithProjection or CLIPModel): "
                "names like 'vision_model.embeddings.patch_embedding.weight', "
                "'vision_model.encoder.layers.0.self_attn.q_proj.weight', 'vision_model.post_layernorm.weight'")
_OPEN_CLIP_EXPECTED = ("an open_clip CLIP image tower (a ViT: a CLIP model or its VisionTransformer): names like "
                       "'visual.conv1.weight', 'visual.transformer.resblocks.0.attn.in_proj_weight', 'visual.ln_post.weight'")


def hf_clip_vision_to_open_clip(state: Mapping[str, Tensor], *, projection: Tensor | None = None) -> dict[str, Tensor]:
    """A Hugging Face CLIP image tower's state dict under open_clip's names (``visual.``...).

    ``state`` is a ``CLIPVisionModelWithProjection``, a ``CLIPVisionModel`` or a whole
    ``CLIPModel``; its tower's names may carry ``vision_model.`` or not. Mapping (see the
    module): one-to-one renames, ``in_proj_weight = cat([q, k, v], dim=0)`` and ``in_proj_bias``
    likewise, ``visual.proj = visual_projection.weight.T``. Left out: a saved
    ``embeddings.position_ids`` buffer (position indices, not a weight) and a ``CLIPModel``'s text
    tower (``text_model.*``, ``text_projection.weight``, ``logit_scale``).

    A bare ``CLIPVisionModel`` has no projection: pass ``projection``, the ``visual_projection.weight``
    (embed_dim, width) of the CLIP model it was fine-tuned from, to get ``visual.proj``; without it
    the result has no ``visual.proj`` (an open_clip tower with ``proj = None``, whose output is the
    pooled width-dim feature). Raises ``ValueError`` naming the key for a name the mapping does not
    know or a missing one, naming the shape for q/k/v or a projection that do not fit, and saying
    what was expected for a state dict that is not a CLIP image tower.
    """
    prefix = HF_TOWER if any(key.startswith(HF_TOWER) for key in state) else ""
    tower, own_projection = _hf_tower(state, prefix)
    if projection is not None and own_projection is not None:
        raise ValueError(f"the state dict has its own {HF_PROJECTION!r}: pass projection only for a bare CLIPVisionModel")
    layers = _layer_count(tower, _HF_BLOCK)
    required = {hf for hf, _ in _pairs(layers)} | {name for names, _ in _fused(layers) for name in names}
    _check_names(tower, required, prefix, _HF_EXPECTED)
    out = {OPEN_CLIP_TOWER + oc: tower[hf] for hf, oc in _pairs(layers)}
    for names, oc in _fused(layers):
        out[OPEN_CLIP_TOWER + oc] = _concatenate(tower, names, prefix)
    projection = own_projection if projection is None else projection
    if projection is not None:
        _check_projection(projection, width=tower["embeddings.class_embedding"].shape[0], transposed=False)
        out[OPEN_CLIP_TOWER + OPEN_CLIP_PROJECTION] = _transpose(projection)
    return out


def open_clip_to_hf_clip_vision(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """An open_clip CLIP image tower's state dict under Hugging Face's
    ``CLIPVisionModelWithProjection`` names (``vision_model.``... and ``visual_projection.weight``).

    ``state`` is a whole open_clip CLIP model, whose ``visual.`` names are taken and the rest (the
    text tower, ``logit_scale``) left out, or its image tower alone, with or without ``visual.``:
    a ``VisionTransformer`` with the standard blocks. The inverse of
    :func:`hf_clip_vision_to_open_clip`: one-to-one renames, ``in_proj_weight`` split into three
    equal row blocks ``q_proj``, ``k_proj``, ``v_proj`` (``in_proj_bias`` likewise),
    ``visual_projection.weight = proj.T``. A tower without ``proj`` gives no
    ``visual_projection.weight`` (a ``CLIPVisionModel``'s tower under ``vision_model.``). Raises
    ``ValueError`` naming the key for a name the mapping does not know (layer scale, attentional
    pooling, a timm trunk, a ResNet tower) or a missing one, naming the shape for an ``in_proj_*`` or
    ``proj`` that does not fit, and saying what was expected for a state dict that is not a CLIP
    image tower.
    """
    prefix = OPEN_CLIP_TOWER if any(key.startswith(OPEN_CLIP_TOWER) for key in state) else ""
    tower = {key[len(prefix):]: tensor for key, tensor in state.items() if key.startswith(prefix)}
    if "conv1.weight" not in tower:
        raise ValueError(f"not {_OPEN_CLIP_EXPECTED}; got {_sample(state)}")
    layers = _layer_count(tower, _OPEN_CLIP_BLOCK)
    required = {oc for _, oc in _pairs(layers)} | {oc for _, oc in _fused(layers)}
    _check_names(tower, required, prefix, _OPEN_CLIP_EXPECTED, optional={OPEN_CLIP_PROJECTION})
    out = {HF_TOWER + hf: tower[oc] for hf, oc in _pairs(layers)}
    for names, oc in _fused(layers):
        out.update(zip((HF_TOWER + name for name in names), _split(tower[oc], prefix + oc)))
    if OPEN_CLIP_PROJECTION in tower:
        projection = tower[OPEN_CLIP_PROJECTION]
        _check_projection(projection, width=tower["class_embedding"].shape[0], transposed=True)
        out[HF_PROJECTION] = _transpose(projection)
    return out


def _hf_tower(state: Mapping[str, Tensor], prefix: str) -> tuple[dict[str, Tensor], Tensor | None]:
    """The tower's tensors by name relative to ``prefix``, and the projection if present."""
    tower = {}
    for key, tensor in state.items():
        if key == HF_PROJECTION or key.startswith(HF_TEXT):
            continue
        if not key.startswith(prefix):
            raise ValueError(f"{key!r} is not a name of {_HF_EXPECTED} (the other names are under {prefix!r})")
        if key[len(prefix):] != HF_POSITION_IDS:
            tower[key[len(prefix):]] = tensor
    if "embeddings.patch_embedding.weight" not in tower:
        raise ValueError(f"not {_HF_EXPECTED}; got {_sample(state)}")
    return tower, state.get(HF_PROJECTION)


def _pairs(layers: int) -> list[tuple[str, str]]:
    """The one-to-one (HF, open_clip) names of a tower of ``layers`` blocks."""
    blocks = [(f"encoder.layers.{i}.{hf}", f"transformer.resblocks.{i}.{oc}") for i in range(layers) for hf, oc in _BLOCK]
    return [*_STEM, *blocks]


def _fused(layers: int) -> list[tuple[tuple[str, str, str], str]]:
    """(HF's q, k, v names, open_clip's ``in_proj_*`` name) for each block's weight and bias."""
    return [(tuple(f"encoder.layers.{i}.self_attn.{qkv}.{kind}" for qkv in _QKV),
             f"transformer.resblocks.{i}.attn.in_proj_{kind}")
            for i in range(layers) for kind in ("weight", "bias")]


def _layer_count(names: Iterable[str], block: re.Pattern[str]) -> int:
    indices = [int(match.group(1)) for name in names if (match := block.match(name))]
    return max(indices, default=-1) + 1


def _check_names(tower: Mapping[str, Tensor], required: set[str], prefix: str, what: str,
                 *, optional: frozenset[str] | set[str] = frozenset()) -> None:
    """Every name of ``tower`` is ``required`` or ``optional``, and every ``required`` one is there."""
    unknown = sorted(set(tower) - required - optional)
    if unknown:
        more = f" (and {len(unknown) - 1} more unknown names)" if len(unknown) > 1 else ""
        raise ValueError(f"{prefix + unknown[0]!r} is not a name of {what}{more}")
    missing = sorted(required - set(tower))
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise ValueError(f"{prefix + missing[0]!r} is missing{more}: expected {what}, with every tensor of each block")


def _concatenate(tower: Mapping[str, Tensor], names: tuple[str, str, str], prefix: str) -> Tensor:
    shapes = [tuple(tower[name].shape) for name in names]
    if len(set(shapes)) != 1:
        listed = ", ".join(f"{prefix + name!r} {list(shape)}" for name, shape in zip(names, shapes))
        raise ValueError(f"the q, k, v projections must have one shape to be stacked: {listed}")
    return torch.cat([tower[name] for name in names], dim=0)


def _split(tensor: Tensor, name: str) -> list[Tensor]:
    if tensor.ndim == 0 or tensor.shape[0] % 3:
        raise ValueError(f"{name!r} has shape {list(tensor.shape)}: an in_proj stacks q, k, v, so its first dimension "
                         f"must be a multiple of 3")
    return [part.clone() for part in tensor.chunk(3, dim=0)]


def _check_projection(projection: Tensor, *, width: int, transposed: bool) -> None:
    name, axis, layout = ((OPEN_CLIP_TOWER + OPEN_CLIP_PROJECTION, 0, "(width, embed_dim)") if transposed
                          else (HF_PROJECTION, 1, "(embed_dim, width)"))
    if projection.ndim != 2 or projection.shape[axis] != width:
        raise ValueError(f"{name!r} has shape {list(projection.shape)}; expected {layout} with width {width}, "
                         f"the tower's (its class embedding's size)")


def _transpose(matrix: Tensor) -> Tensor:
    return matrix.t().clone(memory_format=torch.contiguous_format)


def _sample(state: Mapping[str, Tensor]) -> str:
    names = list(state)
    return f"{len(names)} tensors, first {names[:3]}" if names else "an empty state dict"
