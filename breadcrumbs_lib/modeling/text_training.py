"""Training a T5: span-corruption pretraining, and fine-tuning on prompts with one answer to fill.

Both are the same sequence-to-sequence loss (cross-entropy of the target tokens, teacher forced)
with :func:`.training.optimise`'s schedule (cosine after a linear warm-up); they differ in where the
pairs come from:

* **pretraining** (T5's objective, Raffel et al. 2020): a ``noise_density`` share of each text's
  tokens, in spans of mean length ``mean_span``, is cut out; each span is replaced in the input by
  a sentinel ``<extra_id_i>`` and the target lists the sentinels with the spans they hide,
  ``<extra_id_0> span_0 <extra_id_1> span_1 ... <extra_id_k> </s>``; optionally mixed with
  *questions*, texts whose one hidden span is chosen (a task's answer, as fine-tuning hides it);
* **fine-tuning**: the input is a task's prompt with ``<extra_id_0>`` where the answer goes and the
  target is ``<extra_id_0> answer <extra_id_1> </s>``: the same form, so a prompt asks the
  foundation and a fine-tuned model the same question (:mod:`.text_evaluation`).

Every weight of the T5 is trained (encoder, decoder, the shared embedding); dropout is off.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .data import shuffled_batches
from .devices import bf16_autocast
from .text_models import SENTINELS, TextTokenizer, pad_sequences
from .training import OptimConfig, optimise

IGNORE = -100  # target positions the loss skips (padding)


def span_corrupt(ids: Sequence[int], rng: random.Random, sentinel_ids: Sequence[int], eos_id: int, *,
                 noise_density: float = 0.15, mean_span: float = 3.0) -> tuple[list[int], list[int]]:
    """T5's span corruption of one token sequence: ``(input ids, target ids)``, both closed by ``eos_id``.

    ``round(noise_density * n)`` tokens (at least one, at most ``n - 1``) are masked in
    ``round(masked / mean_span)`` spans (at least one, at most as many as sentinels); span lengths
    and the gaps between them are random partitions of the masked and kept counts."""
    n = len(ids)
    if n < 2:
        raise ValueError(f"span corruption needs at least 2 tokens, got {n}")
    masked = min(max(1, round(noise_density * n)), n - 1)
    spans = min(max(1, round(masked / mean_span)), masked, n - masked, len(sentinel_ids))
    noise_lengths = _partition(masked, spans, rng)
    kept_lengths = _partition(n - masked, spans, rng)
    inputs: list[int] = []
    targets: list[int] = []
    position = 0
    for span, (kept, noise) in enumerate(zip(kept_lengths, noise_lengths)):
        inputs += list(ids[position:position + kept]) + [sentinel_ids[span]]
        position += kept
        targets += [sentinel_ids[span]] + list(ids[position:position + noise])
        position += noise
    targets += [sentinel_ids[spans]] if spans < len(sentinel_ids) else []
    return inputs + [eos_id], targets + [eos_id]


def _partition(total: int, parts: int, rng: random.Random) -> list[int]:
    """``total`` split into ``parts`` positive integers at random cut points."""
    cuts = sorted(rng.sample(range(1, total), parts - 1)) if parts > 1 else []
    bounds = [0, *cuts, total]
    return [b - a for a, b in zip(bounds, bounds[1:])]


def answer_target(tokenizer: TextTokenizer, answer: str) -> list[int]:
    """``<extra_id_0> answer <extra_id_1> </s>``: the target that fills a prompt's one sentinel."""
    return [tokenizer.token_id(SENTINELS[0]), *tokenizer.ids(answer), tokenizer.token_id(SENTINELS[1]),
            tokenizer.eos_id]


def seq2seq_loss(model: nn.Module, inputs: Tensor, targets: Tensor, pad_id: int) -> Tensor:
    """Mean cross-entropy of the target tokens (padding skipped), teacher forced."""
    labels = targets.masked_fill(targets == pad_id, IGNORE)
    device = next(model.parameters()).device
    with bf16_autocast(device):
        logits = model(input_ids=inputs.to(device), attention_mask=(inputs != pad_id).to(device),
                       decoder_input_ids=model.prepare_decoder_input_ids_from_labels(labels=labels.to(device))).logits
    return nn.functional.cross_entropy(logits.float().flatten(0, 1), labels.to(device).flatten(), ignore_index=IGNORE)


def pretrain_t5(model: nn.Module, tokenizer: TextTokenizer, texts: Sequence[str], config: OptimConfig, *, seed: int,
                questions: Sequence[tuple[str, str]] = (), max_length: int = 96,
                description: str = "pretraining") -> list[float]:
    """Span-corruption pretraining on ``texts`` (a fresh corruption of each text every time it is
    drawn, seeded), mixed with ``questions``: ``(prompt with <extra_id_0>, answer)`` pairs whose
    target is :func:`answer_target`, a corruption that hides exactly the answer. Batches draw
    uniformly from both. Returns every step's loss."""
    sequences = [ids[:max_length - 1] for ids in (tokenizer.ids(text) for text in texts) if len(ids) >= 2]
    fixed = [(tokenizer.ids(prompt)[:max_length - 1] + [tokenizer.eos_id], answer_target(tokenizer, answer))
             for prompt, answer in questions]
    if not sequences and not fixed:
        raise ValueError("pretraining needs at least one text of two tokens or more, or one question")
    sentinel_ids = [tokenizer.token_id(token) for token in SENTINELS]
    rng = random.Random(f"span-corruption-{seed}")
    batches = shuffled_batches(len(sequences) + len(fixed), config.batch_size, seed)

    def pair(index: int) -> tuple[list[int], list[int]]:
        if index < len(sequences):
            return span_corrupt(sequences[index], rng, sentinel_ids, tokenizer.eos_id)
        return fixed[index - len(sequences)]

    def next_loss() -> Tensor:
        pairs = [pair(i) for i in next(batches).tolist()]
        inputs = pad_sequences([p[0] for p in pairs], tokenizer.pad_id)
        targets = pad_sequences([p[1] for p in pairs], tokenizer.pad_id)
        return seq2seq_loss(model, inputs, targets, tokenizer.pad_id)

    model.train()
    losses = optimise(model.parameters(), config, next_loss, description)
    model.eval()
    return losses


def finetune_t5(model: nn.Module, tokenizer: TextTokenizer, prompts: Sequence[str], answers: Sequence[str],
                config: OptimConfig, *, seed: int, max_length: int = 96, description: str = "fine-tuning") -> list[float]:
    """Fine-tune every weight on ``(prompt, answer)`` pairs (target :func:`answer_target`)."""
    if len(prompts) != len(answers) or not prompts:
        raise ValueError(f"fine-tuning needs as many answers as prompts (got {len(prompts)} and {len(answers)})")
    inputs = tokenizer.batch(prompts, max_length)
    targets = pad_sequences([answer_target(tokenizer, answer) for answer in answers], tokenizer.pad_id)
    batches = shuffled_batches(len(prompts), config.batch_size, seed)

    def next_loss() -> Tensor:
        index = next(batches)
        batch_inputs = inputs[index]
        width = int((batch_inputs != tokenizer.pad_id).sum(dim=1).max())
        return seq2seq_loss(model, batch_inputs[:, :width], targets[index], tokenizer.pad_id)

    model.train()
    losses = optimise(model.parameters(), config, next_loss, description)
    model.eval()
    return losses

