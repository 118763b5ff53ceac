"""End-to-end smoke run of the mini pipeline on a tiny configuration, and its cache."""

from __future__ import annotations

import math

import pytest
import torch
from tiny_preset import TINY

from breadcrumbs_lib import merge
from breadcrumbs_lib.core.metrics import normalized_accuracy
from breadcrumbs_lib.modeling.evaluation import Evaluator
from breadcrumbs_lib.worlds.prepare import prepare
from breadcrumbs_lib.modeling.training import OptimConfig, cosine_with_warmup

TASKS = ["signs", "letters"]


@pytest.fixture(scope="module")
def tiny_bench(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    return cache, prepare(TINY, "B-32", tasks=TASKS, cache_dir=cache, device="cpu")


def test_prepare_pretrains_finetunes_and_evaluates(tiny_bench):
    _, bench = tiny_bench
    assert set(bench.finetuned) == set(TASKS)
    assert len(bench.curves["pretraining"]) == 6 and len(bench.curves["signs"]) == 6
    assert {"pretraining", "fine-tuning signs", "fine-tuning letters"} <= set(bench.seconds)
    for task in TASKS:
        assert not torch.equal(bench.finetuned[task]["conv1.weight"], bench.base["conv1.weight"])
    evaluator = Evaluator(bench.classifier(), bench.heads, {task: bench.splits[task]["test"] for task in TASKS})
    zero_shot = evaluator.evaluate(bench.base)
    finetuned = {task: evaluator.evaluate(bench.finetuned[task], [task])[task] for task in TASKS}
    merged = merge(bench.base, [bench.finetuned[task] for task in TASKS], "breadcrumbs", alpha=0.5, beta=0.5, gamma=0.05)
    accuracy = evaluator.evaluate(merged)
    for table in (zero_shot, finetuned, accuracy):
        assert set(table) == set(TASKS) and all(0.0 <= value <= 1.0 for value in table.values())
    for task in TASKS:
        ratio = normalized_accuracy(accuracy[task], finetuned[task])
        assert ratio == pytest.approx(accuracy[task] / finetuned[task]) if finetuned[task] > 0 else math.isnan(ratio)


def test_a_second_run_reuses_the_cache_and_recompute_rebuilds(tiny_bench):
    cache, bench = tiny_bench
    again = prepare(TINY, "B-32", tasks=TASKS, cache_dir=cache, device="cpu")
    assert again.seconds == {}
    for task in TASKS:
        for key, value in bench.finetuned[task].items():
            assert torch.equal(again.finetuned[task][key], value)
    rebuilt = prepare(TINY, "B-32", tasks=["signs"], cache_dir=cache, device="cpu", recompute=True)
    assert {"pretraining", "fine-tuning signs"} <= set(rebuilt.seconds)
    for key, value in bench.finetuned["signs"].items():  # same seed, same numbers
        assert torch.equal(rebuilt.finetuned["signs"][key], value)


def test_fishers_are_cached_beside_the_models_and_dropped_when_a_model_is_rebuilt(tmp_path):
    bench = prepare(TINY, "B-32", tasks=["signs"], cache_dir=tmp_path, device="cpu")
    fisher = bench.fisher("signs")
    assert fisher.keys() == bench.base.keys() and all((value >= 0).all() for value in fisher.values())
    assert "Fisher of signs" in bench.seconds
    path = bench.fisher_folder() / "signs.safetensors"
    assert path.exists() and bench.fisher_folder().parent == bench.folder
    again = prepare(TINY, "B-32", tasks=["signs"], cache_dir=tmp_path, device="cpu")
    assert all(torch.equal(again.fisher("signs")[key], value) for key, value in fisher.items())
    assert "Fisher of signs" not in again.seconds  # loaded, not estimated
    assert again.fisher_seconds["signs"] == pytest.approx(bench.fisher_seconds["signs"], abs=1e-3)  # from its metadata
    prepare(TINY, "B-32", tasks=["signs"], cache_dir=tmp_path, device="cpu", recompute=True)
    assert not path.exists()  # a rebuilt model's Fisher is estimated again when asked for


def test_an_interrupted_run_leaves_only_whole_checkpoints(tmp_path, monkeypatch):
    from breadcrumbs_lib.worlds import workbench

    calls = []

    def finetune_then_crash(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_finetune(*args, **kwargs)

    real_finetune = workbench.finetune
    monkeypatch.setattr(workbench, "finetune", finetune_then_crash)
    with pytest.raises(KeyboardInterrupt):
        prepare(TINY, "B-32", tasks=TASKS, cache_dir=tmp_path, device="cpu")
    written = sorted(path.name for path in tmp_path.rglob("*") if path.is_file() and "datasets" not in path.parts)
    assert written == ["curves.json", "curves.json", "foundation.safetensors", "signs.safetensors"]
    monkeypatch.setattr(workbench, "finetune", real_finetune)
    resumed = prepare(TINY, "B-32", tasks=TASKS, cache_dir=tmp_path, device="cpu")
    assert set(resumed.seconds) == {"fine-tuning letters"}


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="unknown model size 'H-14'"):
        prepare(TINY, "H-14")
    with pytest.raises(ValueError, match="unknown task\\(s\\) \\['cifar'\\]"):
        prepare(TINY, "B-32", tasks=["cifar"])
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        prepare("huge")


def test_cosine_schedule_warms_up_then_decays():
    config = OptimConfig(steps=100, batch_size=1, lr=1.0, warmup_steps=10)
    values = [cosine_with_warmup(step, config) for step in range(100)]
    assert values[0] == pytest.approx(0.1) and values[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(values[10:], values[11:]))
    assert values[-1] < 0.01


def test_optimizer_is_named_and_built():
    weight = torch.nn.Parameter(torch.zeros(3))
    assert isinstance(OptimConfig(steps=1, batch_size=1, lr=0.1).build([weight]), torch.optim.AdamW)
    sgd = OptimConfig(steps=1, batch_size=1, lr=0.1, optimizer="sgd", momentum=0.5, weight_decay=0.0).build([weight])
    assert isinstance(sgd, torch.optim.SGD) and sgd.param_groups[0]["momentum"] == 0.5
    with pytest.raises(ValueError, match="unknown optimizer 'adam'"):
        OptimConfig(steps=1, batch_size=1, lr=0.1, optimizer="adam")
    with pytest.raises(ValueError, match="invalid optimisation settings"):
        OptimConfig(steps=1, batch_size=1, lr=0.1, optimizer="sgd", momentum=1.0)


def test_the_optimizer_is_part_of_the_cache_key():
    from dataclasses import replace

    from breadcrumbs_lib.worlds.workbench import finetuning_key

    with_sgd = replace(TINY, finetune=replace(TINY.finetune, optimizer="sgd"))
    assert finetuning_key(with_sgd) != finetuning_key(TINY)


@pytest.mark.parametrize("clip", [None, 0.5])
def test_gradient_clipping_bounds_each_step(clip):
    """One SGD step of learning rate 1 on a loss whose gradient has norm 40: the step is the
    gradient, rescaled to norm ``clip`` when clipping is on."""
    from breadcrumbs_lib.modeling.training import optimise

    weight = torch.nn.Parameter(torch.zeros(4))
    config = OptimConfig(steps=1, batch_size=1, lr=1.0, optimizer="sgd", momentum=0.0, weight_decay=0.0, grad_clip=clip)
    optimise([weight], config, lambda: -(weight * torch.full((4,), 20.0)).sum(), "test")
    assert float(weight.detach().norm()) == pytest.approx(40.0 if clip is None else clip)


def test_a_clipped_recipe_has_its_own_cache_key():
    from dataclasses import replace

    from breadcrumbs_lib.worlds.presets import PAPER
    from breadcrumbs_lib.worlds.workbench import finetuning_key

    assert PAPER.finetune.grad_clip == 1.0  # the task_vectors recipe
    clipped = replace(TINY, finetune=replace(TINY.finetune, grad_clip=1.0))
    assert finetuning_key(clipped) != finetuning_key(TINY)
    with pytest.raises(ValueError, match="invalid optimisation settings"):
        OptimConfig(steps=1, batch_size=1, lr=0.1, grad_clip=0.0)


def test_device_preference_is_cuda_then_mps_then_cpu(monkeypatch):
    from breadcrumbs_lib.modeling.devices import pick_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert pick_device().type == "cpu"
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert pick_device().type == "mps"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device().type == "cuda"
