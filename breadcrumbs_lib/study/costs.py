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

For the ``paper`` preset, :func:`estimate_for_architecture` turns the measured table into an
estimate without the paper's weights or data: merging costs a fixed amount per weight entry (the
masks are O(n)), so its seconds scale with the number of entries; a Fisher costs one forward and
backward pass per example, timed here on the paper's architecture (randomly initialised: the cost
of a pass does not depend on the weights' values).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import pandas as pd
import torch
from torch import nn

from ..core.merging import merge, method_spec
from ..modeling.data import ImageSplit
from ..modeling.fisher import FisherConfig, diagonal_fisher
from ..modeling.models import ImageClassifier, create_clip
from ..worlds.workbench import Workbench
from .subset_merging import SubsetMerger
from .sweep_units import model_input

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
        start = time.perf_counter()
        merge(bench.base, [bench.finetuned[task] for task in tasks], method, **hyperparameters, **inputs)
        build = time.perf_counter() - start
        add = build if spec.additive_form(hyperparameters) is None else _add_last(bench, method, hyperparameters)
        fishers = "fishers" in spec.inputs
        rows.append({"method": method, "tasks": len(tasks),
                     "examples per model": bench.preset.fisher.examples if fishers else 0,
                     "data seconds per model": sum(bench.fisher_seconds[t] for t in tasks) / len(tasks) if fishers else 0.0,
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


def _add_last(bench: Workbench, method: str, hyperparameters: Mapping[str, Any]) -> float:
    """Seconds to extend the merge of all tasks but the last by the last one (additive methods)."""
    merger = SubsetMerger(bench.base, bench.finetuned)
    tasks = tuple(bench.tasks)
    merger.merged(tasks[:-1], method, hyperparameters)
    start = time.perf_counter()
    merger.merged(tasks, method, hyperparameters)
    return time.perf_counter() - start


def estimate_for_architecture(measured: pd.DataFrame, *, measured_entries: int, model_name: str, tasks: int,
                              fisher: FisherConfig, seed: int = 0, timed_examples: int = 4,
                              device: torch.device | str = "cpu") -> tuple[pd.DataFrame, dict[str, float]]:
    """``measured`` (from :func:`measure_costs`) carried over to ``tasks`` models of the open_clip
    architecture ``model_name`` (e.g. ``"ViT-B-32"``), whose image encoder has its own count of
    weight entries against the ``measured_entries`` of the measured one.

    Merge seconds scale with the entry count (and, to build, with the number of tasks); a model's
    data seconds are ``fisher.examples`` times one example's forward and backward pass through
    the architecture, timed on ``device`` over ``timed_examples`` examples after one untimed
    warm-up. Returns the table (columns :data:`PARTS`) and the two factors used.
    """
    if measured_entries < 1 or tasks < 1 or timed_examples < 1:
        raise ValueError(f"need positive counts, got measured_entries={measured_entries}, tasks={tasks}, "
                         f"timed_examples={timed_examples}")
    encoder = create_clip(model_name, seed=seed, device=device).visual
    entries = sum(value.numel() for value in encoder.state_dict().values() if value.is_floating_point())
    per_example = fisher_seconds_per_example(encoder, examples=timed_examples, seed=seed, device=device)
    ratio = entries / measured_entries
    uses_data = measured["examples per model"] > 0
    table = measured.assign(**{
        "tasks": tasks,
        "examples per model": uses_data * fisher.examples,
        "data seconds per model": uses_data * fisher.examples * per_example,
        "merge seconds to build": measured["merge seconds to build"] * ratio * tasks / measured["tasks"],
        "merge seconds to add one": measured["merge seconds to add one"] * ratio})
    return table[PARTS], {"entries": float(entries), "entry ratio": ratio, "Fisher seconds per example": per_example}


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
