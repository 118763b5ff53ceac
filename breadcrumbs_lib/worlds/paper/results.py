"""The paper's reported numbers, for the workbook's side-by-side summary (values in %).

Sources: the paper (``../shared/reference/paper.txt``, sections 4.2 and 4.4) for the merged
models, and the authors' published ViT-B/32 fine-tuned and zero-shot accuracies.
"""

from __future__ import annotations

#: ViT-B/32, eight tasks: mean absolute accuracy (zero-shot, fine-tuned) and mean normalized
#: accuracy of the 8-task merges under their best hyperparameters.
PAPER_B32 = {
    "zero-shot accuracy": 48.1,
    "fine-tuned accuracy": round((99.69 + 96.11 + 79.41 + 98.73 + 97.46 + 74.98 + 99.70 + 77.66) / 8, 2),
    "task arithmetic, 8 tasks, normalized": 75.33,
    "breadcrumbs, 8 tasks, normalized": 83.00,
}
#: ViT-L/14, eight tasks, Breadcrumbs, mean normalized accuracy.
PAPER_L14_BREADCRUMBS_NORMALIZED = 91.48
