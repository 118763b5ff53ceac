"""The workbook's figures: what a reader sees in the legends, scales and reference lines."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from breadcrumbs_lib.core.methods import METHODS  # noqa: E402
from breadcrumbs_lib.workbook import plots  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def _legend_texts(fig) -> set[str]:
    return {text.get_text() for ax in fig.axes if ax.get_legend() for text in ax.get_legend().get_texts()}


def test_legends_show_display_names_in_the_specs_colours():
    best = pd.DataFrame({"method": ["task_arithmetic", "breadcrumbs"] * 2, "n_tasks": [1, 1, 2, 2],
                         "score": [0.9, 0.8, 0.7, 0.75]})
    fig = plots.subsets_by_size(best, "title")
    assert {"task arithmetic", "Breadcrumbs"} <= _legend_texts(fig)
    assert not {"task_arithmetic", "breadcrumbs"} & _legend_texts(fig)
    assert plots.METHOD_COLORS[METHODS["breadcrumbs"].display_name] == METHODS["breadcrumbs"].color


def test_validation_free_marks_the_fine_tuned_level():
    result = pd.DataFrame({"method": ["task_arithmetic"] * 2, "tuned_on": [1, 1], "n_tasks": [1, 2],
                           "score": [1.0, 0.8]})
    fig = plots.validation_free(result, "title")
    assert any(tuple(line.get_ydata()) == (1.0, 1.0) for line in fig.axes[0].get_lines())
    assert "task arithmetic" in _legend_texts(fig)


def test_heatmap_panels_share_one_colour_scale():
    first = pd.DataFrame([[1.0, 0.2], [0.2, 1.0]])
    second = pd.DataFrame([[1.0, -0.1], [-0.1, 1.0]])
    fig = plots.heatmaps({"a": first, "b": second}, "title")
    limits = {ax.collections[0].get_clim() for ax in fig.axes if ax.get_title() in {"a", "b"}}
    assert limits == {(-0.1, 1.0)}
