"""analysis.headline on a hand-made table with known answers."""

from __future__ import annotations

import pandas as pd
import pytest

from breadcrumbs_lib.study.results_store import tidy_records
from breadcrumbs_lib.workbook.analysis import headline

TASKS = ["a", "b"]


def records(method: str, setting: str, subset: str, val: float, test: float) -> list[dict]:
    return [{"run_id": "r", "size": "B-32", "method": method, "hyperparameters": setting, "subset": subset,
             "scored_task": task, "split": split, "accuracy": score / 2, "normalized_accuracy": score}
            for task in TASKS for split, score in (("val", val), ("test", test))]


def test_the_headline_chooses_on_val_reports_test_and_types_its_columns():
    rows = (records("zeroshot", "{}", "", 0.5, 0.4) + records("finetuned", "{}", "a", 1.0, 1.0)
            + records("task_arithmetic", '{"alpha": 0.3}', "a+b", 0.7, 0.6)
            + records("task_arithmetic", '{"alpha": 0.5}', "a+b", 0.6, 0.9)
            + records("breadcrumbs", '{"alpha": 0.5, "beta": 0.0, "gamma": 0.0}', "a+b", 0.9, 0.9)
            + records("breadcrumbs", '{"alpha": 0.5, "beta": 0.85, "gamma": 0.01}', "a+b", 0.8, 0.7))
    table = headline(tidy_records(pd.DataFrame(rows)), TASKS).set_index("method")
    assert table.loc["zeroshot", "n_tasks"] == 0 and table.loc["zeroshot", "accuracy"] == pytest.approx(0.2)
    assert table.loc["task_arithmetic", "alpha"] == 0.3  # best on val, though alpha 0.5 scores more on test
    assert table.loc["task_arithmetic", "normalized_accuracy"] == pytest.approx(0.6)
    # beta = gamma = 0 is task arithmetic: it is not the Breadcrumbs row, however well it scores
    assert (table.loc["breadcrumbs", "beta"], table.loc["breadcrumbs", "gamma"]) == (0.85, 0.01)
    assert table.loc["breadcrumbs", "model"] == "breadcrumbs, 2 tasks" and table.loc["breadcrumbs", "n_tasks"] == 2
