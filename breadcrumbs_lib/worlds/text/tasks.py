"""The text world's four classification tasks, as text-to-text prompts, deterministic from a seed.

Every example is a prompt holding one sentinel, ``<extra_id_0>``, where the answer goes, and a
label: the index of the answer word in the task's ``labels`` (its verbalizer). The foundation, the
fine-tuned models and every merge are scored the same way (:mod:`...modeling.text_evaluation`): the
label word the model finds most likely at the sentinel. The prompt is the text world's frozen head:
it is the same for zero-shot, fine-tuned and merged models, as the class-name head is in the vision
world.

The sentences come from :mod:`.corpus`. Each area's sentences are shuffled once by the seed and cut
into three disjoint pools, ``train`` (60%), ``val`` (15%) and ``test`` (25%); a split of any task
reads only its own pool, and pretraining reads only the ``train`` pool, so no validation or test
sentence is ever trained on.

* ``topic`` (5 classes): which part of the standard library two docstring sentences document
  (two of the same area, so that a prompt holds enough evidence, and the pairs are many).
* ``sentiment`` (3): a real sentence followed by a templated verdict on it ("the interface is not
  clear but fast."); ``good`` when every judgement is positive (a negated negative counts as
  positive), ``bad`` when every one is negative, ``mixed`` otherwise.
* ``entailment`` (3): a premise and a hypothesis: a span of the premise (``yes``), that span
  negated, ``not`` put after one of its words (``no``: a contradiction by negation), or a span of
  another sentence of the same area (``maybe``). (A ``no`` made by swapping one word of the span
  for a word the premise lacks was not learnt by the tiny T5: 54% fine-tuned on validation against
  77% for the negation; docs/presets.md, rows T9 and T13.)
* ``paraphrase`` (2): a sentence and a rewording of it (synonyms, a frame: ``alike``) or a rewording
  of another sentence of the same area (``different``).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from .corpus import area_sentences

SENTINEL = "<extra_id_0>"
SPLITS = ("train", "val", "test")
POOL_SHARES = {"train": 0.60, "val": 0.15, "test": 0.25}


@dataclass(frozen=True)
class TextTask:
    """A task: its answer words and the prompt (``{text}`` is the example, the sentinel the answer)."""

    name: str
    labels: tuple[str, ...]
    prompt: str

    def render(self, text: str) -> str:
        return self.prompt.format(text=text, answer=SENTINEL)

    def caption(self, text: str, label: int) -> str:
        """The prompt with its answer written in: how the pretraining corpus says it."""
        return self.prompt.format(text=text, answer=self.labels[label])


TEXT_TASKS: dict[str, TextTask] = {
    "topic": TextTask("topic", ("mail", "web", "files", "numbers", "text"), "{text} this is about {answer} ."),
    "sentiment": TextTask("sentiment", ("good", "bad", "mixed"), "{text} overall , it was {answer} ."),
    "entailment": TextTask("entailment", ("yes", "no", "maybe"), "{text} ? {answer} ."),
    "paraphrase": TextTask("paraphrase", ("alike", "different"), "{text} the two are {answer} ."),
}


@dataclass(frozen=True)
class TextExamples:
    """A split of a text task: example texts (before the prompt) and their label indices."""

    texts: tuple[str, ...]
    labels: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.labels)


@lru_cache(maxsize=8)
def sentence_pools(seed: int) -> dict[str, dict[str, tuple[str, ...]]]:
    """``split -> area -> sentences``: each area shuffled by ``seed`` and cut 60 / 15 / 25."""
    pools: dict[str, dict[str, tuple[str, ...]]] = {split: {} for split in SPLITS}
    for area, sentences in area_sentences().items():
        order = list(sentences)
        random.Random(f"pools-{seed}-{area}").shuffle(order)
        train_end = round(POOL_SHARES["train"] * len(order))
        val_end = train_end + round(POOL_SHARES["val"] * len(order))
        for split, part in zip(SPLITS, (order[:train_end], order[train_end:val_end], order[val_end:])):
            pools[split][area] = tuple(part)
    return pools


def text_examples(task: str, split: str, per_class: int, seed: int, *, stream: str = "") -> TextExamples:
    """``per_class`` examples of each class of ``task`` from ``split``'s pool, in a seeded order.

    ``stream`` names an independent draw from the same pool (the pretraining corpus uses its own,
    so its captions are not the fine-tuning examples)."""
    if task not in TEXT_TASKS:
        raise ValueError(f"unknown text task {task!r}; expected one of {sorted(TEXT_TASKS)}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    rng = random.Random(f"{task}-{split}-{seed}-{stream}")
    pool = sentence_pools(seed)[split]
    examples = [(text, label) for label in range(len(TEXT_TASKS[task].labels))
                for text in _GENERATORS[task](pool, label, per_class, rng)]
    rng.shuffle(examples)
    return TextExamples(tuple(text for text, _ in examples), tuple(label for _, label in examples))


def _topic(pool: dict[str, tuple[str, ...]], label: int, n: int, rng: random.Random) -> list[str]:
    """``n`` distinct pairs of sentences of the area, each pair in a random order."""
    area = TEXT_TASKS["topic"].labels[label]
    sentences = pool[area]
    pairs = len(sentences) * (len(sentences) - 1) // 2
    if pairs < n:
        raise ValueError(f"text task 'topic': the {area!r} pool holds {len(sentences)} sentences, {pairs} pairs, "
                         f"fewer than the {n} per class asked for")
    chosen: set[tuple[int, int]] = set()
    texts = []
    while len(texts) < n:
        first, second = rng.sample(range(len(sentences)), 2)
        if (min(first, second), max(first, second)) not in chosen:
            chosen.add((min(first, second), max(first, second)))
            texts.append(f"{sentences[first]} {sentences[second]}")
    return texts


_POSITIVE = ("clear", "helpful", "reliable", "fast", "elegant", "useful", "simple", "robust", "excellent",
             "pleasant", "consistent", "intuitive")
_NEGATIVE = ("confusing", "useless", "slow", "buggy", "clumsy", "fragile", "awful", "inconsistent", "painful",
             "broken", "obscure", "tedious")
_SUBJECTS = ("interface", "module", "documentation", "function", "behaviour", "design", "api", "code")
_FRAMES = ("the {subject} is {judgement} .", "i found the {subject} {judgement} .",
           "in my view the {subject} is {judgement} .")


def _judgement(polarity: bool, rng: random.Random) -> str:
    """One adjective of that polarity, or the negation of one of the other."""
    if rng.random() < 0.3:
        return "not " + rng.choice(_NEGATIVE if polarity else _POSITIVE)
    return rng.choice(_POSITIVE if polarity else _NEGATIVE)


def _sentiment(pool: dict[str, tuple[str, ...]], label: int, n: int, rng: random.Random) -> list[str]:
    sentences = _all(pool)
    texts = []
    for _ in range(n):
        if label == 2:  # mixed: one judgement of each polarity, in either order
            first = rng.random() < 0.5
            polarities = [first, not first]
        else:
            polarities = [label == 0] * rng.choice((1, 2))
        words = [_judgement(p, rng) for p in polarities]
        joined = words[0] if len(words) == 1 else f"{words[0]} {'but' if label == 2 else 'and'} {words[1]}"
        verdict = rng.choice(_FRAMES).format(subject=rng.choice(_SUBJECTS), judgement=joined)
        texts.append(f"{rng.choice(sentences)} {verdict}")
    return texts


def _span(words: list[str], rng: random.Random) -> list[str]:
    length = rng.randint(4, min(8, len(words)))
    start = rng.randint(0, len(words) - length)
    return words[start:start + length]


def _entailment(pool: dict[str, tuple[str, ...]], label: int, n: int, rng: random.Random) -> list[str]:
    areas = sorted(pool)
    texts = []
    for _ in range(n):
        area = rng.choice(areas)
        premise = rng.choice(pool[area])
        words = premise.rstrip(".").split()
        if label == 2:  # maybe: a span of another sentence of the same area
            other = _other_sentence(pool[area], premise, rng)
            hypothesis = _span(other.rstrip(".").split(), rng)
        else:
            hypothesis = _span(words, rng)
            if label == 1:  # no: the span negated ("not" after one of its words but the last)
                hypothesis.insert(rng.randint(1, len(hypothesis) - 1), "not")
        texts.append(f"{premise} does it say that {' '.join(hypothesis)}")
    return texts


_SYNONYMS = {"return": "give back", "returns": "gives back", "function": "routine", "functions": "routines",
             "string": "text", "strings": "texts", "file": "document", "files": "documents", "object": "item",
             "objects": "items", "value": "quantity", "values": "quantities", "list": "sequence",
             "create": "make", "creates": "makes", "used": "employed", "use": "employ", "if": "when",
             "number": "count", "new": "fresh", "name": "label", "called": "invoked", "method": "operation",
             "message": "note", "error": "failure", "default": "standard", "given": "supplied"}
_REWORDINGS = ("in other words , {text}", "put differently , {text}", "{text}", "that is , {text}")


def _reword(sentence: str, rng: random.Random) -> str:
    words = [(_SYNONYMS.get(w, w) if rng.random() < 0.8 else w) for w in sentence.rstrip(".").split()]
    return rng.choice(_REWORDINGS).format(text=" ".join(words)) + " ."


def _paraphrase(pool: dict[str, tuple[str, ...]], label: int, n: int, rng: random.Random) -> list[str]:
    areas = sorted(pool)
    texts = []
    for _ in range(n):
        area = rng.choice(areas)
        first = rng.choice(pool[area])
        second = first if label == 0 else _other_sentence(pool[area], first, rng)
        texts.append(f"{first} {_reword(second, rng)}")
    return texts


def _other_sentence(sentences: tuple[str, ...], sentence: str, rng: random.Random) -> str:
    """A sentence of ``sentences`` other than ``sentence`` (drawn among four at random; the
    whole area if all four are ``sentence``)."""
    return rng.choice([s for s in rng.sample(sentences, 4) if s != sentence] or sentences)


def _all(pool: dict[str, tuple[str, ...]]) -> tuple[str, ...]:
    return tuple(s for area in sorted(pool) for s in pool[area])


_GENERATORS: dict[str, Callable[[dict[str, tuple[str, ...]], int, int, random.Random], list[str]]] = {
    "topic": _topic, "sentiment": _sentiment, "entailment": _entailment, "paraphrase": _paraphrase,
}
