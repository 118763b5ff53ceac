"""breadcrumbs_lib: the helper library of the Model Breadcrumbs workbook.

Core API:

* :func:`breadcrumbs_mask` — the Model Breadcrumbs keep-mask of one task-vector tensor.
* :class:`TaskVector` — ``tau = theta' - theta`` in float32, with arithmetic and masking.
* :func:`merge` — merge fine-tuned models: ``task_arithmetic``, ``breadcrumbs``, ``average``,
  ``ties``, ``dare``.
* :func:`load_state_dict` / :func:`save_state_dict` — checked, atomic checkpoint I/O.

For studies: :mod:`.pipeline` (``prepare``: foundation, heads, data, fine-tuned models),
:mod:`.sweeps` (task subsets x hyperparameter grids into :mod:`.results_store`), :mod:`.tuning`
(hyperparameter selection), :mod:`.analysis` and :mod:`.plots` (what the notebooks show), and
:mod:`.workbook` / :mod:`.notebook_runner` (the notebooks' runtime and the papermill runner).
"""

from importlib.metadata import PackageNotFoundError, version

from .masks import GRANULARITIES, breadcrumbs_mask
from .merging import METHODS, merge
from .state_dicts import load_state_dict, save_state_dict
from .task_vectors import TaskVector

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
    "save_state_dict",
    "__version__",
]
