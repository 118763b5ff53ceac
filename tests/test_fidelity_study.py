"""The claims-table measurements of one world, on the tiny preset (three tasks, small grids)."""

from __future__ import annotations

import sqlite3

import pytest
from tiny_preset import TINY_TASKS, tiny_context

from breadcrumbs_lib.study import fidelity
from breadcrumbs_lib.study.fidelity_study import StudyGrids, measure
from breadcrumbs_lib.worlds.mini.tasks import MINI_TASKS
from breadcrumbs_lib.study.results_store import ResultsStore
from breadcrumbs_lib.study.sweeps import InlineExecutor

GRIDS = StudyGrids(alphas=(0.3, 0.6), coarse_alphas=(0.5, 1.0), betas=(0.5, 0.85), gammas=(0.0, 0.01),
                   ties_alphas=(0.5,), ties_densities=(0.2,))


def _records(path) -> int:
    with sqlite3.connect(path) as connection:
        return connection.execute("SELECT COUNT(*) FROM records").fetchone()[0]


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    folder = tmp_path_factory.mktemp("study")
    store_path = folder / "results.sqlite"
    context = tiny_context(folder / "cache")
    first = measure(context, store=ResultsStore(store_path), grids=GRIDS, executor=InlineExecutor(), progress=False)
    records = _records(store_path)
    second = measure(context, store=ResultsStore(store_path), grids=GRIDS, executor=InlineExecutor(), progress=False)
    return first, second, records, _records(store_path)


def test_every_claim_can_be_checked_but_scale(measured):
    first, *_ = measured
    table = fidelity.claims_table(first)
    assert {claim.name for claim in fidelity.CLAIMS} - set(table["claim"]) == {
        next(claim.name for claim in fidelity.CLAIMS if claim.measure == "scale_steps")}


def test_the_gaps_are_differences_of_the_measured_scores(measured):
    m, *_ = measured
    assert m["gap_tuned"] == pytest.approx(m["breadcrumbs"] - m["task_arithmetic"])
    assert m["gap_85"] == pytest.approx(m["breadcrumbs_85"] - m["task_arithmetic"])
    assert m["gap_ties"] == pytest.approx(m["ties"] - m["task_arithmetic"])
    assert m["gap_growth"] == pytest.approx(m["gap_85"] - m["gap_pairs"])
    assert m["gap_low"] <= m["gap_high"] and m["gap_half_width"] == pytest.approx((m["gap_high"] - m["gap_low"]) / 2)
    assert 0 <= m["zero_shot"] <= 1 and 0 <= m["finetuned"] <= 1 and m["retention"] >= 0
    assert m["chance"] == pytest.approx(sum(1 / MINI_TASKS[t].num_classes for t in TINY_TASKS) / len(TINY_TASKS))
    assert m["relative_norm"] > 0


def test_a_second_measurement_reads_the_store_back(measured):
    first, second, records, records_after = measured
    assert records_after == records
    assert first == pytest.approx(second, nan_ok=True)
