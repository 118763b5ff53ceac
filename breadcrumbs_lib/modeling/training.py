"""Training loops: contrastive pretraining of a CLIP model, and fine-tuning of its image encoder.

Fine-tuning follows the paper (section 4.1, after Ilharco et al.): AdamW with weight decay 0.1,
a cosine learning-rate schedule after a linear warm-up, cross-entropy through the frozen
zero-shot head, only the image encoder trained. Pretraining (the ``mini`` preset's own
foundation) uses CLIP's symmetric contrastive loss on image-caption pairs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from .data import Images, normalize, shuffled_batches, training_batches
from .devices import bf16_autocast
from .models import ImageClassifier


#: The optimisers an :class:`OptimConfig` can name.
OPTIMIZERS = ("adamw", "sgd")


@dataclass(frozen=True)
class OptimConfig:
    """An optimiser with a cosine schedule after ``warmup_steps`` of linear warm-up.

    ``optimizer`` is ``"adamw"`` (the paper's: AdamW with decoupled weight decay
    ``weight_decay``; ``momentum`` unused) or ``"sgd"`` (heavy-ball SGD with ``momentum`` and L2
    weight decay ``weight_decay``, as ``torch.optim.SGD``); ``lr`` is the peak learning rate;
    ``grad_clip``, if set, rescales each step's gradient to at most that global L2 norm (the
    task_vectors fine-tuning recipe clips at 1.0).
    """

    steps: int
    batch_size: int
    lr: float
    weight_decay: float = 0.1
    warmup_steps: int = 0
    optimizer: str = "adamw"
    momentum: float = 0.9
    grad_clip: float | None = None

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; expected one of {list(OPTIMIZERS)}")
        if (self.steps < 1 or self.batch_size < 1 or not self.lr > 0 or not 0 <= self.warmup_steps <= self.steps
                or self.weight_decay < 0 or not 0 <= self.momentum < 1
                or (self.grad_clip is not None and not self.grad_clip > 0)):
            raise ValueError(f"invalid optimisation settings: {self}")

    def build(self, parameters) -> torch.optim.Optimizer:
        """The optimiser this config names, on ``parameters``, at the peak learning rate."""
        if self.optimizer == "sgd":
            return torch.optim.SGD(parameters, lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay)
        return torch.optim.AdamW(parameters, lr=self.lr, weight_decay=self.weight_decay)


def cosine_with_warmup(step: int, config: OptimConfig) -> float:
    """Learning-rate multiplier at ``step``: linear from 0 to 1 over the warm-up, then a cosine
    from 1 down to 0 at ``config.steps``."""
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def optimise(
    parameters,
    config: OptimConfig,
    next_loss: Callable[[], Tensor],
    description: str,
    after_step: Callable[[], None] | None = None,
) -> list[float]:
    """``config.steps`` steps of ``config``'s optimiser on ``parameters`` with the
    cosine-with-warm-up schedule, each on the loss ``next_loss()`` computes for the next batch;
    returns every step's loss."""
    parameters = list(parameters)
    optimizer = config.build(parameters)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: cosine_with_warmup(step, config))
    losses = []
    for _ in tqdm(range(config.steps), desc=description, leave=False):
        loss = next_loss()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(parameters, config.grad_clip)
        optimizer.step()
        scheduler.step()
        if after_step is not None:
            after_step()
        losses.append(float(loss.detach()))
    return losses


def pretrain_clip(
    clip_model: nn.Module,
    images: Tensor,
    tokens: Tensor,
    config: OptimConfig,
    *,
    seed: int,
    device: torch.device | str | None = None,
    description: str = "pretraining",
) -> list[float]:
    """Contrastive pretraining on image-caption pairs; returns the loss of every step.

    Loss per batch: ``(CE(s * I @ T.T, diag) + CE(s * T @ I.T, diag)) / 2`` with normalised image
    and text features ``I``, ``T`` and CLIP's learned temperature ``s``.
    """
    if images.shape[0] != tokens.shape[0]:
        raise ValueError(f"{images.shape[0]} images but {tokens.shape[0]} captions")
    device = device if device is not None else next(clip_model.parameters()).device
    clip_model.to(device).train()
    batches = shuffled_batches(images.shape[0], config.batch_size, seed)

    def contrastive_loss() -> Tensor:
        index = next(batches)
        with bf16_autocast(device):
            image_features, text_features, scale = clip_model(normalize(images[index], device), tokens[index].to(device))[:3]
        logits = scale.float() * image_features.float() @ text_features.float().T
        target = torch.arange(len(index), device=device)
        return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2

    @torch.no_grad()
    def clamp_temperature() -> None:
        clip_model.logit_scale.clamp_(0, math.log(100))

    losses = optimise(clip_model.parameters(), config, contrastive_loss, description, clamp_temperature)
    clip_model.eval()
    return losses


def finetune(
    classifier: ImageClassifier,
    train: Images,
    config: OptimConfig,
    *,
    seed: int,
    device: torch.device | str | None = None,
    description: str = "fine-tuning",
) -> list[float]:
    """Fine-tune ``classifier.encoder`` through its frozen head; returns the loss of every step.

    On CUDA, and on CPUs with native bf16 arithmetic, the forward pass runs in bfloat16 autocast
    (mixed precision: :func:`.devices.bf16_autocast`); weights and optimiser state stay float32.
    """
    torch.manual_seed(seed)
    device = device if device is not None else next(classifier.parameters()).device
    classifier.to(device).train()
    batches = training_batches(train, config.batch_size, seed, device)

    def classification_loss() -> Tensor:
        images, labels = next(batches)
        with bf16_autocast(device):
            return F.cross_entropy(classifier(images).float(), labels)

    losses = optimise(classifier.encoder.parameters(), config, classification_loss, description)
    classifier.eval()
    return losses


def tokenize(tokenizer: Callable[[Sequence[str]], Tensor], captions: Sequence[str], batch: int = 4096) -> Tensor:
    """Tokenise many captions in batches (open_clip tokenizers return ``(n, context_length)``)."""
    return torch.cat([tokenizer(list(captions[i:i + batch])) for i in range(0, len(captions), batch)])
