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
        self.targets = {task: answer_targets(tokenizer, answers[task]) for task in splits}

    @property
    def tasks(self) -> list[str]:
        return list(self.inputs)

    def load(self, weights: Mapping[str, Tensor]) -> None:
        """Copy ``weights`` (one entry per shared tensor) into the live model."""
        load_t5_weights(self.model, weights)

    @torch.inference_mode()
    def scores(self, task: str) -> Tensor:
        """``(N, C)`` log-likelihood of each answer word for each example of ``task``'s split
        (:func:`answer_log_likelihoods`, in batches, under bf16 autocast where the CPU has it)."""
        targets, counted = (value.to(self.device) for value in self.targets[task])
        out = []
        for start in range(0, self.inputs[task].shape[0], self.batch_size):
            batch = self.inputs[task][start:start + self.batch_size].to(self.device)
            with bf16_autocast(self.device):
                out.append(answer_log_likelihoods(self.model, batch, targets, counted, self.tokenizer.pad_id).cpu())
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


class RankClassifier(nn.Module):
    """A T5 as a classifier over one task's answer words: ``forward(input_ids)`` gives the ``(B, C)``
    log-likelihoods of :func:`answer_log_likelihoods` in float32, with gradients, so that
    ``log_softmax`` of them is ``log p(y | x)`` over the answers (what a Fisher of the text world
    is taken of). ``input_ids``: padded prompts from :meth:`.TextTokenizer.batch`."""

    def __init__(self, model: nn.Module, tokenizer: TextTokenizer, answers: Sequence[str]):
        super().__init__()
        self.model = model
        self.pad_id = tokenizer.pad_id
        targets, counted = answer_targets(tokenizer, answers)
        self.register_buffer("targets", targets)
        self.register_buffer("counted", counted)

    def forward(self, input_ids: Tensor) -> Tensor:
        return answer_log_likelihoods(self.model, input_ids, self.targets, self.counted, self.pad_id)


def answer_targets(tokenizer: TextTokenizer, answers: Sequence[str]) -> tuple[Tensor, Tensor]:
    """The padded targets of a task's answer words, ``(C, T)``, and which of their positions count:
    each answer's own tokens and its closing sentinel (not the opening sentinel that every answer
    shares, not padding, not ``</s>``)."""
    targets = pad_sequences([answer_target(tokenizer, answer) for answer in answers], tokenizer.pad_id)
    counted = (targets != tokenizer.pad_id) & (targets != tokenizer.eos_id)
    counted[:, 0] = False
    return targets, counted


def answer_log_likelihoods(model: nn.Module, input_ids: Tensor, targets: Tensor, counted: Tensor, pad_id: int) -> Tensor:
    """``(B, C)``: ``log p(answer c | prompt b)`` summed over the counted positions of target ``c``.

    One encoder pass over the prompts (trimmed to the longest one), then one decoder pass for every
    (prompt, answer) pair: row ``b * C + c`` of the decoder batch is prompt ``b`` with answer ``c``."""
    input_ids = input_ids[:, :int((input_ids != pad_id).sum(dim=1).max())]
    mask = input_ids != pad_id
    rows, answers = input_ids.shape[0], targets.shape[0]
    labels = targets.repeat(rows, 1)
    encoded = model.get_encoder()(input_ids=input_ids, attention_mask=mask).last_hidden_state
    logits = model(encoder_outputs=(encoded.repeat_interleave(answers, dim=0),),
                   attention_mask=mask.repeat_interleave(answers, dim=0),
                   decoder_input_ids=model.prepare_decoder_input_ids_from_labels(labels=labels)).logits
    logp = logits.float().log_softmax(dim=-1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    return (logp * counted.repeat(rows, 1)).sum(dim=1).view(rows, answers)
