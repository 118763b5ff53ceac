"""Hyperparameter selection helpers on a hand-made table with known answers."""

from __future__ import annotations

import pandas as pd
import pytest

from breadcrumbs_lib.study.results_store import tidy_records
from breadcrumbs_lib.study.tuning import best_per_size, best_per_subset, subset_scores, validation_free

LOW, HIGH = '{"alpha": 0.2}', '{"alpha": 0.8}'
TASKS = ("a", "b", "c")


def table(scores: dict[tuple[str, str, str], float]) -> pd.DataFrame:
    """Records where every model scores ``scores[(setting, subset, split)]`` on its observed tasks
    and 0.1 on the others."""
    rows = []
    for (setting, subset, split), value in scores.items():
        for task in TASKS:
            observed = task in subset.split("+")
            rows.append({"run_id": "r", "size": "B-32", "method": "breadcrumbs", "hyperparameters": setting,
                         "subset": subset, "scored_task": task, "split": split,
                         "accuracy": value if observed else 0.1, "normalized_accuracy": value if observed else 0.1})
    return tidy_records(pd.DataFrame(rows))


SCORES = {
    # on one task, the low alpha wins on val and on test
    (LOW, "a", "val"): 0.9, (HIGH, "a", "val"): 0.8, (LOW, "a", "test"): 0.85, (HIGH, "a", "test"): 0.7,
    # on two and three tasks, the high alpha wins on val, but the low one would have won on test
    (LOW, "a+b", "val"): 0.6, (HIGH, "a+b", "val"): 0.7, (LOW, "a+b", "test"): 0.65, (HIGH, "a+b", "test"): 0.6,
    (LOW, "a+b+c", "val"): 0.5, (HIGH, "a+b+c", "val"): 0.55, (LOW, "a+b+c", "test"): 0.4, (HIGH, "a+b+c", "test"): 0.5,
    (LOW, "b", "val"): 0.7, (HIGH, "b", "val"): 0.7, (LOW, "b", "test"): 0.6, (HIGH, "b", "test"): 0.9,
}


def test_subset_scores_average_observed_or_all_tasks():
    scores = subset_scores(table(SCORES))
    row = scores[(scores["subset"] == "a") & (scores["hyperparameters"] == LOW) & (scores["split"] == "val")]
    assert row["score"].item() == pytest.approx(0.9)
    everything = subset_scores(table(SCORES), scope="all")
    row = everything[(everything["subset"] == "a") & (everything["hyperparameters"] == LOW) & (everything["split"] == "val")]
    assert row["score"].item() == pytest.approx((0.9 + 0.1 + 0.1) / 3)


def test_best_per_subset_chooses_on_val_and_reports_test():
    best = best_per_subset(table(SCORES)).set_index("subset")
    assert best.loc["a", "hyperparameters"] == LOW and best.loc["a", "score"] == pytest.approx(0.85)
    assert best.loc["a+b", "hyperparameters"] == HIGH and best.loc["a+b", "score"] == pytest.approx(0.6)
    assert best.loc["a+b", "selection_score"] == pytest.approx(0.7)
    # a tie on val (0.7 = 0.7) goes to the first setting in canonical order: alpha 0.2
    assert best.loc["b", "hyperparameters"] == LOW and best.loc["b", "score"] == pytest.approx(0.6)


def test_best_per_size_picks_one_setting_per_number_of_tasks():
    best = best_per_size(table(SCORES)).set_index("n_tasks")
    # one task: subsets a and b; mean val LOW (0.9 + 0.7) / 2 = 0.8 > HIGH 0.75
    assert best.loc[1, "hyperparameters"] == LOW and best.loc[1, "selection_score"] == pytest.approx(0.8)
    assert best.loc[1, "score"] == pytest.approx((0.85 + 0.6) / 2)
    assert best.loc[2, "hyperparameters"] == HIGH


def test_validation_free_keeps_the_setting_tuned_on_the_first_tasks():
    result = validation_free(table(SCORES), TASKS, tuned_on=(1, 2))
    tuned_on_one = result[result["tuned_on"] == 1].set_index("n_tasks")
    assert list(tuned_on_one.index) == [1, 2, 3] and set(tuned_on_one["hyperparameters"]) == {LOW}
    assert list(tuned_on_one["score"]) == pytest.approx([0.85, 0.65, 0.4])
    tuned_on_two = result[result["tuned_on"] == 2].set_index("n_tasks")
    assert list(tuned_on_two.index) == [2, 3] and set(tuned_on_two["hyperparameters"]) == {HIGH}
    assert list(tuned_on_two["score"]) == pytest.approx([0.6, 0.5])


def test_bad_arguments():
    with pytest.raises(ValueError, match="scope"):
        subset_scores(table(SCORES), scope="some")
    with pytest.raises(ValueError, match="tuned_on"):
        validation_free(table(SCORES), TASKS, tuned_on=(4,))
    with pytest.raises(ValueError, match="lack column"):
        subset_scores(pd.DataFrame({"run_id": []}))


def test_every_table_carries_the_setting_as_typed_columns():
    records = table(SCORES)
    for result in (subset_scores(records), best_per_subset(records), best_per_size(records),
                   validation_free(records, TASKS, tuned_on=(1,))):
        assert result["alpha"].dtype == float
        assert list(result["alpha"]) == [0.2 if text == LOW else 0.8 for text in result["hyperparameters"]]


def test_a_hyperparameter_named_like_a_column_gets_a_prefix():
    dare = '{"alpha": 0.5, "p": 0.9, "seed": 3}'
    records = table({(dare, "a", "val"): 0.5, (dare, "a", "test"): 0.4}).assign(seed=0)
    best = best_per_subset(records)
    assert best["param_seed"].tolist() == [3] and "seed" not in best.columns
    assert records["param_seed"].unique().tolist() == [3] and records["seed"].unique().tolist() == [0]
