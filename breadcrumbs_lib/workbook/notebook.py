"""What every notebook of the workbook starts with: its parameters, outputs and sweep runner.

    nb = workbook.start("04-merging", preset=preset, size=size, seed=seed, executor=executor)
    bench = nb.bench()                        # foundation, heads, splits, fine-tuned models
    frame = nb.sweep([Sweep(...), ...])       # results from outputs/<preset>/results.sqlite
    nb.save_figure(fig, "subsets")            # outputs/<preset>/figures/04-merging-subsets.png

Smoke runs take the path users take: papermill injects ``preset = "smoke"`` and
``executor = "inline"`` into a copy of a notebook (:data:`.runner.SMOKE_PARAMETERS`), and the
small ``smoke`` preset runs each of its steps for real in seconds (``notebooks/conftest.py``).
"""

from __future__ import annotations

import atexit
import os
from concurrent.futures import Executor
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

from ..modeling.devices import seed_everything
from ..paths import DEFAULT_CACHE_DIR, OUTPUTS_DIR, output_dir
from ..study import fidelity_study
from ..study.results_store import ResultsStore, default_store_path
from ..study.sweep_units import SweepContext, workbench_for
from ..study.executors import InlineExecutor, dask_executor, local_processes, threads_per_worker
from ..study.run_identity import run_identity
from ..study.sweep_spec import Sweep
from ..study.sweeps import run_selection_sweep, run_sweep
from ..worlds.presets import Preset, get_preset
from ..worlds.workbench import AnyWorkbench

OUTPUTS_ENV = "BREADCRUMBS_OUTPUTS"  # the runner's --outputs, seen by the kernels it starts
EXECUTORS = ("processes", "inline", "dask")


@dataclass
class Notebook:
    """One notebook's run: preset, size, seed, where sweeps execute and where outputs go."""

    name: str
    preset: str
    size: str
    seed: int
    executor: str
    workers: int | None
    outputs: Path
    cache_dir: Path
    data_root: str | None = None  # paper preset: the datasets folder
    finetuned_dir: str | None = None  # paper preset: ready-made fine-tuned models
    weights: dict[str, str] = field(default_factory=dict)  # paper preset: size -> CLIP weights file
    download: bool = False  # paper preset: let open_clip download missing weights
    _resources: ExitStack = field(default_factory=ExitStack, repr=False)
    _executor: Executor | None = field(default=None, repr=False)

    def context(self, size: str | None = None, *, preset: Preset | None = None) -> SweepContext:
        """The sweep context of this run (for another model ``size``, or another world of the
        same run such as the many-task one, ``preset``, if given)."""
        threads = threads_per_worker(self.workers) if self.executor == "processes" else None
        return SweepContext(preset or get_preset(self.preset), size or self.size, seed=self.seed,
                            cache_dir=str(self.cache_dir), threads=threads, data_root=self.data_root,
                            finetuned_dir=self.finetuned_dir, weights=tuple(sorted(self.weights.items())),
                            download=self.download)

    def bench(self, size: str | None = None, *, preset: Preset | None = None) -> AnyWorkbench:
        """The workbench (built on first use and cached in ``data/cache``)."""
        return workbench_for(replace(self.context(size, preset=preset), threads=None))

    @property
    def store(self) -> ResultsStore:
        return ResultsStore(default_store_path(self.preset, self.outputs.parent))

    def sweep(self, sweeps: Sweep | list[Sweep], *, size: str | None = None, preset: Preset | None = None) -> pd.DataFrame:
        """Run (or read back) ``sweeps``: the run's records for their methods and the baselines."""
        return run_sweep(sweeps, self.context(size, preset=preset), store=self.store, **self.sweep_options())

    def sweep_options(self) -> dict[str, object]:
        """The executor and worker count of this run's sweeps, for studies that run their own
        (``study(context, store=nb.store, **nb.sweep_options())``)."""
        return {"executor": self._pool(), "workers": self.workers}

    def selection_sweep(self, sweeps: Sweep | list[Sweep], *, size: str | None = None,
                        preset: Preset | None = None) -> pd.DataFrame:
        """Grids on the validation splits, then each subset's best setting on the test splits
        (see :func:`breadcrumbs_lib.study.sweeps.run_selection_sweep`)."""
        return run_selection_sweep(sweeps, self.context(size, preset=preset), store=self.store, executor=self._pool(),
                                   workers=self.workers)

    def measure_claims(self, *, size: str | None = None, preset: Preset | None = None) -> dict[str, float]:
        """The measurements of the claims table for this run, or for another world of it (``preset``;
        see :func:`breadcrumbs_lib.study.fidelity_study.measure`; its sweeps go through the results
        store like every other)."""
        return fidelity_study.measure(self.context(size, preset=preset), store=self.store, executor=self._pool(),
                                      workers=self.workers)

    def save_figure(self, fig: Figure, name: str) -> Path:
        """Save ``fig`` as ``figures/<notebook>-<name>.png`` under the preset's outputs."""
        path = self.outputs / "figures" / f"{self.name}-{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120, bbox_inches="tight")
        return path

    def save_table(self, table: pd.DataFrame, name: str) -> Path:
        """Save ``table`` as ``tables/<notebook>-<name>.csv`` under the preset's outputs (written
        whole or not at all: a crash leaves the previous file)."""
        path = self.outputs / "tables" / f"{self.name}-{name}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".csv.partial")
        table.to_csv(partial, index=False)
        os.replace(partial, path)
        return path

    def read_table(self, notebook: str, name: str) -> pd.DataFrame:
        """A table that notebook ``notebook`` (e.g. ``"08-ablations"``) saved as ``name`` under this
        preset's outputs. Where it has ``size`` / ``seed`` columns, they must be this run's.

        Raises ``FileNotFoundError`` when that notebook has not saved it, ``ValueError`` when it
        was saved by a run of another size or seed; both say which notebook to run first."""
        path = self.outputs / "tables" / f"{notebook}-{name}.csv"
        rerun = f"run notebook {notebook} first with preset {self.preset!r}, size {self.size!r}, seed {self.seed}"
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such table; {rerun}")
        table = pd.read_csv(path)
        for column, value in (("size", self.size), ("seed", self.seed)):
            if column in table and set(table[column]) != {value}:
                raise ValueError(f"{path}: its {column} is {sorted(set(table[column]))}, this run's is {value!r}; {rerun}")
        return table

    def run_id(self, size: str | None = None) -> str:
        """The identity of this run's results in the store (checkpoint digests, seed, ...)."""
        context = self.context(size)
        return run_identity(context, self.bench(size)).run_id

    def save_summary(self, table: pd.DataFrame) -> tuple[Path, Path]:
        """Write ``summary.csv`` and ``summary.md`` under the preset's outputs."""
        self.outputs.mkdir(parents=True, exist_ok=True)
        csv, markdown = self.outputs / "summary.csv", self.outputs / "summary.md"
        table.to_csv(csv, index=False)
        markdown.write_text(markdown_table(table) + "\n")
        return csv, markdown

    def _pool(self) -> Executor:
        """One executor for all of this notebook's sweeps, so workers keep their caches."""
        if self._executor is None:
            if self.executor == "inline":
                self._executor = InlineExecutor()
            elif self.executor == "dask":
                self._executor = self._resources.enter_context(dask_executor(n_workers=self.workers))
            else:
                self._executor = self._resources.enter_context(local_processes(self.workers))
            atexit.register(self._resources.close)
        return self._executor


def markdown_table(table: pd.DataFrame, *, digits: int = 1) -> str:
    """``table`` as a GitHub Markdown table (floats rounded to ``digits``)."""
    def cell(value) -> str:
        return f"{value:.{digits}f}" if isinstance(value, float) else str(value)
    lines = ["| " + " | ".join(map(str, table.columns)) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines)


def start(name: str, *, preset: str = "mini", size: str = "B-32", seed: int = 0, executor: str = "processes",
          workers: int | None = None, outputs_root: str | Path | None = None,
          cache_dir: str | Path = DEFAULT_CACHE_DIR, data_root: str | Path | None = None,
          finetuned_dir: str | Path | None = None, weights: str | Path | dict[str, str] | None = None,
          download: bool = False) -> Notebook:
    """Seed everything and return the notebook's run.

    ``outputs_root`` defaults to ``$BREADCRUMBS_OUTPUTS`` or ``outputs/``. ``data_root``,
    ``finetuned_dir``, ``weights`` (a CLIP weights file for ``size``, or ``{size: file}``) and
    ``download`` serve the ``paper`` preset (see :func:`.worlds.prepare.prepare`).
    """
    outputs_root = outputs_root or os.environ.get(OUTPUTS_ENV) or OUTPUTS_DIR
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; expected one of {EXECUTORS}")
    get_preset(preset)  # fail fast on an unknown preset name
    seed_everything(seed)
    plt.rcParams["figure.max_open_warning"] = 0
    if weights is not None and not isinstance(weights, dict):
        weights = {size: str(weights)}
    return Notebook(name, preset, size, seed, executor, workers, output_dir(preset, outputs_root), Path(cache_dir),
                    None if data_root is None else str(data_root), None if finetuned_dir is None else str(finetuned_dir),
                    {str(k): str(v) for k, v in (weights or {}).items()}, bool(download))
