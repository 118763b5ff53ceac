"""The diagonal Fisher information of a classifier's weights, as Fisher merging needs it.

For a model ``p_theta(y | x)`` and examples ``x_1 .. x_N`` of its task (Matena & Raffel, 2022):

    F_i = (1 / N) * sum_n  E_{y ~ p_theta(. | x_n)} [ (d/dtheta_i  log p_theta(y | x_n))^2 ]

The expectation over ``y`` is estimated, as in the original, with one label per example drawn
from the model's own prediction (seeded); the *empirical* Fisher uses the true label instead.
Each term is the square of one example's gradient (not of a batch's mean gradient), so every
example gets its own backward pass. The Fisher is computed in float32, without autocast.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .data import Images, ImageSplit, normalize


@dataclass(frozen=True)
class FisherConfig:
    """How a Fisher is estimated: on ``examples`` training examples of the task (the first of a
    seeded shuffle), with sampled labels or, if ``empirical``, the true ones."""

    examples: int = 256
    empirical: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.examples, bool) or not isinstance(self.examples, int) or self.examples < 1:
            raise ValueError(f"a Fisher needs at least one example, got examples={self.examples!r}")


def diagonal_fisher(
    model: nn.Module,
    images: Images | Iterable[tuple[Tensor, Tensor]],
    config: FisherConfig,
    *,
    of: nn.Module | None = None,
    seed: int = 0,
    device: torch.device | str = "cpu",
    description: str | None = None,
) -> dict[str, Tensor]:
    """The diagonal Fisher (see the module docstring) of the weights of ``of`` (default: all of
    ``model``), where ``model(x)`` returns logits.

    ``images``: an in-memory image split (its first ``config.examples`` of a seeded shuffle are
    used), or any iterable of ``(inputs, labels)`` batches, taken in order (a loader, or a text
    world's token ids), whose rows are the examples.

    Returns a float32 tensor per floating-point entry of ``of.state_dict()`` (on the CPU, keyed
    like it); entries that are not trainable parameters get zeros. Raises ``ValueError`` when
    ``images`` holds fewer than ``config.examples`` examples.
    """
    of = model if of is None else of
    parameters = dict(of.named_parameters())
    totals = {name: torch.zeros_like(p, dtype=torch.float32) for name, p in parameters.items()}
    generator = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    seen = 0
    try:
        examples = _examples(images, config.examples, generator, device)
        for x, label in tqdm(examples, total=config.examples, desc=description or "Fisher", leave=False):
            logits = model(x[None]).float()
            log_probs = torch.log_softmax(logits, dim=-1)[0]
            if not config.empirical:
                label = torch.multinomial(log_probs.detach().exp().cpu(), 1, generator=generator)[0]
            model.zero_grad(set_to_none=True)
            log_probs[label].backward()
            for name, p in parameters.items():
                if p.grad is not None:
                    totals[name] += p.grad.detach().float().square()
            seen += 1
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    if seen < config.examples:
        raise ValueError(f"a Fisher on {config.examples} examples was asked for, but the task's data has only {seen}")
    state = of.state_dict()
    return {name: (totals[name] / seen).cpu() if name in totals else torch.zeros(value.shape)
            for name, value in state.items() if value.is_floating_point()}


def _examples(images: Images | Iterable[tuple[Tensor, Tensor]], count: int, generator: torch.Generator,
              device: torch.device | str) -> Iterator[tuple[Tensor, Tensor]]:
    """``(normalised image, label)`` pairs: the first ``count`` of a seeded shuffle of an
    in-memory split, or the first ``count`` of a loader's batches (its sampler shuffles)."""
    if isinstance(images, ImageSplit):
        order = torch.randperm(len(images), generator=generator)[:count]
        for index in order.split(64):
            batch = normalize(images.images[index], device)
            yield from zip(batch, images.labels[index].to(device))
        return
    given = 0
    for batch, labels in images:
        for x, label in zip(batch, labels):
            if given == count:
                return
            yield x.to(device), label.to(device)
            given += 1
