"""The streaming merge of model files (``breadcrumbs-merge``): equal to the in-memory merge, and
every bad input stopped with a clear error and nothing left behind."""

from __future__ import annotations

import errno
import json
import re
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from breadcrumbs_lib import merge, save_state_dict
from breadcrumbs_lib.checkpoints import ModelInput, open_checkpoint, plan_merge, read_checkpoint, run_merge
from breadcrumbs_lib.checkpoints import safetensors_files
from breadcrumbs_lib.cli import convert as convert_cli
from breadcrumbs_lib.cli import merge as merge_cli
from breadcrumbs_lib.core.state_dicts import state_dict_digest


def _model(seed: int, base: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    if base is None:
        return {"blocks.0.attn.weight": torch.randn(24, 16, generator=generator).bfloat16(),
                "blocks.0.attn.bias": torch.randn(24, generator=generator).bfloat16(),
                "blocks.1.mlp.weight": torch.randn(16, 24, generator=generator).bfloat16(),
                "logit_scale": torch.randn((), generator=generator).bfloat16(),
                "steps": torch.tensor(11)}
    return {key: (value.float() + 0.1 * torch.randn(value.shape, generator=generator)).to(value.dtype)
            if value.is_floating_point() else value.clone() for key, value in base.items()}


@pytest.fixture
def models(tmp_path):
    base = _model(0)
    finetuned = [_model(seed, base) for seed in (1, 2, 3)]
    save_state_dict(base, tmp_path / "base.safetensors")
    for index, state in enumerate(finetuned):
        save_state_dict(state, tmp_path / f"ft{index}.safetensors")
    return tmp_path, base, finetuned


def _inputs(folder: Path, count: int = 3, **options) -> list[ModelInput]:
    return [ModelInput(folder / f"ft{index}.safetensors", **options) for index in range(count)]


def _merge_files(folder: Path, method: str, parameters: dict, out: str = "out", **options) -> Path:
    plan = plan_merge(folder / "base.safetensors", options.pop("inputs", None) or _inputs(folder), method, parameters, **options)
    try:
        return run_merge(plan, folder / out, progress=False)
    finally:
        plan.close()


def _leftovers(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir() if path.name.startswith("."))


SETTINGS = [
    ("task_arithmetic", {"alpha": 0.4}),
    ("breadcrumbs", {"alpha": 0.4, "beta": 0.85, "gamma": 0.01}),
    ("ties", {"alpha": 1.0, "density": 0.2, "granularity": "tensor"}),
    ("breadcrumbs_ties", {"alpha": 0.7, "beta": 0.8, "gamma": 0.05}),
    ("dare", {"alpha": 0.5, "p": 0.3, "seed": 4}),
    ("average", {}),
]


@pytest.mark.parametrize(("method", "parameters"), SETTINGS, ids=[m for m, _ in SETTINGS])
def test_the_streaming_merge_is_the_in_memory_merge(models, method, parameters):
    folder, base, finetuned = models
    got = read_checkpoint(_merge_files(folder, method, parameters))
    want = merge(base, finetuned, method, **parameters)
    assert list(got) == sorted(want)
    for key, value in want.items():
        assert got[key].dtype == value.dtype  # bf16 in, bf16 out; the integer buffer kept
        assert torch.equal(got[key], value), key


def test_fisher_takes_one_fisher_per_model(models):
    folder, base, finetuned = models
    fishers = [{key: torch.rand(value.shape, generator=torch.Generator().manual_seed(index))
                for key, value in base.items() if value.is_floating_point()} for index in range(3)]
    for index, fisher in enumerate(fishers):
        save_state_dict(fisher, folder / f"fisher{index}.safetensors")
    inputs = [ModelInput(folder / f"ft{i}.safetensors", inputs={"fishers": folder / f"fisher{i}.safetensors"}) for i in range(3)]
    got = read_checkpoint(_merge_files(folder, "fisher", {}, inputs=inputs))
    want = merge(base, finetuned, "fisher", fishers=fishers)
    assert all(torch.equal(got[key], want[key]) for key in want)
    record = json.loads((folder / "out" / "merge.json").read_text())
    assert record["models"][0]["fishers"]["path"].endswith("fisher0.safetensors")
    with pytest.raises(ValueError, match="needs \\['fishers'\\]"):
        plan_merge(folder / "base.safetensors", _inputs(folder), "fisher", {})
    with pytest.raises(ValueError, match="2 scaling coefficient\\(s\\) for 3 fine-tuned model"):  # before any write
        plan_merge(folder / "base.safetensors", inputs, "fisher", {"scaling": [1.0, 2.0]})


def test_weights_scale_task_vectors_and_float32_output(models):
    folder, base, finetuned = models
    weights = (0.5, 1.0, 2.0)
    inputs = [ModelInput(folder / f"ft{i}.safetensors", weight=w) for i, w in enumerate(weights)]
    got = read_checkpoint(_merge_files(folder, "task_arithmetic", {"alpha": 0.3}, inputs=inputs, dtype=torch.float32))
    scaled = [{k: base[k].float() + w * (v.float() - base[k].float()) if v.is_floating_point() else v for k, v in ft.items()}
              for ft, w in zip(finetuned, weights)]
    want = merge({k: v.float() if v.is_floating_point() else v for k, v in base.items()}, scaled, "task_arithmetic", alpha=0.3)
    assert got["blocks.0.attn.weight"].dtype == torch.float32 and got["steps"].dtype == torch.int64
    assert all(torch.equal(got[key], want[key]) for key in want)
    with pytest.raises(ValueError, match="weight must be a finite non-zero number"):
        plan_merge(folder / "base.safetensors", [ModelInput(folder / "ft0.safetensors", weight=0.0)], "task_arithmetic", {"alpha": 1.0})


def test_sharded_inputs_and_outputs_with_an_index_and_a_record(models):
    folder, base, finetuned = models
    out = _merge_files(folder, "breadcrumbs", {"alpha": 0.4, "beta": 0.85, "gamma": 0.01}, shard_bytes=800)
    files = sorted(path.name for path in out.iterdir())
    assert "model.safetensors.index.json" in files and "model-00001-of-00003.safetensors" in files
    index = json.loads((out / "model.safetensors.index.json").read_text())
    for name, file in index["weight_map"].items():  # the files are safetensors as the library reads them
        with safe_open(str(out / file), framework="pt") as handle:
            assert name in handle.keys()
    record = json.loads((out / "merge.json").read_text())
    assert record["method"] == "breadcrumbs" and record["parameters"]["beta"] == 0.85
    assert record["base"]["sha256"] == state_dict_digest(base)
    assert record["models"][2]["sha256"] == state_dict_digest(finetuned[2])
    # the sharded folder is itself an input, equal to a merge of the single files
    again = plan_merge(out, [ModelInput(folder / "ft0.safetensors")], "task_arithmetic", {"alpha": 1.0})
    assert again.base.format == "safetensors, 3 shards"
    again.close()


def test_wrapping_prefixes_are_recognised_and_reported(models):
    folder, base, finetuned = models
    save_state_dict({f"module.visual.{k}": v for k, v in finetuned[0].items()}, folder / "wrapped.safetensors")
    torch.save({"state_dict": {f"model.{k}": v for k, v in finetuned[1].items()}}, folder / "wrapped.pt")
    inputs = [ModelInput(folder / "wrapped.safetensors"), ModelInput(folder / "wrapped.pt")]
    plan = plan_merge(folder / "base.safetensors", inputs, "task_arithmetic", {"alpha": 0.5})
    assert "'module.visual.'" in plan.describe() and "'model.'" in plan.describe()
    out = run_merge(plan, folder / "out", progress=False)
    plan.close()
    want = merge(base, finetuned[:2], "task_arithmetic", alpha=0.5)
    got = read_checkpoint(out)
    assert all(torch.equal(got[key], want[key]) for key in want)


def test_key_and_shape_mismatches_stop_before_writing(models):
    folder, base, finetuned = models
    save_state_dict({k: v for k, v in finetuned[0].items() if k != "blocks.1.mlp.weight"}, folder / "short.safetensors")
    save_state_dict({**finetuned[0], "blocks.0.attn.bias": torch.zeros(25).bfloat16()}, folder / "wide.safetensors")
    with pytest.raises(ValueError, match="1 missing \\(first \\['blocks.1.mlp.weight'\\]\\)"):
        plan_merge(folder / "base.safetensors", [ModelInput(folder / "short.safetensors")], "task_arithmetic", {"alpha": 1.0})
    with pytest.raises(ValueError, match="'blocks.0.attn.bias' has shape \\[25\\]"):
        plan_merge(folder / "base.safetensors", [ModelInput(folder / "wide.safetensors")], "task_arithmetic", {"alpha": 1.0})
    assert not (folder / "out").exists()


GLOBAL_SETTINGS = [
    ("ties", {"alpha": 1.0, "density": 0.2}),  # TIES' own ordering: over the whole task vector
    ("breadcrumbs", {"alpha": 0.4, "beta": 0.85, "gamma": 0.01, "granularity": "global"}),
    ("breadcrumbs_ties", {"alpha": 0.7, "beta": 0.8, "gamma": 0.05, "granularity": "global"}),
    ("breadcrumbs", {"alpha": 0.4, "beta": 0.0, "gamma": 0.0, "granularity": "global"}),  # nothing dropped
]


def _in_name_order(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return dict(sorted(state.items()))


@pytest.mark.parametrize(("method", "parameters"), GLOBAL_SETTINGS, ids=[f"{m}-{i}" for i, (m, _) in enumerate(GLOBAL_SETTINGS)])
def test_masks_ordered_over_a_whole_task_vector_stream_too(models, method, parameters):
    """Global masks need a model's every tensor before the first is masked: two passes locate
    each model's band, then the merge masks tensor by tensor, equal to the in-memory merge of
    the state dicts in name order, across shards, with bf16 deltas full of ties."""
    folder, base, finetuned = models
    inputs = [ModelInput(folder / f"ft{i}.safetensors", weight=w) for i, w in enumerate((1.0, 0.5, 2.0))]
    got = read_checkpoint(_merge_files(folder, method, parameters, inputs=inputs, shard_bytes=800))
    scaled = [_in_name_order({k: (base[k].float() + w * (v.float() - base[k].float())) if w != 1.0 and v.is_floating_point()
                              else v for k, v in ft.items()}) for ft, w in zip(finetuned, (1.0, 0.5, 2.0))]
    want = merge(_in_name_order(base), scaled, method, **parameters)
    assert all(torch.equal(got[key], want[key]) for key in want)
    if parameters.get("beta", 1.0) > 0:  # the ordering matters: per tensor, the merge differs
        per_tensor = merge(_in_name_order(base), scaled, method, **{**parameters, "granularity": "tensor"})
        assert not all(torch.equal(per_tensor[key], want[key]) for key in want)


def test_a_global_merge_names_a_non_finite_input_before_writing(models):
    folder, _, finetuned = models
    broken = dict(finetuned[2])
    broken["blocks.1.mlp.weight"] = broken["blocks.1.mlp.weight"].clone()
    broken["blocks.1.mlp.weight"][0, 1] = float("inf")
    save_state_dict(broken, folder / "ft2.safetensors")
    with pytest.raises(ValueError, match="ft2.safetensors: tensor 'blocks.1.mlp.weight' .* 1 non-finite"):
        _merge_files(folder, "ties", {"alpha": 1.0, "density": 0.2})
    assert not (folder / "out").exists() and _leftovers(folder) == []


def test_the_dry_run_of_a_global_merge_says_it_reads_twice_more(models):
    folder, _, _ = models
    plan = plan_merge(folder / "base.safetensors", _inputs(folder), "ties", {"alpha": 1.0, "density": 0.2})
    try:
        assert plan.bytes_ordering == 2 * sum(plan.bytes_read_for(name) for name in plan.ordered)
        assert "granularity 'global'" in plan.describe()
    finally:
        plan.close()


@pytest.mark.parametrize(("method", "parameters", "message"), [
    ("sparse_magic", {}, "unknown merge method"),
    ("breadcrumbs", {"alpha": 0.3, "beta": 0.85, "gama": 0.01}, "unknown hyperparameter"),
    ("breadcrumbs", {"alpha": 0.3, "beta": 1.2, "gamma": 0.01}, "beta"),
    ("ties", {"alpha": 1.0, "density": 1.5}, "density must lie in"),
])
def test_bad_methods_and_settings_are_refused(models, method, parameters, message):
    folder, _, _ = models
    with pytest.raises(ValueError, match=message):
        plan_merge(folder / "base.safetensors", _inputs(folder), method, parameters)


def test_a_nan_mid_stream_leaves_nothing_behind(models):
    folder, _, finetuned = models
    broken = dict(finetuned[1])
    broken["blocks.1.mlp.weight"] = broken["blocks.1.mlp.weight"].clone()
    broken["blocks.1.mlp.weight"][3, 4] = float("nan")  # the last merged tensor in name order
    save_state_dict(broken, folder / "ft1.safetensors")
    with pytest.raises(ValueError, match="ft1.safetensors: tensor 'blocks.1.mlp.weight' .* 1 non-finite"):
        _merge_files(folder, "task_arithmetic", {"alpha": 1.0})
    assert not (folder / "out").exists() and _leftovers(folder) == []


def test_an_existing_output_is_refused_unless_overwrite(models):
    folder, _, _ = models
    (folder / "out").mkdir()
    (folder / "out" / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="--overwrite"):
        _merge_files(folder, "task_arithmetic", {"alpha": 1.0})
    assert (folder / "out" / "keep.txt").read_text() == "mine"
    plan = plan_merge(folder / "base.safetensors", _inputs(folder), "task_arithmetic", {"alpha": 1.0})
    run_merge(plan, folder / "out", overwrite=True, progress=False)
    plan.close()
    assert not (folder / "out" / "keep.txt").exists() and (folder / "out" / "model.safetensors").is_file()
    assert _leftovers(folder) == []


def _fail_third_write(monkeypatch, error: BaseException) -> None:
    """Make the output's third tensor write raise ``error`` (a full disk, Ctrl-C mid-stream)."""
    real_write = safetensors_files.SafetensorsWriter.write
    calls = []

    def write(self, name, tensor):
        calls.append(name)
        if len(calls) == 3:
            raise error
        real_write(self, name, tensor)

    monkeypatch.setattr(safetensors_files.SafetensorsWriter, "write", write)


def test_a_full_disk_is_reported_and_cleaned_up(models, monkeypatch):
    folder, _, _ = models
    _fail_third_write(monkeypatch, OSError(errno.ENOSPC, "No space left on device"))
    with pytest.raises(OSError, match="filled up while writing the merged model"):
        _merge_files(folder, "task_arithmetic", {"alpha": 1.0})
    assert not (folder / "out").exists() and _leftovers(folder) == []


def test_pickled_models_are_refused_and_convert_only_when_trusted(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3))
    torch.save(model, tmp_path / "finetuned.pt")
    with pytest.raises(ValueError, match="breadcrumbs-convert --trust-pickle"):
        open_checkpoint(tmp_path / "finetuned.pt")
    assert convert_cli.main([str(tmp_path / "finetuned.pt"), str(tmp_path / "a.safetensors")]) == 1
    assert not (tmp_path / "a.safetensors").exists()
    assert convert_cli.main(["--trust-pickle", str(tmp_path / "finetuned.pt"), str(tmp_path / "a.safetensors")]) == 0
    got = read_checkpoint(tmp_path / "a.safetensors")
    assert got.keys() == model.state_dict().keys()
    assert all(torch.equal(got[k], v) for k, v in model.state_dict().items())


def _write_config(folder: Path, **overrides) -> Path:
    config = {"base": "base.safetensors", "models": ["ft0.safetensors", {"path": "ft1.safetensors", "weight": 1.0}],
              "method": "breadcrumbs", "parameters": {"alpha": 0.4, "beta": 0.85, "gamma": 0.01}, **overrides}
    path = folder / "merge.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


def test_the_command_dry_runs_and_merges(models, capsys):
    folder, base, finetuned = models
    config = _write_config(folder)
    assert merge_cli.main([str(config), str(folder / "out"), "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "memory: about" in printed and "model.safetensors" in printed and not (folder / "out").exists()
    assert merge_cli.main([str(config), str(folder / "out"), "--no-progress"]) == 0
    want = merge(base, finetuned[:2], "breadcrumbs", alpha=0.4, beta=0.85, gamma=0.01)
    got = read_checkpoint(folder / "out")
    assert all(torch.equal(got[key], want[key]) for key in want)


@pytest.mark.parametrize(("overrides", "message"), [
    ({"modles": []}, "unknown key\\(s\\) \\['modles'\\]"),
    ({"models": ["missing.safetensors"]}, "models\\[0\\]: .*missing.safetensors does not exist"),
    ({"dtype": "float8"}, "dtype must be one of"),
    ({"shard_size": "big"}, "shard_size must be a size"),
    ({"method": "ties", "parameters": {"alpha": 1.0, "density": 0.2, "granularity": "row", "lambda": 2}}, "unknown hyperparameter"),
    ({"parameters": {"alpha": 0.4, "beta": 0.95, "gamma": 0.1}}, "beta \\+ gamma must be < 1"),
    ({"method": "dare", "parameters": {"alpha": 0.4, "p": 1.5}}, "p must lie in \\[0, 1\\), got p=1.5"),
    ({"method": "no_such_method"}, "no_such_method"),
])
def test_the_command_names_what_is_wrong_in_a_config(models, capsys, overrides, message):
    folder, _, _ = models
    assert merge_cli.main([str(_write_config(folder, **overrides)), str(folder / "out")]) == 1
    assert re.search(message, capsys.readouterr().err)
    assert not (folder / "out").exists()


def test_an_interrupted_command_leaves_nothing_behind(models, monkeypatch, capsys):
    folder, _, _ = models
    _fail_third_write(monkeypatch, KeyboardInterrupt())
    assert merge_cli.main([str(_write_config(folder)), str(folder / "out"), "--no-progress"]) == 130
    assert "interrupted; nothing was written" in capsys.readouterr().err
    assert not (folder / "out").exists() and _leftovers(folder) == []


def test_unreadable_and_unstorable_inputs_are_named(tmp_path, models):
    folder, base, _ = models
    (tmp_path / "notes.pt").write_text("not a model")
    with pytest.raises(ValueError, match="notes.pt: not a readable torch file"):
        open_checkpoint(tmp_path / "notes.pt")
    torch.save({**base, "phase": torch.zeros(2, dtype=torch.complex64)}, tmp_path / "base.pt")
    torch.save({**base, "phase": torch.zeros(2, dtype=torch.complex64)}, tmp_path / "ft.pt")
    with pytest.raises(ValueError, match="tensor 'phase' is torch.complex64, which safetensors cannot store"):
        plan_merge(tmp_path / "base.pt", [ModelInput(tmp_path / "ft.pt")], "task_arithmetic", {"alpha": 1.0})


def test_a_misspelt_model_key_is_named(models, capsys):
    folder, _, _ = models
    config = _write_config(folder, models=[{"path": "ft0.safetensors", "wieght": 0.5}])
    assert merge_cli.main([str(config), str(folder / "out")]) == 1
    assert "models[0] has unknown key(s) ['wieght']" in capsys.readouterr().err


def _torch_folder(folder: Path, state: dict[str, torch.Tensor], layout: str) -> Path:
    """``state`` saved as one of the torch folder layouts people publish models in."""
    folder.mkdir()
    if layout == "pytorch_model.bin":
        torch.save(state, folder / "pytorch_model.bin")
    elif layout == "pytorch_model.bin.index.json":  # a sharded torch folder
        names = sorted(state)
        shards = {"pytorch_model-00001-of-00002.bin": names[:2], "pytorch_model-00002-of-00002.bin": names[2:]}
        for file, part in shards.items():
            torch.save({name: state[name] for name in part}, folder / file)
        weight_map = {name: file for file, part in shards.items() for name in part}
        (folder / "pytorch_model.bin.index.json").write_text(json.dumps({"weight_map": weight_map}))
    elif layout == "open_clip_pytorch_model.bin":  # open_clip's training checkpoint: the weights beside the run's state
        torch.save({"epoch": 3, "name": "run", "state_dict": {f"module.{k}": v for k, v in state.items()},
                    "optimizer": {"state": {}, "param_groups": [{"lr": 1e-5, "params": [0, 1]}]}},
                   folder / "open_clip_pytorch_model.bin")
    else:
        save_state_dict(state, folder / "open_clip_model.safetensors")
    return folder


@pytest.mark.parametrize("layout", ["pytorch_model.bin", "pytorch_model.bin.index.json", "open_clip_pytorch_model.bin",
                                    "open_clip_model.safetensors"])
def test_published_folder_layouts_are_read_as_their_weights(models, layout):
    folder, base, finetuned = models
    inputs = [ModelInput(_torch_folder(folder / f"m{index}", state, layout)) for index, state in enumerate(finetuned[:2])]
    plan = plan_merge(folder / "base.safetensors", inputs, "breadcrumbs", {"alpha": 0.4, "beta": 0.85, "gamma": 0.01})
    out = run_merge(plan, folder / "out", progress=False)
    plan.close()
    want = merge(base, finetuned[:2], "breadcrumbs", alpha=0.4, beta=0.85, gamma=0.01)
    got = read_checkpoint(out)
    assert set(got) == set(want) and all(torch.equal(got[key], want[key]) for key in want)


def test_an_inf_mid_stream_is_named_and_leaves_nothing_behind(models):
    folder, _, finetuned = models
    broken = {**finetuned[2], "blocks.0.attn.bias": finetuned[2]["blocks.0.attn.bias"].clone()}
    broken["blocks.0.attn.bias"][5] = float("-inf")
    save_state_dict(broken, folder / "ft2.safetensors")
    with pytest.raises(ValueError, match="ft2.safetensors: tensor 'blocks.0.attn.bias' .* 1 non-finite"):
        _merge_files(folder, "breadcrumbs", {"alpha": 0.4, "beta": 0.85, "gamma": 0.01})
    assert not (folder / "out").exists() and _leftovers(folder) == []


def test_a_shard_missing_from_an_index_and_a_missing_config_are_named(models, capsys):
    folder, _, finetuned = models
    sharded = _torch_folder(folder / "sharded", finetuned[0], "pytorch_model.bin.index.json")
    (sharded / "pytorch_model-00002-of-00002.bin").unlink()
    with pytest.raises(FileNotFoundError, match="shard\\(s\\) listed in the index are missing: pytorch_model-00002"):
        plan_merge(folder / "base.safetensors", [ModelInput(sharded)], "task_arithmetic", {"alpha": 1.0})
    assert merge_cli.main([str(folder / "nowhere.yaml"), str(folder / "out")]) == 1
    assert "config not found: " in capsys.readouterr().err and not (folder / "out").exists()
