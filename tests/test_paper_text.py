"""The ``paper-text`` preset: it names every missing input offline, and on a local T5 folder and
JSON-lines datasets (tiny stand-ins of the real ones, written here) it builds, fine-tunes and scores."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from breadcrumbs_lib.modeling.text_models import TextTokenizer, create_t5
from breadcrumbs_lib.modeling.training import OptimConfig
from breadcrumbs_lib.worlds.paper.data import PaperAssetsMissing
from breadcrumbs_lib.worlds.paper.text_tasks import PAPER_TEXT_TASKS, load_text_task, read_records
from breadcrumbs_lib.worlds.prepare import prepare
from breadcrumbs_lib.worlds.presets import PAPER_TEXT
from breadcrumbs_lib.worlds.text.corpus import reference_sentences


def test_offline_it_names_the_model_and_every_dataset_file(tmp_path):
    with pytest.raises(PaperAssetsMissing) as caught:
        prepare("paper-text", "base", data_root=tmp_path, cache_dir=tmp_path / "cache")
    message = str(caught.value)
    assert f"T5 t5-base: {tmp_path / 't5-base' / 'config.json'}" in message
    for path in ("ag_news/test.jsonl", "sst2/validation.jsonl", "rte/train.jsonl", "mrpc/validation.jsonl"):
        assert str(tmp_path / path) in message
    assert not (tmp_path / "cache").exists()


def _write_datasets(root, n_train=20, n_test=6):
    sentences = reference_sentences()
    for task, spec in PAPER_TEXT_TASKS.items():
        folder = root / spec.folder
        folder.mkdir(parents=True)
        for split, n in (("train", n_train), (spec.test_split, n_test)):
            with (folder / f"{split}.jsonl").open("w") as out:
                for i in range(n):
                    record = {name: sentences[(7 * i + k) % len(sentences)] for k, name in enumerate(spec.fields)}
                    out.write(json.dumps({**record, "label": i % len(spec.definition.labels)}) + "\n")


def test_bad_records_are_named_with_file_and_line(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text('{"sentence": "fine", "label": 1}\n{"sentence": "no label"}\n')
    with pytest.raises(ValueError, match=r"train.jsonl, line 2: missing field\(s\) \['label'\]"):
        read_records(path, ("sentence",), 2)
    path.write_text('{"sentence": "fine", "label": 7}\n')
    with pytest.raises(ValueError, match="line 1: label 7 is not one of 0..1"):
        read_records(path, ("sentence",), 2)


def test_validation_is_a_seeded_share_of_train_and_test_the_official_split(tmp_path):
    _write_datasets(tmp_path, n_train=40)
    splits = load_text_task("entailment", tmp_path, seed=0)
    assert (len(splits["train"]), len(splits["val"]), len(splits["test"])) == (36, 4, 6)
    assert not set(splits["train"].texts) & set(splits["val"].texts)
    assert " does it say that " in splits["val"].texts[0]
    assert load_text_task("entailment", tmp_path, seed=0) == splits
    assert load_text_task("entailment", tmp_path, seed=1)["val"] != splits["val"]


def test_a_local_t5_folder_is_loaded_fine_tuned_and_scored(tmp_path):
    _write_datasets(tmp_path / "data")
    tokenizer = TextTokenizer.train(list(reference_sentences()[:300]), vocab_size=300)
    folder = tmp_path / "t5-small"
    create_t5("mini-T5-small", tokenizer.vocab_size, seed=0).save_pretrained(folder)
    (folder / "tokenizer.json").write_text(tokenizer.to_json())
    preset = replace(PAPER_TEXT, tasks=("topic", "sentiment"),
                     finetune=OptimConfig(steps=3, batch_size=8, lr=1e-3, warmup_steps=1))
    bench = prepare(preset, "small", data_root=tmp_path / "data", weights={"small": folder}, cache_dir=tmp_path / "cache",
                    device="cpu")
    assert set(bench.finetuned) == {"topic", "sentiment"} and bench.num_classes("topic") == 4
    scores = bench.evaluators(["test"])["test"].evaluate(bench.finetuned["sentiment"])
    assert set(scores) == {"topic", "sentiment"} and all(0 <= v <= 1 for v in scores.values())
    assert bench.folder.parent.name.count("-") == 1  # the foundation key, then the weights' digest
