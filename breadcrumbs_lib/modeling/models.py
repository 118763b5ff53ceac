"""CLIP models from open_clip, zero-shot heads, and the image classifier that is fine-tuned and merged.

The paper fine-tunes CLIP's image encoder with a *frozen* classification head: the zero-shot head
that CLIP's text encoder builds from class names and prompt templates (Ilharco et al.):

    w_c = normalize( mean_{template} normalize(text_encoder(template.format(class_c))) )
    logits(x) = logit_scale * normalize(image_encoder(x)) @ [w_1 ... w_C]

Only the image encoder is trained, so task vectors, masks and merges act on its state dict
(``ImageClassifier.encoder``). The ``mini`` preset's models are open_clip models built from the
project's own configs in ``model_configs/`` (small analogues of ViT-B/32, B/16, L/14).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import open_clip
import torch
import torch.nn.functional as F
from torch import Tensor, nn

MODEL_CONFIG_DIR = Path(__file__).parent / "model_configs"
#: open_clip's normalisation constants for CLIP image inputs.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@functools.lru_cache(maxsize=1)
def register_mini_configs() -> tuple[str, ...]:
    """Register the project's model configs with open_clip; returns their names."""
    open_clip.add_model_config(MODEL_CONFIG_DIR)
    return tuple(sorted(path.stem for path in MODEL_CONFIG_DIR.glob("*.json")))


def create_clip(model_name: str, *, seed: int, device: torch.device | str = "cpu") -> nn.Module:
    """An open_clip CLIP model with freshly initialised weights (``pretrained=None``).

    open_clip logs that no pretrained weights were loaded; that is the point here (the caller
    pretrains or loads its own), so that one message is not shown.
    """
    register_mini_configs()
    torch.manual_seed(seed)
    root = logging.getLogger()
    root.addFilter(_drop_random_init_notice)
    try:
        return open_clip.create_model(model_name, pretrained=None, device=device)
    finally:
        root.removeFilter(_drop_random_init_notice)


def _drop_random_init_notice(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith("No pretrained weights loaded")


def tokenizer_for(model_name: str) -> Callable[[Sequence[str]], Tensor]:
    """open_clip's tokenizer for ``model_name`` (the BPE tokenizer shipped with open_clip)."""
    register_mini_configs()
    return open_clip.get_tokenizer(model_name)


class ImageClassifier(nn.Module):
    """Image encoder + frozen zero-shot head: ``logits = scale * normalize(encoder(x)) @ head.T``.

    ``images`` are float tensors already normalised with :data:`CLIP_MEAN` / :data:`CLIP_STD`.
    The head is a buffer, never a parameter, so it stays frozen and outside the encoder's state
    dict; :meth:`set_head` swaps it to evaluate another task with the same encoder.
    """

    def __init__(self, encoder: nn.Module, head: Tensor):
        super().__init__()
        self.encoder = encoder
        self.register_buffer("head", head.detach().clone())

    def set_head(self, head: Tensor) -> None:
        self.head = head.detach().to(self.head.device)

    def forward(self, images: Tensor) -> Tensor:
        """Logits in float32, also under bf16 autocast: only the encoder runs in low precision
        (a bf16 logit near CLIP's scale of 20 would be rounded to steps of 1/8)."""
        features = F.normalize(self.encoder(images).float(), dim=-1)
        with torch.autocast(features.device.type, enabled=False):
            return features @ self.head.T.float()


@torch.no_grad()
def zero_shot_head(
    clip_model: nn.Module,
    tokenizer: Callable[[Sequence[str]], Tensor],
    classnames: Sequence[str],
    templates: Sequence[str],
    device: torch.device | str | None = None,
) -> Tensor:
    """The ``(C, D)`` zero-shot head: per class, the normalised mean of the normalised text
    embeddings of every template filled with the class name, times CLIP's logit scale."""
    clip_model.eval()
    device = device if device is not None else next(clip_model.parameters()).device
    rows = []
    for classname in classnames:
        tokens = tokenizer([template.format(classname) for template in templates]).to(device)
        embeddings = F.normalize(clip_model.encode_text(tokens), dim=-1)
        rows.append(F.normalize(embeddings.mean(dim=0), dim=-1))
    return clip_model.logit_scale.exp() * torch.stack(rows)
