"""merge(): each method against its definition, the paper's ablation settings, memory, errors."""

from __future__ import annotations

import inspect
import weakref

import pytest
import torch
from helpers import finetune_of, small_model
from hypothesis import given
from hypothesis import strategies as st

from breadcrumbs_lib import breadcrumbs_mask, merge, reference_breadcrumbs_mask, save_state_dict
from breadcrumbs_lib.core import state_dicts, task_vectors
from breadcrumbs_lib.core.methods import METHODS
from breadcrumbs_lib.core.methods.spec import COMMON, REQUIRED

FLOAT_KEYS = ["layer.weight", "layer.bias", "norm.weight", "logit_scale"]


def models(n_tasks: int, seed: int = 0, dtype: torch.dtype = torch.float32):
    base = small_model(seed, dtype)
    return base, [finetune_of(base, 100 * seed + t + 1) for t in range(n_tasks)]


def deltas(base, finetuned, key):
    return [model[key].float() - base[key].float() for model in finetuned]


@given(st.integers(1, 5), st.integers(0, 50), st.floats(-1.5, 1.5))
def test_task_arithmetic_is_base_plus_alpha_times_summed_deltas(n_tasks, seed, alpha):
    base, finetuned = models(n_tasks, seed)
    merged = merge(base, finetuned, "task_arithmetic", alpha=alpha)
    for key in FLOAT_KEYS:
        expected = base[key] + alpha * sum(deltas(base, finetuned, key))
        torch.testing.assert_close(merged[key], expected, atol=1e-5, rtol=1e-5)
    assert merged["counter"] is base["counter"]


@given(st.integers(1, 5), st.integers(0, 50), st.floats(-1.5, 1.5), st.sampled_from(["tensor", "row", "global"]))
def test_breadcrumbs_without_masking_equals_task_arithmetic_exactly(n_tasks, seed, alpha, granularity):
    base, finetuned = models(n_tasks, seed)
    crumbs = merge(base, finetuned, "breadcrumbs", alpha=alpha, beta=0.0, gamma=0.0, granularity=granularity)
    arithmetic = merge(base, finetuned, "task_arithmetic", alpha=alpha)
    for key in base:
        assert torch.equal(crumbs[key], arithmetic[key])


@given(st.integers(1, 4), st.integers(0, 50), st.floats(0, 0.6), st.floats(0, 0.3))
def test_breadcrumbs_is_base_plus_alpha_times_summed_masked_deltas(n_tasks, seed, beta, gamma):
    base, finetuned = models(n_tasks, seed)
    merged = merge(base, finetuned, "breadcrumbs", alpha=0.7, beta=beta, gamma=gamma)
    for key in FLOAT_KEYS:
        masked = [tau * breadcrumbs_mask(tau, beta, gamma) for tau in deltas(base, finetuned, key)]
        torch.testing.assert_close(merged[key], base[key] + 0.7 * sum(masked), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("beta, gamma", [(0.0, 0.2), (0.5, 0.0), (0.5, 0.2)])  # top-only, bottom-only, both
def test_ablation_settings_mask_only_their_side(beta, gamma):
    base, finetuned = models(3)
    merged = merge(base, finetuned, "breadcrumbs", alpha=1.0, beta=beta, gamma=gamma)
    key = "layer.weight"
    taus = deltas(base, finetuned, key)
    expected = base[key] + sum(tau * reference_breadcrumbs_mask(tau, beta, gamma) for tau in taus)
    torch.testing.assert_close(merged[key], expected, atol=1e-6, rtol=0)


def test_alpha_zero_returns_the_base_for_every_method():
    base, finetuned = models(3, dtype=torch.bfloat16)
    settings = {
        "task_arithmetic": {},
        "breadcrumbs": {"beta": 0.5, "gamma": 0.1},
        "ties": {"density": 0.3},
        "breadcrumbs_ties": {"beta": 0.5, "gamma": 0.1},
        "dare": {"p": 0.5},
    }
    for method, extra in settings.items():
        merged = merge(base, finetuned, method, alpha=0.0, **extra)
        for key in base:
            assert merged[key].dtype == base[key].dtype and torch.equal(merged[key], base[key]), (method, key)


def test_average_is_the_mean_of_the_finetuned_models():
    base, finetuned = models(4)
    merged = merge(base, finetuned, "average")
    for key in FLOAT_KEYS:
        torch.testing.assert_close(merged[key], torch.stack([m[key] for m in finetuned]).mean(0), atol=1e-6, rtol=0)


def reference_ties(base, finetuned, alpha, density):
    """TIES on flattened vectors, written directly from the paper (global trim by stable rank)."""
    keys = [k for k in FLOAT_KEYS if base[k].dim() > 0]
    taus = torch.stack([torch.cat([(m[k].float() - base[k].float()).reshape(-1) for k in keys]) for m in finetuned])
    trimmed = torch.stack([tau * reference_breadcrumbs_mask(tau, 1.0 - density, 0.0) for tau in taus])
    sign = trimmed.sum(0).sign()
    agree = (trimmed.sign() == sign) & (trimmed != 0)
    merged = (trimmed * agree).sum(0) / agree.sum(0).clamp(min=1)
    return merged


@given(st.integers(2, 5), st.integers(0, 30), st.sampled_from([0.1, 0.2, 0.5, 1.0]))
def test_ties_matches_trim_elect_disjoint_mean(n_tasks, seed, density):
    base, finetuned = models(n_tasks, seed)
    merged = merge(base, finetuned, "ties", alpha=0.9, density=density)
    expected = reference_ties(base, finetuned, 0.9, density)
    keys = [k for k in FLOAT_KEYS if base[k].dim() > 0]
    got = torch.cat([(merged[k] - base[k]).reshape(-1) for k in keys]) / 0.9
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


def test_ties_disagreeing_signs_cancel_to_the_majority():
    base = {"w": torch.zeros(3)}
    finetuned = [{"w": torch.tensor([1.0, -1.0, 2.0])}, {"w": torch.tensor([3.0, -1.0, -1.0])},
                 {"w": torch.tensor([-1.0, 0.0, -0.5])}]
    merged = merge(base, finetuned, "ties", alpha=1.0, density=1.0)
    # entry 0: sum +3 -> mean of 1, 3; entry 1: mean of -1, -1; entry 2: sum +0.5 -> only 2
    assert merged["w"].tolist() == [2.0, -1.0, 2.0]


@given(st.integers(2, 4), st.integers(0, 30), st.sampled_from([0.0, 0.3, 0.8]))
def test_breadcrumbs_ties_without_a_top_cut_is_ties(n_tasks, seed, beta):
    base, finetuned = models(n_tasks, seed)
    ours = merge(base, finetuned, "breadcrumbs_ties", alpha=0.7, beta=beta, gamma=0.0, granularity="global")
    ties = merge(base, finetuned, "ties", alpha=0.7, density=1.0 - beta)
    for key in base:
        torch.testing.assert_close(ours[key], ties[key], atol=0, rtol=0)


def test_breadcrumbs_ties_elects_signs_among_the_breadcrumbs():
    base = {"w": torch.zeros(4)}
    # per task, beta = gamma = 0.25 drops the smallest and the largest |tau| of the four entries
    finetuned = [{"w": torch.tensor([9.0, 2.0, -3.0, 0.5])},    # keeps 2, -3
                 {"w": torch.tensor([-1.0, -4.0, 5.0, 0.1])},   # keeps -1, -4
                 {"w": torch.tensor([0.2, 3.0, -1.0, 8.0])}]    # keeps 3, -1
    merged = merge(base, finetuned, "breadcrumbs_ties", alpha=1.0, beta=0.25, gamma=0.25)
    # entry 0: only -1 kept; 1: 2 - 4 + 3 > 0, mean of 2, 3; 2: -3 - 1 < 0, mean of -3, -1; 3: nothing kept
    assert merged["w"].tolist() == [-1.0, 2.5, -2.0, 0.0]


def test_dare_drops_and_rescales_reproducibly():
    base, finetuned = models(2)
    first = merge(base, finetuned[:1], "dare", alpha=1.0, p=0.6, seed=7)
    again = merge(base, finetuned[:1], "dare", alpha=1.0, p=0.6, seed=7)
    other = merge(base, finetuned[:1], "dare", alpha=1.0, p=0.6, seed=8)
    key = "layer.weight"
    assert torch.equal(first[key], again[key]) and not torch.equal(first[key], other[key])
    tau = finetuned[0][key] - base[key]
    got = first[key] - base[key]
    dropped = got.abs() < 1e-7
    torch.testing.assert_close(got[~dropped], tau[~dropped] / 0.4, atol=1e-5, rtol=1e-5)
    assert 0 < int(dropped.sum()) < tau.numel()


def test_dare_without_dropping_is_task_arithmetic():
    base, finetuned = models(3)
    dare = merge(base, finetuned, "dare", alpha=0.4, p=0.0)
    arithmetic = merge(base, finetuned, "task_arithmetic", alpha=0.4)
    for key in base:
        assert torch.equal(dare[key], arithmetic[key])


def test_checkpoint_paths_are_loaded_one_at_a_time(tmp_path, monkeypatch):
    base, finetuned = models(4)
    paths = [save_state_dict(model, tmp_path / f"task{t}.safetensors") for t, model in enumerate(finetuned)]
    alive, peak = set(), [0]
    real_load = state_dicts.load_state_dict

    def tracking_load(path, **options):
        state = real_load(path, **options)
        state_id = str(path)
        alive.add(state_id)
        peak[0] = max(peak[0], len(alive))
        weakref.finalize(state["layer.weight"], alive.discard, state_id)
        return state

    monkeypatch.setattr(state_dicts, "load_state_dict", tracking_load)
    merged = merge(base, paths, "breadcrumbs", alpha=0.5, beta=0.3, gamma=0.1)
    expected = merge(base, finetuned, "breadcrumbs", alpha=0.5, beta=0.3, gamma=0.1)
    assert peak[0] == 1
    for key in base:
        assert torch.equal(merged[key], expected[key])


@pytest.mark.parametrize("method, hyperparameters, most", [
    ("task_arithmetic", {"alpha": 0.5}, 0),  # summed tensor by tensor: no whole task vector is formed
    ("breadcrumbs", {"alpha": 0.5, "beta": 0.3, "gamma": 0.1}, 0),
    ("breadcrumbs", {"alpha": 0.5, "beta": 0.3, "gamma": 0.1, "granularity": "global"}, 1),
    ("average", {}, 0),
    ("ties", {"alpha": 0.5, "density": 0.4}, 1),
    ("dare", {"alpha": 0.5, "p": 0.3}, 1),
])
def test_task_vectors_are_built_one_at_a_time(monkeypatch, method, hyperparameters, most):
    """No method holds on to a task vector once it is added, the first one included; the
    methods summed tensor by tensor never form one."""
    base, finetuned = models(5)
    alive, peak = set(), [0]
    real = task_vectors.TaskVector.from_state_dicts.__func__

    def tracking(cls, *args, **kwargs):
        vector = real(cls, *args, **kwargs)
        alive.add(id(vector))
        peak[0] = max(peak[0], len(alive))
        weakref.finalize(vector, alive.discard, id(vector))
        return vector

    monkeypatch.setattr(task_vectors.TaskVector, "from_state_dicts", classmethod(tracking))
    merge(base, finetuned, method, **hyperparameters)
    assert peak[0] == most


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda b, f: merge(b, f, "regmean", alpha=1.0), "unknown merge method 'regmean'"),
        (lambda b, f: merge(b, f, "breadcrumbs", alpha=1.0, beta=0.9), "needs hyperparameter\\(s\\) \\['gamma'\\]"),
        (lambda b, f: merge(b, f, "task_arithmetic", alpha=1.0, beta=0.9), "unknown hyperparameter\\(s\\) \\['beta'\\]"),
        (lambda b, f: merge(b, f, "task_arithmetic", alpha=float("inf")), "alpha must be a finite"),
        (lambda b, f: merge(b, f, "breadcrumbs", alpha=1.0, beta=1.0, gamma=0.0), "beta must lie in \\[0, 1\\)"),
        # two bad values: the first in the spec's declaration order (alpha, beta, gamma, ...) is named
        (lambda b, f: merge(b, f, "breadcrumbs", alpha=1.0, gamma=-0.1, beta=1.5), "beta must lie in \\[0, 1\\)"),
        (lambda b, f: merge(b, f, "breadcrumbs", gamma=-0.1, beta=0.5, alpha=float("nan")), "alpha must be a finite"),
        (lambda b, f: merge(b, f, "breadcrumbs", alpha=1.0, beta=0.6, gamma=0.4), "beta \\+ gamma must be < 1"),
        (lambda b, f: merge(b, f, "breadcrumbs", alpha=1.0, beta=0.1, gamma=0.1, granularity="col"),
         "unknown granularity 'col'"),
        (lambda b, f: merge(b, f, "ties", alpha=1.0, density=0.0), "density must lie in \\(0, 1\\]"),
        (lambda b, f: merge(b, f, "breadcrumbs_ties", alpha=1.0, beta=0.6, gamma=0.4), "beta \\+ gamma must be < 1"),
        (lambda b, f: merge(b, f, "dare", alpha=1.0, p=1.0), "drop rate p must lie in \\[0, 1\\)"),
        (lambda b, f: merge(b, f, "dare", alpha=1.0, p=0.1, seed=-1), "seed must be a non-negative"),
        (lambda b, f: merge(b, [], "task_arithmetic", alpha=1.0), "empty list"),
        (lambda b, f: merge(b, f[0], "task_arithmetic", alpha=1.0), "list of state dicts"),
        (lambda b, f: merge(b, f, "task_arithmetic", alpha=1.0, include=["counter"]), "'counter' has dtype torch.int64"),
        (lambda b, f: merge(b, f, "task_arithmetic", alpha=1.0, include="*.weight"), "list of glob patterns"),
    ],
)
def test_bad_calls_are_refused_with_a_clear_message(call, message):
    base, finetuned = models(2)
    with pytest.raises(ValueError, match=message):
        call(base, finetuned)


def test_incompatible_models_are_named():
    base, finetuned = models(2)
    missing = dict(finetuned[1])
    del missing["norm.weight"]
    with pytest.raises(ValueError, match="fine-tuned model #1 has different keys from the base: missing \\['norm.weight'\\]"):
        merge(base, [finetuned[0], missing], "task_arithmetic", alpha=1.0)
    extra = {**finetuned[0], "head.weight": torch.zeros(2)}
    with pytest.raises(ValueError, match="unexpected \\['head.weight'\\]"):
        merge(base, [extra], "task_arithmetic", alpha=1.0)
    reshaped = {**finetuned[0], "layer.weight": torch.zeros(5, 6)}
    with pytest.raises(ValueError, match="shape mismatch for 'layer.weight': \\(5, 6\\) vs the base \\(6, 5\\)"):
        merge(base, [reshaped], "breadcrumbs", alpha=1.0, beta=0.1, gamma=0.1)
    broken = {key: value.clone() for key, value in finetuned[0].items()}
    broken["layer.bias"][1] = float("nan")
    with pytest.raises(ValueError, match="'layer.bias' of shape \\(6,\\) has 1 non-finite"):
        merge(base, [broken], "average")
    wrong_dtype = {**finetuned[0], "layer.bias": finetuned[0]["layer.bias"].long()}
    with pytest.raises(ValueError, match="'layer.bias' has dtype torch.int64"):
        merge(base, [wrong_dtype], "task_arithmetic", alpha=1.0)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_each_spec_declares_exactly_its_functions_keywords_inputs_and_defaults(name):
    spec = METHODS[name]
    parameters = inspect.signature(spec.function).parameters.values()
    keywords = {p.name: p.default for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY}
    assert spec.name == name and set(spec.accepted).isdisjoint(spec.inputs)
    assert set(spec.accepted) | set(spec.inputs) == set(keywords)
    assert all(keywords[data] is inspect.Parameter.empty for data in spec.inputs)  # data is never optional
    for hyperparameter in (*spec.hyperparameters, *COMMON):
        expected = REQUIRED if keywords[hyperparameter.name] is inspect.Parameter.empty else keywords[hyperparameter.name]
        assert hyperparameter.default is expected or hyperparameter.default == expected, hyperparameter.name


@pytest.mark.parametrize("name", sorted(METHODS))
def test_each_spec_describes_every_hyperparameter_it_accepts(name):
    spec = METHODS[name]
    rows = [line for line in spec.describe().splitlines() if line.startswith("| `")]
    assert [row.split("`")[1] for row in rows] == list(spec.accepted)
    assert all(h.meaning for h in (*spec.hyperparameters, *COMMON))
    assert all(row.count(" | ") == 2 for row in rows)  # a '|' inside a meaning is escaped


MASKED_SETTINGS = {
    "breadcrumbs": {"alpha": 0.4, "beta": 0.6, "gamma": 0.05},
    "ties": {"alpha": 0.9, "density": 0.3},
    "breadcrumbs_ties": {"alpha": 0.7, "beta": 0.5, "gamma": 0.1},
}


@pytest.mark.parametrize("granularity", ["tensor", "row", "global"])
@pytest.mark.parametrize("name", sorted(MASKED_SETTINGS))
def test_a_masked_form_is_the_method_itself(name, granularity):
    """What the streaming merge relies on for global masks: the method's function equals its
    declared ``combine`` over task vectors masked with the declared ``beta``, ``gamma`` and
    ``granularity``; and exactly these methods declare one."""
    from breadcrumbs_lib.core.methods.breadcrumbs import masking

    assert sorted(spec.name for spec in METHODS.values() if spec.masked is not None) == sorted(MASKED_SETTINGS)
    spec = METHODS[name]
    base = small_model(0)
    finetuned = [finetune_of(base, seed) for seed in (1, 2, 3)]
    settings = spec.complete({**MASKED_SETTINGS[name], "granularity": granularity})
    form = spec.masked(settings)
    assert form.granularity == granularity
    want = merge(base, finetuned, name, **settings)
    got = form.combine(base, finetuned, settings["alpha"], masking(form.beta, form.gamma, form.granularity))
    assert all(torch.equal(got[key], want[key]) for key in want)


EQUIVALENT_SETTINGS = {  # a setting each method declares to be another method's, and that method's setting
    "breadcrumbs": ({"alpha": 0.4, "beta": 0.0, "gamma": 0.0}, {"alpha": 0.4}),
    "dare": ({"alpha": 0.4, "p": 0.0}, {"alpha": 0.4}),
}


@pytest.mark.parametrize("name", sorted(EQUIVALENT_SETTINGS))
def test_a_declared_equivalent_setting_merges_as_that_method(name):
    """What the headline tables rely on to leave such settings out: the declaration holds, and
    an ordinary setting of the same method declares nothing."""
    spec = METHODS[name]
    setting, other_setting = EQUIVALENT_SETTINGS[name]
    other = spec.equivalent_to(spec.complete(setting))
    assert other == "task_arithmetic"
    base, finetuned = models(3)
    mine, theirs = merge(base, finetuned, name, **setting), merge(base, finetuned, other, **other_setting)
    assert all(torch.equal(mine[key], theirs[key]) for key in base)
    ordinary = {**setting, **({"beta": 0.85, "gamma": 0.01} if name == "breadcrumbs" else {"p": 0.5})}
    assert spec.equivalent_to(spec.complete(ordinary)) is None
