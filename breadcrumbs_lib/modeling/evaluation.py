"""Evaluation: accuracy per task of one live image encoder, whose weights are swapped in place.

Sweeps evaluate hundreds of merged models, so the :class:`Evaluator` builds the model once,
keeps every test set as uint8 images (on the device when they fit), and for each candidate
copies the merged weights into the existing encoder (``load_state_dict`` copies into the live
parameters) and swaps the task's zero-shot head. Normalized accuracy follows the paper (eq. 3): merged accuracy divided by
the fine-tuned model's accuracy on the same task.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from .data import Images, ImageSplit, normalize
from .devices import bf16_autocast
from .models import ImageClassifier


class Evaluator:
    """Accuracy of ``classifier``'s encoder, with any weights, on a fixed set of labelled splits.

    In-memory splits stay uint8 (a quarter of float32's bytes) and are normalised batch by batch:
    on the device when they fit (on a GPU: a quarter of its free memory), else where they are (in
    host memory, or memory-mapped from disk) and copied over one batch at a time. Other ``splits``
    (loaders over real datasets) are decoded again at every evaluation.
    """

    def __init__(
        self,
        classifier: ImageClassifier,
        heads: Mapping[str, Tensor],
        splits: Mapping[str, Images],
        *,
        device: torch.device | str | None = None,
        batch_size: int = 1024,
    ):
        """``device`` defaults to the classifier's own device."""
        device = device if device is not None else next(classifier.parameters()).device
        missing = sorted(set(splits) - set(heads))
        if missing:
            raise ValueError(f"no zero-shot head for task(s) {missing}")
        self.classifier = classifier.to(device).eval()
        self.device = device
        self.batch_size = batch_size
        self.heads = {task: heads[task].to(device) for task in splits}
        self.splits = {
            task: (_on_device_if_it_fits(split.images, device), split.labels.to(device))
            if isinstance(split, ImageSplit) else split
            for task, split in splits.items()
        }

    @property
    def tasks(self) -> list[str]:
        return list(self.splits)

    def load(self, encoder_state: Mapping[str, Tensor]) -> None:
        """Copy ``encoder_state`` into the live encoder (strict: every key, every shape)."""
        self.classifier.encoder.load_state_dict(encoder_state, strict=True)

    @torch.inference_mode()
    def correct(self, task: str) -> Tensor:
        """Per image of ``task``'s split, in order: whether the current weights classify it right
        (a bool tensor on the CPU; paired bootstraps resample it).

        The encoder runs under :func:`.devices.bf16_autocast` where the device has native bf16
        arithmetic, the logits in float32."""
        self.classifier.set_head(self.heads[task])
        with bf16_autocast(self.device):
            hits = [(self.classifier(images.to(self.device)).argmax(dim=1) == labels.to(self.device)).cpu()
                    for images, labels in self._batches(task)]
        return torch.cat(hits)

    def accuracy(self, task: str) -> float:
        """Top-1 accuracy of the current weights on ``task``."""
        hits = self.correct(task)
        return int(hits.sum()) / hits.numel()

    def _batches(self, task: str):
        split = self.splits[task]
        if isinstance(split, tuple):
            inputs, labels = split
            return ((normalize(inputs[i:i + self.batch_size], self.device), labels[i:i + self.batch_size])
                    for i in range(0, inputs.shape[0], self.batch_size))
        return split

    def evaluate(self, encoder_state: Mapping[str, Tensor] | None = None, tasks: list[str] | None = None) -> dict[str, float]:
        """Accuracy on ``tasks`` (default: all), after loading ``encoder_state`` if given."""
        if encoder_state is not None:
            self.load(encoder_state)
        return {task: self.accuracy(task) for task in (tasks or self.tasks)}


def _on_device_if_it_fits(images: Tensor, device: torch.device | str) -> Tensor:
    """``images`` on ``device``, unless it is a GPU where they would take more than a quarter of
    its free memory (models and activations need the rest): then they stay where they are."""
    device = torch.device(device)
    if device.type == "cuda" and images.nbytes > torch.cuda.mem_get_info(device)[0] // 4:
        return images
    return images.to(device)
