"""``breadcrumbs-merge CONFIG.yaml OUT/``: merge models on disk, one tensor at a time.

The config (paths are relative to the config's folder)::

    base: openai-vit-b32/                 # a file, a Hugging Face folder or an index.json
    models:
      - finetuned/cars.safetensors        # a path ...
      - path: finetuned/dtd/              # ... or a path with options
        weight: 0.5                       # scales this model's task vector (default 1)
    method: breadcrumbs                   # any method of breadcrumbs_lib.merge
    parameters: {alpha: 0.3, beta: 0.85, gamma: 0.01}
    dtype: bfloat16                       # of the output (default: the base's)
    shard_size: 5GB                       # largest output file (default 5GB)

A method that needs data per model names it beside the model (Fisher merging:
``fishers: fisher/cars.safetensors``). ``--dry-run`` prints what would be read and written and
the memory needed, and writes nothing.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import yaml

from ..checkpoints.streaming import DEFAULT_SHARD_BYTES, ModelInput, plan_merge, run_merge
from ..core.merging import METHODS

#: Output dtypes by name.
DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
          "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}
KEYS = ("base", "models", "method", "parameters", "dtype", "shard_size")
#: Per-model inputs that some methods take (Fisher merging's ``fishers``), by name.
MODEL_INPUTS = tuple(sorted({name for spec in METHODS.values() for name in spec.inputs}))
MODEL_KEYS = ("path", "weight", *MODEL_INPUTS)
_UNITS = {"": 1, "B": 1, "KB": 1000, "MB": 1000**2, "GB": 1000**3, "KIB": 1024, "MIB": 1024**2, "GIB": 1024**3}


class ConfigError(ValueError):
    """A config that cannot be merged: the message names the file and the key."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="breadcrumbs-merge", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", type=Path, help="the merge's YAML config")
    parser.add_argument("out", type=Path, help="the output folder (written under a temporary name, renamed when complete)")
    parser.add_argument("--dry-run", action="store_true", help="print what would be read and written, and the memory needed")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        config = read_config(args.config)
        plan = plan_merge(config["base"], config["models"], config["method"], config["parameters"],
                          dtype=config["dtype"], shard_bytes=config["shard_bytes"])
        try:
            print(plan.describe())
            if args.dry_run:
                return 0
            out = run_merge(plan, args.out, overwrite=args.overwrite, progress=not args.no_progress)
        finally:
            plan.close()
    except KeyboardInterrupt:
        print("breadcrumbs-merge: interrupted; nothing was written", file=sys.stderr)
        return 130
    except (OSError, ValueError) as error:  # FileNotFoundError, FileExistsError and yaml's errors among them
        print(f"breadcrumbs-merge: error: {error}", file=sys.stderr)
        return 1
    print(f"wrote {out}")
    return 0


def read_config(path: Path) -> dict[str, Any]:
    """The checked contents of a merge config (see the module), paths resolved."""
    if not path.is_file():
        raise FileNotFoundError(f"config not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({error})") from error
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{path}: the config must be a mapping with keys {list(KEYS)}")
    unknown = [key for key in raw if key not in KEYS]
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {unknown}; a config has {list(KEYS)}")
    for key in ("base", "models", "method"):
        if key not in raw:
            raise ConfigError(f"{path}: missing key {key!r}")
    folder = path.parent
    if not isinstance(raw["method"], str):
        raise ConfigError(f"{path}: 'method' must be a method's name, got {raw['method']!r}")
    parameters = raw.get("parameters") or {}
    if not isinstance(parameters, Mapping):
        raise ConfigError(f"{path}: 'parameters' must be a mapping of names to values, got {parameters!r}")
    models = raw["models"]
    if not isinstance(models, list) or not models:
        raise ConfigError(f"{path}: 'models' must be a non-empty list of paths or {{path: ..., weight: ...}}")
    return {
        "base": _path(raw["base"], folder, path, "base"),
        "models": [_model(item, folder, path, index) for index, item in enumerate(models)],
        "method": raw["method"],
        "parameters": dict(parameters),
        "dtype": _dtype(raw.get("dtype"), path),
        "shard_bytes": _size(raw.get("shard_size"), path),
    }


def _model(item: object, folder: Path, config: Path, index: int) -> ModelInput:
    where = f"models[{index}]"
    if isinstance(item, str):
        return ModelInput(_path(item, folder, config, where))
    if not isinstance(item, Mapping) or "path" not in item:
        raise ConfigError(f"{config}: {where} must be a path or a mapping with 'path', got {item!r}")
    weight = item.get("weight", 1.0)
    if isinstance(weight, bool) or not isinstance(weight, (int, float)):
        raise ConfigError(f"{config}: {where}.weight must be a number, got {weight!r}")
    unknown = [key for key in item if key not in MODEL_KEYS]
    if unknown:
        raise ConfigError(f"{config}: {where} has unknown key(s) {unknown}; a model has 'path', 'weight' "
                          f"and the per-model inputs of the methods that need them ({', '.join(MODEL_INPUTS)})")
    inputs = {key: _path(value, folder, config, f"{where}.{key}") for key, value in item.items() if key in MODEL_INPUTS}
    return ModelInput(_path(item["path"], folder, config, f"{where}.path"), float(weight), inputs)


def _path(value: object, folder: Path, config: Path, where: str) -> Path:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{config}: {where} must be a path, got {value!r}")
    path = Path(value).expanduser()
    path = path if path.is_absolute() else folder / path
    if not path.exists():
        raise FileNotFoundError(f"{config}: {where}: {path} does not exist")
    return path


def _dtype(value: object, config: Path) -> torch.dtype | None:
    if value is None:
        return None
    if not isinstance(value, str) or value not in DTYPES:
        raise ConfigError(f"{config}: dtype must be one of {sorted(DTYPES)} (or absent: the base's), got {value!r}")
    return DTYPES[value]


def _size(value: object, config: Path) -> int:
    if value is None:
        return DEFAULT_SHARD_BYTES
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]i?B|B)?\s*", str(value), flags=re.IGNORECASE)
    if not match or float(match.group(1)) <= 0:
        raise ConfigError(f"{config}: shard_size must be a size such as 2GB, 500MB or 2GiB, got {value!r}")
    return int(float(match.group(1)) * _UNITS[(match.group(2) or "").upper()])


if __name__ == "__main__":
    sys.exit(main())
