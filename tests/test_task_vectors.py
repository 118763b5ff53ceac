"""Task vectors: float32 deltas, key selection, arithmetic, application, masks, orthogonality."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import finetune_of, small_model
from hypothesis import given
from hypothesis import strategies as st

from breadcrumbs_lib import TaskVector, breadcrumbs_mask, reference_breadcrumbs_mask, save_state_dict
from breadcrumbs_lib.core.task_vectors import iter_task_vectors, sum_task_vectors


def vector(seed: int) -> TaskVector:
    base = small_model(0)
    return TaskVector.from_state_dicts(base, finetune_of(base, seed))


def assert_vectors_close(a: TaskVector, b: TaskVector, atol: float = 1e-6) -> None:
    assert list(a) == list(b)
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=atol, rtol=0)


def test_delta_is_finetuned_minus_base_in_float32():
    base = small_model(0)
    tau = TaskVector.from_state_dicts(base, finetune_of(base, 1))
    assert set(tau) == {"layer.weight", "layer.bias", "norm.weight", "logit_scale"}  # no integer buffer
    assert all(delta.dtype == torch.float32 for delta in tau.values())
    assert torch.equal(tau["layer.bias"], finetune_of(base, 1)["layer.bias"] - base["layer.bias"])


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_task_vector_from_checkpoint_files_equals_the_one_from_state_dicts(tmp_path, suffix):
    base, finetuned = small_model(0), finetune_of(small_model(0), 1)
    paths = [tmp_path / f"{name}{suffix}" for name in ("base", "finetuned")]
    save = save_state_dict if suffix == ".safetensors" else torch.save
    for path, weights in zip(paths, (base, finetuned)):
        save(weights, path)
    from_files = TaskVector.from_checkpoints(str(paths[0]), str(paths[1]))
    from_dicts = TaskVector.from_state_dicts(base, finetuned)
    assert set(from_files) == set(from_dicts)
    assert all(torch.equal(from_files[key], from_dicts[key]) for key in from_dicts)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_deltas_are_formed_in_float32(dtype):
    base = {"w": torch.tensor([1.0, 100.0, 3.0], dtype=dtype)}
    tuned = {"w": torch.tensor([1.0078125, 100.5, 2.984375], dtype=dtype)}
    tau = TaskVector.from_state_dicts(base, tuned)
    assert torch.equal(tau["w"], tuned["w"].float() - base["w"].float())
    assert tau["w"].dtype == torch.float32
    merged = tau.apply_to(base, alpha=1.0)
    assert merged["w"].dtype == dtype and torch.equal(merged["w"], tuned["w"])


def test_include_and_exclude_patterns():
    base = small_model(0)
    tuned = finetune_of(base, 1)
    only_layer = TaskVector.from_state_dicts(base, tuned, include=["layer.*"])
    assert list(only_layer) == ["layer.weight", "layer.bias"]
    no_bias = TaskVector.from_state_dicts(base, tuned, exclude=["*.bias", "logit_scale"])
    assert list(no_bias) == ["layer.weight", "norm.weight"]


def test_integer_buffers_are_skipped_with_a_warning_when_they_differ():
    base = small_model(0)
    tuned = finetune_of(base, 1)
    tuned["counter"] = torch.tensor(9)
    with pytest.warns(UserWarning, match="'counter'"):
        tau = TaskVector.from_state_dicts(base, tuned)
    assert "counter" not in tau


def test_integer_tensor_asked_for_by_name_is_an_error():
    base = small_model(0)
    with pytest.raises(ValueError, match="'counter' has dtype torch.int64"):
        TaskVector.from_state_dicts(base, finetune_of(base, 1), include=["counter"])


@given(st.integers(1, 50), st.integers(1, 50), st.floats(-3, 3), st.floats(-3, 3))
def test_arithmetic_identities(seed_a, seed_b, c, d):
    a, b = vector(seed_a), vector(seed_b)
    assert_vectors_close((a + b) - b, a)
    assert_vectors_close(-a, (-1.0) * a)
    assert_vectors_close(c * (a + b), c * a + c * b, atol=1e-5)
    assert_vectors_close((c + d) * a, c * a + d * a, atol=1e-5)
    assert_vectors_close(sum([a, b, a]), TaskVector.sum_of([a, b, a]))
    assert_vectors_close(TaskVector.sum_of([a]), a)


def test_apply_with_alpha_zero_returns_the_base_exactly():
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        base = small_model(0, dtype)
        tau = TaskVector.from_state_dicts(base, finetune_of(base, 1))
        merged = tau.apply_to(base, alpha=0.0)
        for key, value in base.items():
            assert merged[key].dtype == value.dtype
            assert torch.equal(merged[key], value)


def test_apply_adds_alpha_times_tau():
    base = small_model(0)
    tau = vector(1)
    merged = tau.apply_to(base, alpha=0.3)
    torch.testing.assert_close(merged["layer.weight"], base["layer.weight"] + 0.3 * tau["layer.weight"])
    assert merged["counter"] is base["counter"]


def test_breadcrumbs_masks_match_the_tensor_function():
    tau = vector(1)
    masks = tau.breadcrumbs_masks(0.3, 0.1)
    for key, delta in tau.items():
        assert torch.equal(masks[key], breadcrumbs_mask(delta, 0.3, 0.1))
    crumbs = tau.breadcrumbs(0.3, 0.1)
    for key, delta in tau.items():
        assert torch.equal(crumbs[key], delta * masks[key])


@given(st.integers(1, 100), st.floats(0, 0.9), st.floats(0, 0.09))
def test_global_granularity_orders_all_entries_at_once(seed, beta, gamma):
    tau = vector(seed)
    masks = tau.breadcrumbs_masks(beta, gamma, granularity="global")
    ordered = [key for key in tau if tau[key].dim() > 0]
    flat = torch.cat([tau[key].reshape(-1) for key in ordered])
    expected = reference_breadcrumbs_mask(flat, beta, gamma)
    assert torch.equal(torch.cat([masks[key].reshape(-1) for key in ordered]), expected)
    assert bool(masks["logit_scale"])  # 0-d: never masked
    by_definition = tau.breadcrumbs_masks(beta, gamma, granularity="global", backend="reference")
    assert all(torch.equal(by_definition[key], masks[key]) for key in tau)
    crumbs = tau.breadcrumbs(beta, gamma, granularity="global")
    for key in tau:
        assert torch.equal(crumbs[key], tau[key] * masks[key])


def test_global_granularity_with_ties_across_tensors():
    tau = TaskVector({"a": torch.tensor([1.0, -1.0, 2.0]), "b": torch.tensor([1.0, 2.0, -1.0])})
    # |tau| in key order: 1 1 2 | 1 2 1 -> the four 1s have ranks 0..3 by position
    masks = tau.breadcrumbs_masks(0.5, 0.0, granularity="global")  # drop 3 smallest
    assert masks["a"].tolist() == [False, False, True] and masks["b"].tolist() == [False, True, True]
    crumbs = tau.breadcrumbs(0.5, 0.0, granularity="global")
    assert crumbs["b"].tolist() == [0.0, 2.0, -1.0]


def test_in_place_breadcrumbs_reuse_the_tensors():
    tau = vector(1)
    expected = tau.breadcrumbs(0.5, 0.1)
    same = tau.breadcrumbs(0.5, 0.1, inplace=True)
    assert same["layer.weight"] is tau["layer.weight"]
    assert_vectors_close(same, expected, atol=0)


def test_cosine_similarity():
    a = TaskVector({"w": torch.tensor([1.0, 0.0]), "b": torch.tensor([0.0])})
    b = TaskVector({"w": torch.tensor([0.0, 2.0]), "b": torch.tensor([0.0])})
    assert a.cosine_similarity(b) == 0.0
    assert math.isclose(a.cosine_similarity(a + b), 1 / math.sqrt(5))
    assert math.isclose(a.norm(), 1.0) and a.numel() == 3


def test_incompatible_vectors_are_refused():
    a = vector(1)
    b = TaskVector({key: delta for key, delta in a.items() if key != "layer.bias"})
    with pytest.raises(ValueError, match="missing \\['layer.bias'\\]"):
        a + b
    c = TaskVector({**dict(a.items()), "layer.bias": torch.zeros(3)})
    with pytest.raises(ValueError, match="shape mismatch for 'layer.bias': \\(6,\\) vs this task vector \\(3,\\)"):
        c - a
    with pytest.raises(ValueError, match="float32"):
        TaskVector({"w": torch.zeros(2, dtype=torch.float64)})
    with pytest.raises(ValueError, match="alpha must be a finite real number"):
        a.apply_to(small_model(0), alpha=float("nan"))
    with pytest.raises(ValueError, match="empty"):
        TaskVector.sum_of([])


def test_non_finite_weights_are_named():
    base = small_model(0)
    tuned = finetune_of(base, 1)
    tuned["norm.weight"][2] = float("inf")
    with pytest.raises(ValueError, match="fine-tuned tensor 'norm.weight' of shape \\(5,\\) has 1 non-finite"):
        TaskVector.from_state_dicts(base, tuned)


def _masked(key: str, delta: torch.Tensor) -> torch.Tensor:
    return delta * breadcrumbs_mask(delta, 0.5, 0.1)


@given(st.integers(1, 1000), st.integers(1, 4), st.sampled_from([torch.float32, torch.bfloat16]), st.booleans(),
       st.sampled_from([None, ["layer.*"]]))
def test_the_tensor_by_tensor_sum_is_the_sum_of_the_vectors(seed, count, dtype, masked, include):
    base = small_model(seed, dtype)
    models = [finetune_of(base, seed + index + 1) for index in range(count)]
    options = {"include": include, "map_delta": _masked if masked else None}
    want = TaskVector.sum_of(iter_task_vectors(base, models, **options))
    got = sum_task_vectors(base, models, **options)
    assert list(got) == list(want) and all(torch.equal(got[key], want[key]) for key in want)


def test_the_tensor_by_tensor_sum_names_a_non_finite_model_and_tensor():
    base = small_model(0)
    models = [finetune_of(base, 1), finetune_of(base, 2)]
    models[1]["layer.weight"][0, 0] = float("nan")  # added by the fused pass (not the first model)
    with pytest.raises(ValueError, match="#1: fine-tuned tensor 'layer.weight' of shape \\(6, 5\\) has 1 non-finite"):
        sum_task_vectors(base, models)
    with pytest.raises(ValueError, match="empty"):
        sum_task_vectors(base, [])
