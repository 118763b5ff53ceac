"""The paper's metric, normalized accuracy (eq. 3).

A merged model is scored on each task ``t`` relative to the model fine-tuned on ``t`` alone::

    normalized_t = acc_t(merged) / acc_t(theta'_t)

and a merge's headline number is the mean of ``normalized_t`` over the tasks it merges. A value of
1 means the merge keeps everything fine-tuning taught that task; it can exceed 1.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def normalized_accuracy(accuracy: ArrayLike, finetuned_accuracy: ArrayLike) -> float | np.ndarray:
    """``accuracy / finetuned_accuracy`` (eq. 3), elementwise for arrays; NaN where the fine-tuned
    accuracy is zero or less (a task fine-tuning did not learn has nothing to normalise by)."""
    accuracy, reference = np.asarray(accuracy, dtype=np.float64), np.asarray(finetuned_accuracy, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(reference > 0, accuracy / reference, np.nan)
    return float(ratio) if ratio.ndim == 0 else ratio
