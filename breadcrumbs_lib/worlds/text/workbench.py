"""The text world's workbench: a T5 foundation, its tokenizer, the prompted splits and the fine-tuned T5s.

It has the interface the study engine reads (:class:`..workbench.AnyWorkbench`), so sweeps, the
results store, tuning and the fidelity study run on it unchanged. Its task vectors are taken over
every weight of the T5 (:func:`...modeling.text_models.t5_weights`: the shared embedding once).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ...core.state_dicts import StateDict
from ...modeling.fisher import diagonal_fisher
from ...modeling.text_evaluation import RankClassifier, TextEvaluator
from ...modeling.text_models import TextTokenizer, load_t5_weights, t5_weights
from ...modeling.text_training import finetune_t5
from ..presets import Preset
from ..workbench import cached_fisher
from .tasks import TextExamples, TextTask


@dataclass
class TextWorkbench:
    """The artifacts of the text world for one preset and model size."""

    preset: Preset
    size: str
    device: torch.device
    model: nn.Module  # the foundation T5
    tokenizer: TextTokenizer
    definitions: dict[str, TextTask]  # task -> its answer words and prompt
    splits: dict[str, dict[str, TextExamples]]  # task -> split -> examples (texts before the prompt, labels)
    base: StateDict  # the foundation's weights: theta
    finetuned: dict[str, StateDict]  # task -> fine-tuned weights: theta'_t
    max_length: int = 96  # tokens per prompt, fine-tuning and evaluation
    curves: dict[str, list[float]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    folder: Path | None = None
    seed: int = 0
    fishers: dict[str, StateDict] = field(default_factory=dict)  # task -> its Fisher, once estimated or read
    fisher_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def tasks(self) -> list[str]:
        return list(self.splits)

    @property
    def classnames(self) -> dict[str, tuple[str, ...]]:
        """task -> its answer words (the verbalizer the prompt asks for)."""
        return {task: self.definitions[task].labels for task in self.tasks}

    def num_classes(self, task: str) -> int:
        return len(self.definitions[task].labels)

    def prompts(self, task: str, split: str) -> list[str]:
        """The prompts of ``task``'s ``split``: each example in the task's prompt, the answer a sentinel."""
        return [self.definitions[task].render(text) for text in self.splits[task][split].texts]

    def live_model(self) -> nn.Module:
        """A private copy of the foundation T5 (on the workbench's device)."""
        model = copy.deepcopy(self.model).to(self.device)
        load_t5_weights(model, self.base)
        return model.eval()

    def evaluators(self, splits: Sequence[str]) -> dict[str, TextEvaluator]:
        """One :class:`.TextEvaluator` per split (of every task), sharing one live T5."""
        model = self.live_model()
        return {split: TextEvaluator(model, self.tokenizer, self.classnames,
                                     {task: (self.prompts(task, split), self.splits[task][split].labels)
                                      for task in self.tasks}, max_length=self.max_length)
                for split in splits}

    def finetune_task(self, task: str) -> tuple[StateDict, list[float]]:
        """``task``'s T5 fine-tuned from the foundation on its training prompts (every weight, the
        preset's recipe, this workbench's seed) and its loss per step."""
        model = self.live_model()
        train = self.splits[task]["train"]
        answers = [self.definitions[task].labels[label] for label in train.labels]
        curve = finetune_t5(model, self.tokenizer, self.prompts(task, "train"), answers, self.preset.finetune,
                            seed=self.seed, max_length=self.max_length,
                            description=f"fine-tuning {task}")
        return {name: value.cpu() for name, value in t5_weights(model).items()}, curve

    def fisher(self, task: str) -> StateDict:
        """The diagonal Fisher of ``task``'s fine-tuned T5 on its training prompts, as a classifier
        over the task's answer words (:class:`...modeling.text_evaluation.RankClassifier`: ``p(y | x)``
        is the softmax of the answers' log-likelihoods), on the first ``preset.fisher.examples`` of a
        seeded shuffle; keyed like :meth:`finetune_task`'s weights, shared tensors once. Cached
        beside the fine-tuned models, as in the vision world (:func:`..workbench.cached_fisher`)."""
        def estimate() -> StateDict:
            model = self.live_model()
            load_t5_weights(model, self.finetuned[task])
            train = self.splits[task]["train"]
            order = torch.randperm(len(train), generator=torch.Generator().manual_seed(self.seed))
            chosen = order[:self.preset.fisher.examples].tolist()  # render and tokenize only what the Fisher reads
            prompts = [self.definitions[task].render(train.texts[i]) for i in chosen]
            examples = [(self.tokenizer.batch(prompts, self.max_length),
                         torch.as_tensor([train.labels[i] for i in chosen], dtype=torch.long))]
            classifier = RankClassifier(model, self.tokenizer, self.definitions[task].labels).to(self.device)
            fisher = diagonal_fisher(classifier, examples, self.preset.fisher, of=model, seed=self.seed,
                                     device=self.device, description=f"Fisher of {task}")
            return {name: fisher[name] for name in t5_weights(model)}
        return cached_fisher(self, task, estimate)
