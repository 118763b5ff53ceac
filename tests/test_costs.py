"""The cost table of merge methods: what each needs, measured on a tiny world, and carried over
to another architecture."""

from __future__ import annotations

import pandas as pd
import pytest
from tiny_preset import TINY

from breadcrumbs_lib.modeling.fisher import FisherConfig
from breadcrumbs_lib.study.costs import PARTS, estimate_for_architecture, measure_costs, totals
from breadcrumbs_lib.worlds.prepare import prepare

SETTINGS = {"task_arithmetic": {"alpha": 0.3}, "breadcrumbs": {"alpha": 0.3, "beta": 0.85, "gamma": 0.01},
            "ties": {"alpha": 0.5, "density": 0.2}, "fisher": {"alpha": 1.0}}


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    bench = prepare(TINY, "B-32", tasks=["signs", "letters"], cache_dir=tmp_path_factory.mktemp("cache"), device="cpu")
    return bench, measure_costs(bench, SETTINGS)


def test_only_fisher_merging_reads_task_data(measured):
    bench, parts = measured
    assert list(parts.columns) == PARTS and list(parts["method"]) == list(SETTINGS)
    by_method = parts.set_index("method")
    assert (by_method.loc[["task_arithmetic", "breadcrumbs", "ties"], "examples per model"] == 0).all()
    assert (by_method.loc[["task_arithmetic", "breadcrumbs", "ties"], "data seconds per model"] == 0).all()
    assert by_method.loc["fisher", "examples per model"] == TINY.fisher.examples
    assert by_method.loc["fisher", "data seconds per model"] == pytest.approx(
        sum(bench.fisher_seconds.values()) / 2)
    assert (parts["merge seconds to build"] > 0).all() and (parts["merge seconds to add one"] > 0).all()
    # without an additive form, adding a task is merging everything again: the same measurement
    assert by_method.loc["ties", "merge seconds to add one"] == by_method.loc["ties", "merge seconds to build"]


def test_totals_add_one_fisher_per_model_to_the_merge():
    parts = pd.DataFrame([["fisher", 8, 100, 2.0, 0.5, 0.4], ["ties", 8, 0, 0.0, 0.3, 0.3]], columns=PARTS)
    table = totals(parts).set_index("method")
    assert table.loc["fisher", "examples to build"] == 800 and table.loc["fisher", "examples to add one"] == 100
    assert table.loc["fisher", "seconds to build"] == pytest.approx(16.5)
    assert table.loc["fisher", "seconds to add one"] == pytest.approx(2.4)
    assert table.loc["ties", "seconds to build"] == pytest.approx(0.3) and table.loc["ties", "examples to build"] == 0


def test_an_estimate_times_each_method_on_the_architecture_and_scales_it_to_the_tasks():
    estimate, factors = estimate_for_architecture(SETTINGS, model_name=TINY.model_name("B-32"), tasks=8,
                                                  fisher=FisherConfig(examples=50), timed_models=2, timed_examples=2)
    assert list(estimate.columns) == PARTS and list(estimate["method"]) == list(SETTINGS)
    by_method = estimate.set_index("method")
    assert (by_method["tasks"] == 8).all() and (by_method["merge seconds to build"] > 0).all()
    assert factors["Fisher seconds per example"] > 0 and factors["entries"] > 0
    assert by_method.loc["fisher", "examples per model"] == 50 and by_method.loc["ties", "examples per model"] == 0
    assert by_method.loc["fisher", "data seconds per model"] == pytest.approx(50 * factors["Fisher seconds per example"])
    assert by_method.loc["ties", "merge seconds to add one"] == by_method.loc["ties", "merge seconds to build"]


def test_bad_counts_are_refused():
    with pytest.raises(ValueError, match="timed_models=1"):
        estimate_for_architecture(SETTINGS, model_name=TINY.model_name("B-32"), tasks=8, fisher=FisherConfig(),
                                  timed_models=1)
