"""Scoring a T5 on classification prompts: the answer word it finds most likely.

For an example with prompt ``x`` and a task with answer words ``w_1 .. w_C``, the prediction is

    argmax_c  log p(w_c <extra_id_1> | x, <extra_id_0>)

the log-likelihood of the target ``<extra_id_0> w_c <extra_id_1> </s>`` (:func:`.text_training.answer_target`)
summed over the answer's tokens and the closing sentinel (the first sentinel is the same for every
answer and the final ``</s>`` carries nothing). This is *rank classification* (as in T0 and
FLAN's evaluations): an exact-match accuracy over the task's answer words, which needs no
generation and gives the prompted foundation a fair zero-shot score. Fine-tuned and merged models
are scored the same way on the same prompts.

:class:`TextEvaluator` has the interface of :class:`.evaluation.Evaluator` (``load``, ``correct``,
``accuracy``, ``evaluate``), so merges of text models go through the same sweeps.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from .devices import bf16_autocast
from .text_models import TextTokenizer, load_t5_weights, pad_sequences
from .text_training import answer_target


class TextEvaluator:
    """Rank-classification accuracy of a T5, with any weights, on fixed prompted splits.

    ``model`` is used live (weights are loaded into it in place), so several evaluators can share
    one model; ``splits``: task -> ``(prompts, labels)``; ``answers``: task -> its answer words."""

    def __init__(self, model: nn.Module, tokenizer: TextTokenizer, answers: Mapping[str, Sequence[str]],
                 splits: Mapping[str, tuple[Sequence[str], Sequence[int]]], *, batch_size: int = 256,
                 max_length: int = 96):
        missing = sorted(set(splits) - set(answers))
        if missing:
            raise ValueError(f"no answer words for task(s) {missing}")
        self.model = model.eval()
        self.device = next(self.model.parameters()).device
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.inputs = {task: tokenizer.batch(list(prompts), max_length) for task, (prompts, _) in splits.items()}
        self.labels = {task: torch.as_tensor(list(labels), dtype=torch.long) for task, (_, labels) in splits.items()}
        # one padded target per answer word: (C, T), with the positions that count
        self.targets = {task: pad_sequences([answer_target(tokenizer, a) for a in answers[task]], tokenizer.pad_id)
                        for task in splits}

    @property
    def tasks(self) -> list[str]:
        return list(self.inputs)

    def load(self, weights: Mapping[str, Tensor]) -> None:
        """Copy ``weights`` (one entry per shared tensor) into the live model."""
        load_t5_weights(self.model, weights)

    @torch.inference_mode()
    def scores(self, task: str) -> Tensor:
        """``(N, C)`` log-likelihood of each answer word for each example of ``task``'s split.

        One encoder pass per batch of prompts, then one decoder pass for every (prompt, answer)
        pair of the batch: row ``b * C + c`` of the decoder batch is prompt ``b`` with answer ``c``."""
        pad = self.tokenizer.pad_id
        targets = self.targets[task].to(self.device)
        counted = targets != pad
        counted[:, 0] = False  # the opening sentinel is every answer's
        counted &= targets != self.tokenizer.eos_id
        answers = targets.shape[0]
        out = []
        for start in range(0, self.inputs[task].shape[0], self.batch_size):
            batch = self.inputs[task][start:start + self.batch_size]
            batch = batch[:, :int((batch != pad).sum(dim=1).max())].to(self.device)
            mask = batch != pad
            rows = batch.shape[0]
            labels = targets.repeat(rows, 1)
            with bf16_autocast(self.device):
                encoded = self.model.get_encoder()(input_ids=batch, attention_mask=mask).last_hidden_state
                logits = self.model(encoder_outputs=(encoded.repeat_interleave(answers, dim=0),),
                                    attention_mask=mask.repeat_interleave(answers, dim=0),
                                    decoder_input_ids=self.model.prepare_decoder_input_ids_from_labels(labels=labels)).logits
            logp = logits.float().log_softmax(dim=-1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)
            out.append((logp * counted.repeat(rows, 1)).sum(dim=1).view(rows, answers).cpu())
        return torch.cat(out)

    def correct(self, task: str) -> Tensor:
        """Per example of ``task``'s split, in order: whether the most likely answer is the label."""
        return self.scores(task).argmax(dim=1) == self.labels[task]

    def accuracy(self, task: str) -> float:
        hits = self.correct(task)
        return int(hits.sum()) / hits.numel()

    def evaluate(self, weights: Mapping[str, Tensor] | None = None, tasks: list[str] | None = None) -> dict[str, float]:
        """Accuracy on ``tasks`` (default: all), after loading ``weights`` if given."""
        if weights is not None:
            self.load(weights)
        return {task: self.accuracy(task) for task in (tasks or self.tasks)}
