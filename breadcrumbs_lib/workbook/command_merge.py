"""A workbench's merge done the way a user merges their own checkpoints: files on disk, a YAML
config and the ``breadcrumbs-merge`` command (:mod:`breadcrumbs_lib.cli.merge`), run as a
separate process exactly as from a shell."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..checkpoints.sources import read_checkpoint
from ..core.state_dicts import StateDict, save_state_dict
from ..worlds.workbench import AnyWorkbench, finetuned_path


@dataclass(frozen=True)
class CommandMerge:
    """What the command was given and what it printed and wrote."""

    config: Path
    out: Path
    dry_run: str  # what ``--dry-run`` printed: inputs, output, memory
    weights: StateDict  # the merged model it wrote, loaded back


def merge_through_command(bench: AnyWorkbench, tasks: Sequence[str], method: str, settings: Mapping[str, Any],
                          folder: Path) -> CommandMerge:
    """Merge ``tasks`` of ``bench`` with ``method`` at ``settings`` by ``breadcrumbs-merge``.

    The base (the foundation's weights ``theta``) is written to ``folder/base.safetensors``; the
    fine-tuned models are the workbench's cached files where it has them (written to ``folder``
    otherwise). The command runs twice, with ``--dry-run`` and then for real, into ``folder/merged``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    base = save_state_dict(bench.base, folder / "base.safetensors")
    models = [_finetuned_file(bench, task, folder) for task in tasks]
    config = folder / "merge.yaml"
    config.write_text(yaml.safe_dump({"base": str(base), "models": [str(path) for path in models],
                                      "method": method, "parameters": dict(settings)}, sort_keys=False))
    out = folder / "merged"
    dry_run = _run([str(config), str(out), "--dry-run"])
    _run([str(config), str(out), "--overwrite", "--no-progress"])
    return CommandMerge(config, out, dry_run, read_checkpoint(out))


def _finetuned_file(bench: AnyWorkbench, task: str, folder: Path) -> Path:
    cached = None if bench.folder is None else finetuned_path(bench.folder, task)
    if cached is not None and cached.is_file():
        return cached
    return save_state_dict(bench.finetuned[task], folder / f"{task}.safetensors")


def _run(arguments: list[str]) -> str:
    """``breadcrumbs-merge ARGUMENTS`` in a new process (this Python's), its output; its error
    message in a ``RuntimeError`` if it fails."""
    done = subprocess.run([sys.executable, "-m", "breadcrumbs_lib.cli.merge", *arguments],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"breadcrumbs-merge {' '.join(arguments)} failed:\n{done.stderr.strip()}")
    return done.stdout.strip()
