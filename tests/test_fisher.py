"""Fisher merging: the merge against hand-computed examples, the Fisher estimate against autograd's
per-example gradients and the closed form of a linear softmax model, bad input, and the cache."""

from __future__ import annotations

import pytest
import torch
from helpers import finetune_of, small_model
from torch import nn
from torch.func import functional_call, grad, vmap

from breadcrumbs_lib import merge
from breadcrumbs_lib.modeling.data import ImageSplit, normalize
from breadcrumbs_lib.modeling.fisher import FisherConfig, diagonal_fisher
from breadcrumbs_lib.study.subset_merging import SubsetMerger

BASE = {"w": torch.tensor([0.0, 0.0, 1.0]), "steps": torch.tensor([7])}
MODELS = [{"w": torch.tensor([1.0, 2.0, 1.0]), "steps": torch.tensor([7])},
          {"w": torch.tensor([3.0, 0.0, 5.0]), "steps": torch.tensor([7])}]
FISHERS = [{"w": torch.tensor([1.0, 0.0, 3.0])}, {"w": torch.tensor([1.0, 2.0, 1.0])}]


def test_fisher_merge_is_the_fisher_weighted_mean_of_the_models():
    merged = merge(BASE, MODELS, "fisher", fishers=FISHERS, floor=1e-6)
    # entry 0: equal Fishers -> (1 + 3) / 2; entry 1: only model 2 sees it -> ~0 (its value);
    # entry 2: (3 * 1 + 1 * 5) / 4
    assert torch.allclose(merged["w"], torch.tensor([2.0, 2e-6 / (2 + 1e-6), 2.0]), atol=1e-7)
    assert torch.equal(merged["steps"], BASE["steps"])  # integer buffers are the base's


def test_alpha_scales_the_update_and_scaling_weights_the_models():
    half = merge(BASE, MODELS, "fisher", fishers=FISHERS, alpha=0.5)
    assert torch.allclose(half["w"], torch.tensor([1.0, 0.0, 1.5]), atol=1e-6)  # theta + 0.5 * (mean - theta)
    weighted = merge(BASE, MODELS, "fisher", fishers=FISHERS, scaling=[3.0, 1.0])
    assert torch.allclose(weighted["w"], torch.tensor([1.5, 6e-6 / (2 + 3e-6), 1.4]), atol=1e-6)
    # entry 0: (3*1*1 + 1*1*3) / (3 + 1); entry 1: (3*1e-6*2 + 1*2*0) / (3e-6 + 2); entry 2: (3*3*1 + 1*1*5) / (9 + 1)


def test_with_equal_fishers_it_is_the_weight_average(base_and_finetuned):
    base, finetuned = base_and_finetuned
    ones = [{k: torch.ones(v.shape) for k, v in base.items() if v.is_floating_point()} for _ in finetuned]
    fisher = merge(base, finetuned, "fisher", fishers=ones)
    average = merge(base, finetuned, "average")
    for key in average:
        assert torch.allclose(fisher[key].float(), average[key].float(), atol=1e-6), key


def test_the_floor_stands_in_for_entries_no_fisher_sees():
    zeros = [{"w": torch.zeros(3)}, {"w": torch.zeros(3)}]
    merged = merge(BASE, MODELS, "fisher", fishers=zeros)
    assert torch.allclose(merged["w"], torch.tensor([2.0, 1.0, 3.0]))  # the plain average


@pytest.mark.parametrize("fishers, match", [
    (None, "needs \\['fishers'\\]"),
    ([FISHERS[0]], "1 Fisher\\(s\\) for 2"),
    (FISHERS[0], "list of Fisher"),
    ([{"v": torch.zeros(3)}, FISHERS[1]], "Fisher #0 has no entry"),
    ([{"w": torch.zeros(4)}, FISHERS[1]], "Fisher #0: tensor 'w' has shape \\(4,\\)"),
    ([FISHERS[0], {"w": torch.tensor([1.0, -1.0, 0.0])}], "Fisher #1: tensor 'w' must be finite and non-negative"),
    ([FISHERS[0], {"w": torch.tensor([1.0, float("nan"), 0.0])}], "Fisher #1"),
])
def test_bad_fishers_are_named(fishers, match):
    extra = {} if fishers is None else {"fishers": fishers}
    with pytest.raises(ValueError, match=match):
        merge(BASE, MODELS, "fisher", **extra)


@pytest.mark.parametrize("settings, match", [
    ({"floor": 0.0}, "floor must be a positive"),
    ({"scaling": [1.0, -2.0]}, "scaling must be a list of positive"),
    ({"scaling": [1.0]}, "1 scaling coefficient"),
    ({"alpha": float("inf")}, "alpha must be a finite"),
])
def test_bad_settings_are_named(settings, match):
    with pytest.raises(ValueError, match=match):
        merge(BASE, MODELS, "fisher", fishers=FISHERS, **settings)


class _Tiny(nn.Module):
    """A small convolutional classifier: logits for 3-channel 8x8 images."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.GELU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5))

    def forward(self, x):
        return self.body(x)


def _split(n: int, seed: int = 0) -> ImageSplit:
    g = torch.Generator().manual_seed(seed)
    return ImageSplit(torch.randint(0, 256, (n, 3, 8, 8), dtype=torch.uint8, generator=g),
                      torch.randint(0, 5, (n,), generator=g))


def test_the_empirical_fisher_is_the_mean_of_per_example_squared_gradients():
    model, split = _Tiny(), _split(12)
    got = diagonal_fisher(model, split, FisherConfig(examples=12, empirical=True))
    params = {k: v.detach() for k, v in model.named_parameters()}

    def log_likelihood(p, x, y):
        return torch.log_softmax(functional_call(model, p, (x[None],)), -1)[0].gather(0, y[None]).squeeze()

    per_example = vmap(grad(log_likelihood), in_dims=(None, 0, 0))(params, normalize(split.images), split.labels)
    assert got.keys() == model.state_dict().keys()
    for key, grads in per_example.items():
        assert torch.allclose(got[key], grads.square().mean(0), rtol=1e-4, atol=1e-9), key


def test_the_sampled_fisher_estimates_the_expectation_over_the_models_labels():
    """For logits ``W x``, ``d log p(y|x) / dW = (e_y - p) x^T``, so the exact Fisher is
    ``mean_n sum_y p_y (e_y - p)^2 (x_n^2)^T``; labels drawn from the model approach it."""
    torch.manual_seed(1)
    linear = nn.Linear(6, 3, bias=False)
    inputs = torch.randn(4, 6)
    repeated = inputs.repeat(500, 1)

    class Loader:  # a loader of already normalised batches, like the paper world's
        def __iter__(self):
            yield from zip(repeated.split(100), torch.zeros(len(repeated), dtype=torch.long).split(100))

    estimate = diagonal_fisher(linear, Loader(), FisherConfig(examples=len(repeated)), seed=3)["weight"]
    probs = torch.softmax(inputs @ linear.weight.detach().T, -1)  # (N, C)
    eye = torch.eye(3)
    coefficient = torch.einsum("ny,nyc->nc", probs, (eye[None] - probs[:, None, :]).square())  # (N, C)
    exact = (coefficient[:, :, None] * inputs.square()[:, None, :]).mean(0)
    assert torch.allclose(estimate, exact, rtol=0.15, atol=1e-4)
    empirical = diagonal_fisher(linear, Loader(), FisherConfig(examples=len(repeated), empirical=True))["weight"]
    assert not torch.allclose(empirical, exact, rtol=0.15)  # label 0 everywhere: another quantity


def test_too_little_data_and_zero_examples_are_errors():
    with pytest.raises(ValueError, match="has only 3"):
        diagonal_fisher(_Tiny(), _split(3), FisherConfig(examples=4))
    with pytest.raises(ValueError, match="has only 0"):
        diagonal_fisher(_Tiny(), _split(0), FisherConfig(examples=1))  # a task without data
    with pytest.raises(ValueError, match="at least one example"):
        FisherConfig(examples=0)


def test_a_model_that_does_not_match_the_base_is_named():
    base = small_model(0)
    other = {**finetune_of(base, 1), "layer.weight": torch.zeros(7, 5)}
    fishers = [{k: torch.ones_like(v) for k, v in base.items() if v.is_floating_point()}] * 2
    with pytest.raises(ValueError, match=r"fine-tuned model #1: shape mismatch for 'layer.weight': \(7, 5\)"):
        merge(base, [finetune_of(base, 2), other], "fisher", fishers=fishers)


def test_the_subset_merger_takes_the_fishers_from_its_provider():
    base = small_model(0)
    finetuned = {task: finetune_of(base, 10 + i) for i, task in enumerate("abc")}
    fishers = {task: {k: torch.rand(v.shape, generator=torch.Generator().manual_seed(i))
                      for k, v in base.items() if v.is_floating_point()} for i, task in enumerate("abc")}
    merger = SubsetMerger(base, finetuned, inputs=lambda name, task: fishers[task])
    got = merger.merged(("a", "c"), "fisher", {"alpha": 0.8})
    expected = merge(base, [finetuned["a"], finetuned["c"]], "fisher", fishers=[fishers["a"], fishers["c"]], alpha=0.8)
    for key in expected:
        assert torch.equal(got[key], expected[key]), key
    with pytest.raises(ValueError, match="no inputs provider"):
        SubsetMerger(base, finetuned).merged(("a",), "fisher", {})
