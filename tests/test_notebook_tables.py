"""Tables that one notebook saves and a later one reads: whole files, of the same run."""

from __future__ import annotations

import pandas as pd
import pytest

from breadcrumbs_lib import workbook


def _notebook(tmp_path, name: str, seed: int = 0):
    return workbook.start(name, preset="smoke", seed=seed, executor="inline", outputs_root=tmp_path,
                          cache_dir=tmp_path / "cache")


def test_a_table_saved_by_one_notebook_is_read_by_another_of_the_same_run(tmp_path):
    table = pd.DataFrame({"method": ["fisher", "breadcrumbs"], "seconds": [2.5, 0.1], "size": "B-32", "seed": 0})
    path = _notebook(tmp_path, "08-ablations").save_table(table, "costs")
    assert path.name == "08-ablations-costs.csv" and not list(path.parent.glob("*.partial"))
    pd.testing.assert_frame_equal(_notebook(tmp_path, "11-summary").read_table("08-ablations", "costs"), table)


def test_reading_a_table_of_another_seed_or_a_missing_one_says_what_to_run(tmp_path):
    table = pd.DataFrame({"method": ["fisher"], "size": ["B-32"], "seed": [0]})
    _notebook(tmp_path, "08-ablations").save_table(table, "costs")
    with pytest.raises(ValueError, match=r"seed is \[0\], this run's is 1; run notebook 08-ablations first"):
        _notebook(tmp_path, "11-summary", seed=1).read_table("08-ablations", "costs")
    with pytest.raises(FileNotFoundError, match="run notebook 08-ablations first"):
        _notebook(tmp_path, "11-summary").read_table("08-ablations", "other")
