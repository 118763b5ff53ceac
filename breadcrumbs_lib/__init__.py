"""breadcrumbs_lib: the helper library of the Model Breadcrumbs workbook.

Core API:

* :func:`reference_breadcrumbs_mask` — the paper's definition of the keep-mask of one
  task-vector tensor (a full sort), and :func:`breadcrumbs_mask` — the same mask in O(n).
* :class:`TaskVector` — ``tau = theta' - theta`` in float32, with arithmetic and masking.
* :func:`merge` — merge fine-tuned models: ``task_arithmetic``, ``breadcrumbs``, ``average``,
  ``ties``, ``breadcrumbs_ties``, ``dare``, ``fisher``.
* :func:`load_state_dict` / :func:`save_state_dict` — checked, atomic checkpoint I/O.

The package is layered; each layer imports only the ones above it in this list:

* :mod:`.core`: the paper's math (state dicts, task vectors, masks, merge methods);
* :mod:`.checkpoints`: model files on disk (safetensors, Hugging Face folders, torch state
  dicts) read one tensor at a time, and the streaming merge of :func:`.checkpoints.plan_merge`
  and :func:`.checkpoints.run_merge`;
* :mod:`.modeling`: CLIP models, the frozen-head classifier, data tensors, training, evaluation;
* :mod:`.worlds`: presets and the worlds they build (``mini`` generated here, ``paper``), and
  :func:`.worlds.prepare.prepare` (foundation, heads, data, fine-tuned models, cached);
* :mod:`.study`: sweeps of task subsets x hyperparameter grids into the results store,
  selection on validation, the fidelity diagnostics;
* :mod:`.workbook`: the notebooks' runtime, what they show, and the papermill runner;
* :mod:`.cli`: the console scripts ``breadcrumbs-merge`` and ``breadcrumbs-convert``.

``tests/test_layers.py`` checks the order.
"""

from importlib.metadata import PackageNotFoundError, version

from .core.masks import GRANULARITIES, breadcrumbs_mask, reference_breadcrumbs_mask
from .core.merging import METHODS, merge
from .core.state_dicts import load_state_dict, save_state_dict
from .core.task_vectors import TaskVector

try:
    __version__ = version("breadcrumbs-workbook")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "GRANULARITIES",
    "METHODS",
    "TaskVector",
    "breadcrumbs_mask",
    "load_state_dict",
    "merge",
    "reference_breadcrumbs_mask",
    "save_state_dict",
    "__version__",
]
