"""What a merge method costs: the seconds and the task data it needs to build one merged model of
``T`` tasks, and to add one more task to it.

* Weights-only methods (task arithmetic, Breadcrumbs, averaging, TIES, DARE) read no task data:
  their cost is the merge itself, a few passes over the weights.
* Fisher merging first estimates one diagonal Fisher per fine-tuned model, with one forward and
  one backward pass per example (:class:`..modeling.fisher.FisherConfig` ``examples`` of them),
  then merges.

Adding a task, with this library's code paths: a method with an additive form
(:attr:`..core.methods.spec.MergeMethod.additive`: ``theta + alpha * sum_t f(tau_t)``) computes
``f`` of the new task vector and adds it to the running sum, as :class:`.subset_merging.SubsetMerger`
does; any other method merges all models again (TIES' sign election and Fisher's per-entry weights
depend on every model); Fisher merging also estimates the new model's Fisher. Both are measured on
the workbench's own models, as the last task added onto the others (``T - 1`` to ``T``: the same
work as a ninth task onto eight).

For the ``paper`` preset, :func:`estimate_for_architecture` estimates the same table without the
paper's weights or data, on the paper's architecture itself (randomly initialised: how long a
merge or a forward and backward pass takes does not depend on the weights' values): each method
merges a few synthetic fine-tuned copies (the base plus seeded noise), timed and scaled to the
number of tasks (a merge visits each model once, so its seconds grow linearly with their number);
a Fisher costs its examples times one example's forward and backward pass, timed there too.

Every timing follows one untimed warm-up of the same code path (kernels compiled, memory touched).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import pandas as pd
import torch
from torch import nn

from ..core.merging import merge, method_spec
from ..core.state_dicts import StateDict
from ..modeling.data import ImageSplit
from ..modeling.fisher import FisherConfig, diagonal_fisher
from ..modeling.models import ImageClassifier, create_clip
from ..worlds.workbench import Workbench
from .subset_merging import SubsetMerger
from .sweep_units import model_input, model_input_provider

#: What :func:`measure_costs` and :func:`estimate_for_architecture` return, per method: the task
#: data each model needs (examples, one forward and backward pass each), the seconds of that per
#: model, and the seconds of the merge itself, to build and to add one task.
PARTS = ["method", "tasks", "examples per model", "data seconds per model", "merge seconds to build",
         "merge seconds to add one"]


def measure_costs(bench: Workbench, settings: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """Per method (``settings``: method -> its chosen hyperparameters), the measured cost on
    ``bench`` of building the merge of all its tasks and of adding its last task onto the others.

    Columns: :data:`PARTS`. A Fisher's seconds are those the workbench recorded when it estimated
    it (also for Fishers read back from its cache); their mean over the tasks is the per-model figure.
    """
    tasks = bench.tasks
    if len(tasks) < 2:
        raise ValueError(f"costs need at least two tasks, this workbench has {tasks}")
    rows = []
    for method, hyperparameters in settings.items():
        spec = method_spec(method)
        inputs = {name: [model_input(bench, name, task) for task in tasks] for name in spec.inputs}
        build = _timed_merge(bench.base, [bench.finetuned[task] for task in tasks], method, hyperparameters, inputs)
        add = build if spec.additive_form(hyperparameters) is None else _timed_addition(
            bench.base, {task: bench.finetuned[task] for task in tasks}, method, hyperparameters)
        providers = [model_input_provider(name) for name in spec.inputs]
        rows.append({"method": method, "tasks": len(tasks),
                     "examples per model": sum(provider.examples(bench) for provider in providers),
                     "data seconds per model": sum(provider.seconds(bench, task) for provider in providers
                                                   for task in tasks) / len(tasks),
                     "merge seconds to build": build, "merge seconds to add one": add})
    return pd.DataFrame(rows, columns=PARTS)


def totals(parts: pd.DataFrame) -> pd.DataFrame:
    """The cost table to read: per method, the examples and seconds to build the merge of all
    ``tasks`` and to add one more (``T`` Fishers plus the merge; one Fisher plus the addition)."""
    examples, seconds = parts["examples per model"], parts["data seconds per model"]
    return pd.DataFrame({
        "method": parts["method"], "tasks": parts["tasks"],
        "examples to build": examples * parts["tasks"],
        "seconds to build": seconds * parts["tasks"] + parts["merge seconds to build"],
        "examples to add one": examples,
        "seconds to add one": seconds + parts["merge seconds to add one"]})


def _timed_merge(base: StateDict, finetuned: list[StateDict], method: str, hyperparameters: Mapping[str, Any],
                 inputs: Mapping[str, list[Any]]) -> float:
    """Seconds of one ``merge`` call, after an untimed warm-up on the first model alone."""
    merge(base, finetuned[:1], method, **hyperparameters, **{name: items[:1] for name, items in inputs.items()})
    start = time.perf_counter()
    merge(base, finetuned, method, **hyperparameters, **inputs)
    return time.perf_counter() - start


def _timed_addition(base: StateDict, finetuned: Mapping[str, StateDict], method: str,
                    hyperparameters: Mapping[str, Any]) -> float:
    """Seconds to extend the merge of all models but the last by the last one (additive
    methods), after the same extension once untimed on a fresh merger."""
    names = tuple(finetuned)
    for _ in range(2):  # the first pass is the warm-up; the second is timed
        merger = SubsetMerger(base, finetuned)
        merger.merged(names[:-1], method, hyperparameters)
        start = time.perf_counter()
        merger.merged(names, method, hyperparameters)
    return time.perf_counter() - start


def estimate_for_architecture(settings: Mapping[str, Mapping[str, Any]], *, model_name: str, tasks: int,
                              fisher: FisherConfig, seed: int = 0, timed_models: int = 2, timed_examples: int = 4,
                              device: torch.device | str = "cpu") -> tuple[pd.DataFrame, dict[str, float]]:
    """The table of :func:`measure_costs` for ``tasks`` models of the open_clip architecture
    ``model_name`` (e.g. ``"ViT-B-32"``), each method at its setting in ``settings``.

    Each method merges ``timed_models`` synthetic fine-tuned copies of a randomly initialised
    image encoder (``theta + 0.01 * std(theta) * noise`` per tensor, seeded; Fisher merging gets
    random positive Fishers), timed after a warm-up; merge seconds to build are that time times
    ``tasks / timed_models``; to add one, the timed extension of the merge of
    ``timed_models - 1`` copies by one more (additive methods), or else the whole merge again. A
    model's data seconds are ``fisher.examples`` times one example's forward and backward pass,
    timed over ``timed_examples`` examples. Returns the table (columns :data:`PARTS`) and what it
    rests on: the encoder's weight entries and the seconds of one Fisher term.
    """
    if tasks < 1 or timed_models < 2 or timed_examples < 1:
        raise ValueError(f"need tasks >= 1, timed_models >= 2 and timed_examples >= 1, got tasks={tasks}, "
                         f"timed_models={timed_models}, timed_examples={timed_examples}")
    encoder = create_clip(model_name, seed=seed, device=device).visual
    base = {key: value.detach().cpu() for key, value in encoder.state_dict().items()}
    generator = torch.Generator().manual_seed(seed)
    copies = {f"model {index}": _synthetic_finetuned(base, generator) for index in range(timed_models)}
    rows = []
    for method, hyperparameters in settings.items():
        spec = method_spec(method)
        inputs = {name: [_synthetic_fisher(base, generator) for _ in copies] for name in spec.inputs}
        timed = _timed_merge(base, list(copies.values()), method, hyperparameters, inputs)
        build = timed * tasks / timed_models
        add = build if spec.additive_form(hyperparameters) is None else _timed_addition(base, copies, method, hyperparameters)
        rows.append({"method": method, "tasks": tasks, "examples per model": fisher.examples if inputs else 0,
                     "merge seconds to build": build, "merge seconds to add one": add})
    per_example = fisher_seconds_per_example(encoder, examples=timed_examples, seed=seed, device=device)
    table = pd.DataFrame(rows).assign(**{"data seconds per model": lambda t: t["examples per model"] * per_example})
    entries = sum(value.numel() for value in base.values() if value.is_floating_point())
    return table[PARTS], {"entries": float(entries), "Fisher seconds per example": per_example}


def _synthetic_finetuned(base: StateDict, generator: torch.Generator) -> StateDict:
    """``base`` moved by seeded Gaussian noise of 1% of each tensor's spread (floating point only)."""
    def moved(value: torch.Tensor) -> torch.Tensor:
        spread = float(value.float().std()) if value.numel() > 1 else 1.0
        return value + 0.01 * (spread or 1.0) * torch.randn(value.shape, generator=generator).to(value.dtype)
    return {key: moved(value) if value.is_floating_point() else value.clone() for key, value in base.items()}


def _synthetic_fisher(base: StateDict, generator: torch.Generator) -> StateDict:
    """Random positive Fishers shaped like ``base``'s floating-point tensors."""
    return {key: torch.rand(value.shape, generator=generator) + 1e-3
            for key, value in base.items() if value.is_floating_point()}


def fisher_seconds_per_example(encoder: nn.Module, *, examples: int, seed: int = 0, classes: int = 10,
                               device: torch.device | str = "cpu") -> float:
    """Seconds of one example's Fisher term (a forward and a backward pass, float32) through
    ``encoder`` (an open_clip image tower, whose ``image_size`` gives the input), with a random
    ``classes``-way head, timed over ``examples`` random images after one untimed warm-up."""
    size = encoder.image_size
    height, width = (size, size) if isinstance(size, int) else size
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        dim = encoder(torch.zeros(1, 3, height, width, device=device)).shape[-1]
    head = torch.nn.functional.normalize(torch.randn(classes, dim, generator=generator), dim=-1)
    classifier = ImageClassifier(encoder, head).to(device)

    def random_images(count: int) -> ImageSplit:
        return ImageSplit(torch.randint(256, (count, 3, height, width), generator=generator, dtype=torch.uint8),
                          torch.randint(classes, (count,), generator=generator))

    diagonal_fisher(classifier, random_images(1), FisherConfig(examples=1), of=encoder, seed=seed, device=device,
                    description="warm-up")
    timed = random_images(examples)
    start = time.perf_counter()
    diagonal_fisher(classifier, timed, FisherConfig(examples=examples), of=encoder, seed=seed, device=device,
                    description="timing one Fisher term")
    return (time.perf_counter() - start) / examples
