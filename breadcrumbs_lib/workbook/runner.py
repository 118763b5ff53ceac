"""Run the whole workbook for a preset through papermill, in order.

    python -m breadcrumbs_lib.workbook.runner --preset mini [-p NAME VALUE ...] [-f params.yaml]
                                              [--only 01 04] [--all] [--outputs DIR]

Each ``notebooks/NN-*.ipynb`` (but the opt-in ones of :data:`OPT_IN`, unless asked for) is
executed with the parameters given (papermill's usual ``-p``, values read as YAML, and ``-f``
files; the preset is passed as the ``preset`` parameter) and written, executed, to ``outputs/<preset>/notebooks/``; figures, tables and the summary land in
``outputs/<preset>/`` too. One progress line per notebook. The run stops at the first notebook
that fails, and keeps its executed copy so that the error can be read in place.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import papermill
import yaml

from ..paths import OUTPUTS_DIR, PROJECT_ROOT, output_dir
from ..worlds.presets import RUNS
from .notebook import OUTPUTS_ENV

NOTEBOOKS_DIR = PROJECT_ROOT / "notebooks"
#: The Jupyter kernel the notebooks name (``make lab`` registers it: the project's ``.venv``).
KERNEL_NAME = "breadcrumbs-workbook"
#: What a smoke run injects into each notebook: the small ``smoke`` preset, sweeps in-process.
SMOKE_PARAMETERS = {"preset": "smoke", "executor": "inline"}
#: Smaller grids for the notebooks whose default grids would make up most of the test suite's
#: time (10: 104 settings times 15 subsets, each merged and scored): every step still runs,
#: on fewer settings.
SMOKE_GRIDS = {"10": {"alphas": [0.3, 0.6, 1.0], "betas": [0.85, 0.9], "gammas": [0.0, 0.01]}}
#: Notebooks a run skips unless ``--only`` names them (or ``--all`` is given): each builds a world
#: of its own (09: a foundation and 20 small models, about 10 minutes; 10: a T5 world, about 14),
#: which would take the default run past its 30 minutes on a 2-core CPU (the README gives their
#: cost). The tests (nbval) run them like the others.
OPT_IN = ("09", "10")


def notebooks(folder: Path = NOTEBOOKS_DIR) -> list[Path]:
    """The numbered notebooks, in order."""
    return sorted(folder.glob("[0-9][0-9]-*.ipynb"))


def prepare_smoke_copies(destination: Path, folder: Path = NOTEBOOKS_DIR) -> list[Path]:
    """Copies of the notebooks of ``folder`` in ``destination``, each with
    :data:`SMOKE_PARAMETERS` (and its :data:`SMOKE_GRIDS`) injected after its parameters cell by papermill (not executed):
    what nbval checks, so the tests run the notebooks' real parameters cell."""
    destination.mkdir(parents=True, exist_ok=True)
    prepared = []
    for path in notebooks(folder):
        copy = destination / path.name
        parameters = {**SMOKE_PARAMETERS, **SMOKE_GRIDS.get(path.name[:2], {})}
        papermill.execute_notebook(str(path), str(copy), parameters=parameters, prepare_only=True,
                                   kernel_name=KERNEL_NAME, progress_bar=False)
        prepared.append(copy)
    return prepared


def _selected(number: str, only: list[str] | None, opt_in: bool) -> bool:
    """Whether notebook ``number`` runs: named by ``only`` if given, else unless it is opt-in."""
    if only:
        return number in only
    return opt_in or number not in OPT_IN


def run(preset: str, parameters: dict, *, only: list[str] | None = None, outputs_root: Path = OUTPUTS_DIR,
        kernel: str = KERNEL_NAME, folder: Path = NOTEBOOKS_DIR, opt_in: bool = False) -> bool:
    """Execute the notebooks of ``folder`` in order (those of :data:`OPT_IN` only when ``only``
    names them or ``opt_in`` is set); True when all succeeded."""
    selected = [path for path in notebooks(folder) if _selected(path.name[:2], only, opt_in)]
    if not selected:
        raise SystemExit(f"no notebook matches {only} in {folder}")
    previous = os.environ.get(OUTPUTS_ENV)
    os.environ[OUTPUTS_ENV] = str(Path(outputs_root).resolve())  # figures and store follow --outputs
    try:
        return _execute_in_order(selected, preset, {**parameters, "preset": preset}, outputs_root, kernel, folder)
    finally:
        if previous is None:
            os.environ.pop(OUTPUTS_ENV, None)
        else:
            os.environ[OUTPUTS_ENV] = previous


def _execute_in_order(selected: list[Path], preset: str, parameters: dict, outputs_root: Path, kernel: str,
                      folder: Path) -> bool:
    """Run ``selected`` one after the other, one progress line each; stop at the first failure."""
    destination = output_dir(preset, outputs_root) / "notebooks"
    destination.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    for index, path in enumerate(selected, 1):
        executed = destination / path.name
        start = time.perf_counter()
        print(f"[{index}/{len(selected)}] {path.stem} ...", flush=True)
        try:
            papermill.execute_notebook(str(path), str(executed), parameters=parameters, kernel_name=kernel,
                                       cwd=str(folder), progress_bar=False)
        except papermill.PapermillExecutionError as error:
            print(f"[{index}/{len(selected)}] {path.stem} FAILED after {time.perf_counter() - start:.0f} s: "
                  f"{error.ename}: {error.evalue}")
            print(f"the executed notebook, with the error in place: {executed}")
            return False
        print(f"[{index}/{len(selected)}] {path.stem} done in {time.perf_counter() - start:.0f} s", flush=True)
    print(f"all {len(selected)} notebooks in {time.perf_counter() - began:.0f} s; outputs in {destination.parent}")
    return True


def parse_parameters(pairs: list[list[str]], files: list[str]) -> dict:
    """Parameters from ``-f`` YAML files, then ``-p NAME VALUE`` pairs (values parsed as YAML)."""
    parameters: dict = {}
    for file in files:
        if not Path(file).is_file():
            raise SystemExit(f"parameters file {file}: no such file")
        content = _read_yaml(Path(file).read_text(), f"parameters file {file}") or {}
        if not isinstance(content, dict):
            raise SystemExit(f"parameters file {file}: expected a mapping of parameter names to values")
        parameters.update(content)
    for name, value in pairs:  # "None" as papermill reads it, the rest as YAML
        parameters[name] = None if value == "None" else _read_yaml(value, f"-p {name}")
    return parameters


def _read_yaml(text: str, source: str):
    """``text`` parsed as YAML; a clear exit naming ``source`` when it is not valid YAML."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise SystemExit(f"{source}: not valid YAML ({error})") from error


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="mini", choices=sorted(RUNS))
    parser.add_argument("-p", "--parameters", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    parser.add_argument("-f", "--parameters-file", action="append", default=[], metavar="YAML")
    parser.add_argument("--only", nargs="+", metavar="NN", help="run only these notebook numbers (e.g. 01 04)")
    parser.add_argument("--all", action="store_true", help=f"also run the opt-in notebooks ({', '.join(OPT_IN)})")
    parser.add_argument("--outputs", type=Path, default=OUTPUTS_DIR, help="outputs root (default: outputs/)")
    args = parser.parse_args(argv)
    parameters = parse_parameters(args.parameters, args.parameters_file)
    if not run(args.preset, parameters, only=args.only, outputs_root=args.outputs, opt_in=args.all):
        sys.exit(1)


if __name__ == "__main__":
    main()
