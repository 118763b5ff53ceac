"""The ``paper-text`` preset's four language tasks, read from local JSON-lines files.

The paper's text does not name the four NLP tasks of its T5 experiment; this workbook takes one
standard dataset of each kind the ``mini`` text world has (the same prompts and answer form):

========== ============ ====================================== ================
task       dataset      answers (label 0, 1, ...)              test split
========== ============ ====================================== ================
topic      AG News      world, sports, business, science       ``test``
sentiment  SST-2 (GLUE) negative, positive                     ``validation``
entailment RTE (GLUE)   yes (entailment), no                   ``validation``
paraphrase MRPC (GLUE)  different, alike (equivalent)          ``validation``
========== ============ ====================================== ================

GLUE's test labels are hidden, so its official validation split is the test split here; the
validation split is a seeded 10% of the training set (at most 5,000 examples), chosen by a hash
of each example's line number (:func:`.held_out.lowest_hashes`, as for ImageNet's tasks). Each dataset is read from
``<data_root>/<folder>/<split>.jsonl``, one JSON object per line with the fields below and an
integer ``label``: what ``datasets.load_dataset(...)[split].to_json(path)`` writes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..text.tasks import TextExamples, TextTask
from .held_out import lowest_hashes


@dataclass(frozen=True)
class PaperTextTask:
    """Where one task's data lives and how an example's fields become its text."""

    definition: TextTask
    folder: str  # under data_root
    fields: tuple[str, ...]  # joined into the example's text
    test_split: str
    joiner: str = " "

    def text(self, record: dict) -> str:
        return self.joiner.join(str(record[name]).strip() for name in self.fields)


PAPER_TEXT_TASKS: dict[str, PaperTextTask] = {
    "topic": PaperTextTask(TextTask("topic", ("world", "sports", "business", "science"), "{text} this is about {answer} ."),
                           "ag_news", ("text",), "test"),
    "sentiment": PaperTextTask(TextTask("sentiment", ("negative", "positive"), "{text} overall , it was {answer} ."),
                               "sst2", ("sentence",), "validation"),
    "entailment": PaperTextTask(TextTask("entailment", ("yes", "no"), "{text} ? {answer} ."),
                                "rte", ("sentence1", "sentence2"), "validation", " does it say that "),
    "paraphrase": PaperTextTask(TextTask("paraphrase", ("different", "alike"), "{text} the two are {answer} ."),
                                "mrpc", ("sentence1", "sentence2"), "validation"),
}

VAL_SHARE, VAL_MAX = 0.10, 5_000


def split_files(task: str, data_root: str | Path) -> dict[str, Path]:
    """``{"train", "test"} -> file`` of ``task`` under ``data_root``."""
    spec = PAPER_TEXT_TASKS[task]
    root = Path(data_root) / spec.folder
    return {"train": root / "train.jsonl", "test": root / f"{spec.test_split}.jsonl"}


def read_records(path: Path, fields: tuple[str, ...], classes: int) -> list[dict]:
    """The JSON objects of a JSON-lines file, each checked for ``fields`` and a label in range."""
    records = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}, line {number}: not JSON ({error})") from None
            missing = [name for name in (*fields, "label") if name not in record]
            if missing:
                raise ValueError(f"{path}, line {number}: missing field(s) {missing}")
            if not (isinstance(record["label"], int) and 0 <= record["label"] < classes):
                raise ValueError(f"{path}, line {number}: label {record['label']!r} is not one of 0..{classes - 1}")
            records.append(record)
    if not records:
        raise ValueError(f"{path} holds no examples")
    return records


def load_text_task(task: str, data_root: str | Path, seed: int) -> dict[str, TextExamples]:
    """``{"train", "val", "test"} -> examples`` of one of the four tasks."""
    spec = PAPER_TEXT_TASKS[task]
    classes = len(spec.definition.labels)
    files = split_files(task, data_root)
    train = read_records(files["train"], spec.fields, classes)
    test = read_records(files["test"], spec.fields, classes)
    budget = min(VAL_MAX, round(VAL_SHARE * len(train)))
    held = lowest_hashes([f"{task}-{seed}-{i}" for i in range(len(train))], budget)

    def examples(records: list[dict]) -> TextExamples:
        return TextExamples(tuple(spec.text(r) for r in records), tuple(int(r["label"]) for r in records))

    return {"train": examples([r for i, r in enumerate(train) if i not in held]),
            "val": examples([train[i] for i in sorted(held)]), "test": examples(test)}
