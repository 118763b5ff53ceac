"""The paper's reported numbers, for the workbook's side-by-side summary (values in %).

Sources: the paper (``../shared/reference/paper.txt``, sections 4.2 and 4.4) for the merged
models, and the authors' published ViT-B/32 fine-tuned and zero-shot accuracies.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Reported:
    """One figure the paper reports: ``value`` in %, and what it measures: ``"accuracy"`` (mean
    absolute test accuracy over the tasks) or ``"normalized"`` (mean normalized accuracy, eq. 3)."""

    value: float
    measure: str

    def __str__(self) -> str:
        return f"{self.value:.2f} ({self.measure})"


#: ViT-B/32, eight tasks, by the headline table's ``method``: the zero-shot foundation's and the
#: fine-tuned models' mean absolute accuracy, and the 8-task merges' mean normalized accuracy under
#: their best hyperparameters (section 4.2).
PAPER_B32 = {
    "zeroshot": Reported(48.1, "accuracy"),
    "finetuned": Reported(round((99.69 + 96.11 + 79.41 + 98.73 + 97.46 + 74.98 + 99.70 + 77.66) / 8, 2), "accuracy"),
    "task_arithmetic": Reported(75.33, "normalized"),
    "breadcrumbs": Reported(83.00, "normalized"),
}
#: ViT-L/14, eight tasks, Breadcrumbs, mean normalized accuracy.
PAPER_L14_BREADCRUMBS_NORMALIZED = 91.48
