"""The text world: its corpus and tasks (determinism, disjoint splits), span corruption, the T5's
tied embedding in task vectors and merges, rank-classification scoring, and a smoke run of the
whole pipeline (pretrain, fine-tune two tasks, merge, evaluate) with its cache."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from breadcrumbs_lib import merge
from breadcrumbs_lib.core.task_vectors import TaskVector
from breadcrumbs_lib.modeling.text_evaluation import TextEvaluator
from breadcrumbs_lib.modeling.text_models import (SENTINELS, TextTokenizer, create_t5, load_t5_weights, t5_weights,
                                                  tied_names)
from breadcrumbs_lib.modeling.text_training import answer_target, span_corrupt
from breadcrumbs_lib.worlds import presets
from breadcrumbs_lib.worlds.prepare import prepare
from breadcrumbs_lib.worlds.presets import TEXT_SMOKE
from breadcrumbs_lib.worlds.text.build import pretraining_corpus
from breadcrumbs_lib.worlds.text.corpus import AREAS, area_sentences, clean_sentences, reference_sentences
from breadcrumbs_lib.worlds.text.tasks import SPLITS, TEXT_TASKS, sentence_pools, text_examples
from breadcrumbs_lib.worlds.workbench import foundation_key


def test_clean_sentences_keeps_prose_and_drops_code():
    text = ("Return the number of items in the container, counted once.\n\n"
            "Use os.path.join(a, b) to build the path here.  Short one.\n\n"
            ">>> print(x) is an example line, not a sentence of prose.")
    assert clean_sentences(text) == ["return the number of items in the container, counted once."]


def test_areas_are_nonempty_and_share_no_sentence():
    sentences = area_sentences()
    assert set(sentences) == set(AREAS)
    assert all(len(found) >= 200 for found in sentences.values())
    seen: set[str] = set()
    for found in sentences.values():
        assert not seen & set(found)
        seen |= set(found)
    assert len(reference_sentences()) > 500


def test_pools_are_disjoint_deterministic_and_seeded():
    pools = sentence_pools(0)
    for area in AREAS:
        parts = [set(pools[split][area]) for split in SPLITS]
        assert sum(map(len, parts)) == len(area_sentences()[area])
        assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert sentence_pools.__wrapped__(0) == pools
    assert sentence_pools(1)["test"]["mail"] != pools["test"]["mail"]


@pytest.mark.parametrize("task", sorted(TEXT_TASKS))
def test_examples_are_balanced_deterministic_and_read_only_their_pool(task):
    examples = text_examples(task, "val", 5, seed=0)
    classes = len(TEXT_TASKS[task].labels)
    assert len(examples) == 5 * classes
    assert sorted(examples.labels) == sorted(list(range(classes)) * 5)
    assert text_examples(task, "val", 5, seed=0) == examples
    assert text_examples(task, "val", 5, seed=1) != examples
    others = {s for split in ("train", "test") for area in AREAS for s in sentence_pools(0)[split][area]}
    own = {s for area in AREAS for s in sentence_pools(0)["val"][area]}
    for text in examples.texts:  # every example starts with a sentence of its own split's pool
        assert any(text.startswith(s) for s in own)
        assert not any(text.startswith(s) for s in others if s not in own)


def test_topic_labels_name_the_area_of_both_sentences():
    examples = text_examples("topic", "test", 4, seed=0)
    pools = sentence_pools(0)["test"]
    for text, label in zip(examples.texts, examples.labels):
        area = pools[TEXT_TASKS["topic"].labels[label]]
        assert any(text.startswith(s + " ") and text[len(s) + 1:] in area and text[len(s) + 1:] != s for s in area)
    assert len(set(examples.texts)) == len(examples.texts)  # distinct pairs


def _is_span(part: list[str], words: list[str]) -> bool:
    return any(words[i:i + len(part)] == part for i in range(len(words) - len(part) + 1))


def test_entailment_labels_follow_from_premise_and_hypothesis():
    """yes: a span of the premise; no: that span with "not" put after one of its words but the
    last; maybe: a span of another sentence of the premise's area."""
    examples = text_examples("entailment", "test", 30, seed=0)
    pools = sentence_pools(0)["test"]
    for text, label in zip(examples.texts, examples.labels):
        premise, hypothesis = text.split(" does it say that ")
        words, span = premise.rstrip(".").split(), hypothesis.split()
        area = next(sentences for sentences in pools.values() if premise in sentences)
        if label == 0:
            assert _is_span(span, words)
        elif label == 1:
            assert any(span[i] == "not" and _is_span(span[:i] + span[i + 1:], words) for i in range(1, len(span) - 1))
        else:
            assert any(_is_span(span, other.rstrip(".").split()) for other in area if other != premise)


def test_unknown_task_and_too_many_examples_are_named():
    with pytest.raises(ValueError, match="unknown text task 'poetry'"):
        text_examples("poetry", "train", 1, seed=0)
    with pytest.raises(ValueError, match="pairs, fewer than the 100000 per class"):
        text_examples("topic", "test", 100_000, seed=0)


def test_pretraining_corpus_reads_no_validation_or_test_sentence():
    recipe = replace(TEXT_SMOKE.pretraining, captions_per_class=20, answer_share=0.5)
    texts, questions = pretraining_corpus(recipe, seed=0)
    assert questions and len(questions) < 20 * 13
    held_out = [s for split in ("val", "test") for area in AREAS for s in sentence_pools(0)[split][area]]
    corpus = "\n".join(texts + [prompt for prompt, _ in questions])
    assert not [sentence for sentence in held_out if sentence in corpus]


@given(n=st.integers(2, 60), density=st.floats(0.05, 0.5), seed=st.integers(0, 10_000))
def test_span_corruption_hides_spans_that_the_target_gives_back(n, density, seed):
    ids = list(range(100, 100 + n))
    sentinels = list(range(10, 10 + len(SENTINELS)))
    inputs, targets = span_corrupt(ids, random.Random(seed), sentinels, eos_id=1, noise_density=density)
    assert inputs[-1] == 1 and targets[-1] == 1
    # filling each sentinel of the input with the tokens after it in the target restores the text
    spans: dict[int, list[int]] = {}
    current = None
    for token in targets[:-1]:
        if token in sentinels:
            current = token
            spans[current] = []
        else:
            spans[current].append(token)
    restored = [t for token in inputs[:-1] for t in (spans[token] if token in sentinels else [token])]
    assert restored == ids
    hidden = sum(len(span) for span in spans.values())
    assert 1 <= hidden <= n - 1 and hidden == min(max(1, round(density * n)), n - 1)


@pytest.fixture(scope="module")
def tokenizer():
    return TextTokenizer.train(list(reference_sentences()[:400]), vocab_size=300)


def test_tokenizer_is_deterministic_and_keeps_specials_whole(tokenizer):
    again = TextTokenizer.train(list(reference_sentences()[:400]), vocab_size=300)
    assert again.to_json() == tokenizer.to_json()
    assert (tokenizer.pad_id, tokenizer.eos_id) == (0, 1)
    prompt = tokenizer.ids(f"the value is {SENTINELS[0]} .")
    assert tokenizer.token_id(SENTINELS[0]) in prompt
    assert answer_target(tokenizer, "files")[0] == tokenizer.token_id(SENTINELS[0])


def test_t5_weights_count_the_tied_embedding_once(tokenizer):
    model = create_t5("mini-T5-small", tokenizer.vocab_size, seed=0)
    weights = t5_weights(model)
    aliases = tied_names(model)
    assert {"encoder.embed_tokens.weight", "decoder.embed_tokens.weight"} <= set(aliases)
    assert "shared.weight" in weights and not set(aliases) & set(weights)
    n_parameters = sum(p.numel() for p in model.parameters())  # parameters() yields a shared tensor once
    assert sum(t.numel() for t in weights.values()) == n_parameters


def test_a_task_vector_and_a_merge_of_t5s_treat_the_shared_embedding_once(tokenizer):
    model = create_t5("mini-T5-small", tokenizer.vocab_size, seed=0)
    base = t5_weights(model)
    tuned_models = []
    for seed in (1, 2):
        tuned = create_t5("mini-T5-small", tokenizer.vocab_size, seed=0)
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for parameter in tuned.parameters():  # a tied tensor is one parameter: moved once
                parameter.add_(0.01 * torch.randn(parameter.shape, generator=generator))
        tuned_models.append(tuned)
    tuned = [t5_weights(m) for m in tuned_models]
    by_hand = sum(float(((p1 - p0).detach() ** 2).sum()) for p1, p0 in zip(tuned_models[0].parameters(), model.parameters()))
    assert TaskVector.from_state_dicts(base, tuned[0]).norm() ** 2 == pytest.approx(by_hand, rel=1e-5)
    merged = merge(base, tuned, "breadcrumbs", alpha=0.5, beta=0.85, gamma=0.01)
    load_t5_weights(model, merged)
    assert torch.equal(model.encoder.embed_tokens.weight, merged["shared.weight"])
    assert model.lm_head.weight.data_ptr() == model.shared.weight.data_ptr()
    with pytest.raises(ValueError, match="missing"):
        load_t5_weights(model, {k: v for k, v in merged.items() if k != "shared.weight"})


def test_rank_classification_scores_every_answer(tokenizer):
    model = create_t5("mini-T5-small", tokenizer.vocab_size, seed=0)
    prompts = [TEXT_TASKS["paraphrase"].render(text) for text in ("a b c", "d e f", "g h i")]
    evaluator = TextEvaluator(model, tokenizer, {"paraphrase": TEXT_TASKS["paraphrase"].labels},
                              {"paraphrase": (prompts, [0, 1, 0])})
    scores = evaluator.scores("paraphrase")
    assert scores.shape == (3, 2) and torch.isfinite(scores).all() and (scores < 0).all()
    hits = evaluator.correct("paraphrase")
    assert evaluator.accuracy("paraphrase") == pytest.approx(float(hits.float().mean()))


def test_smoke_pipeline_pretrains_finetunes_merges_evaluates_and_caches(tmp_path):
    tasks = ["topic", "sentiment"]
    bench = prepare(TEXT_SMOKE, "small", tasks=tasks, cache_dir=tmp_path, device="cpu")
    assert {"pretraining", "fine-tuning topic", "fine-tuning sentiment"} <= set(bench.seconds)
    assert set(bench.finetuned) == set(tasks)
    assert not torch.equal(bench.finetuned["topic"]["shared.weight"], bench.base["shared.weight"])
    test = bench.evaluators(["test"])["test"]
    merged = merge(bench.base, [bench.finetuned[t] for t in tasks], "breadcrumbs", alpha=0.5, beta=0.85, gamma=0.01)
    for weights in (bench.base, bench.finetuned["topic"], merged):
        scores = test.evaluate(weights)
        assert set(scores) == set(tasks) and all(0 <= v <= 1 for v in scores.values())
    assert bench.num_classes("topic") == 5
    fishers = [bench.fisher(t) for t in tasks]
    assert all(set(f) == set(bench.base) and all((v >= 0).all() for v in f.values()) for f in fishers)
    assert fishers[0]["shared.weight"].sum() > 0  # the embedding that the encoder, the decoder and the output share
    assert fishers[0]["encoder.block.0.layer.0.SelfAttention.q.weight"].sum() > 0
    fisher_merged = merge(bench.base, [bench.finetuned[t] for t in tasks], "fisher", fishers=fishers)
    assert all(0 <= v <= 1 for v in test.evaluate(fisher_merged).values())
    again = prepare(TEXT_SMOKE, "small", tasks=tasks, cache_dir=tmp_path, device="cpu")
    assert "pretraining" not in again.seconds and not any(k.startswith("fine-tuning") for k in again.seconds)
    assert all(torch.equal(again.base[k], bench.base[k]) for k in bench.base)
    assert torch.equal(again.finetuned["topic"]["shared.weight"], bench.finetuned["topic"]["shared.weight"])
    assert torch.equal(again.fisher("topic")["shared.weight"], fishers[0]["shared.weight"])  # from the cache
    assert "Fisher of topic" not in again.seconds and again.fisher_seconds["topic"] == pytest.approx(
        bench.fisher_seconds["topic"], abs=1e-3)


def test_the_foundation_key_covers_the_corpus(monkeypatch):
    key = foundation_key(TEXT_SMOKE, "mini-T5-small", 0)
    monkeypatch.setattr(presets, "corpus_digest", lambda: "another-python")
    assert foundation_key(TEXT_SMOKE, "mini-T5-small", 0) != key
