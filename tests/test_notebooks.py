"""The notebooks: stored clean, parameterised, and runnable by papermill with overrides.

(Every notebook is also executed by nbval, as a copy with the smoke parameters injected: see
notebooks/conftest.py.)
"""

from __future__ import annotations

import os

import nbformat
import pandas as pd
import pytest

from breadcrumbs_lib.workbook import runner
from breadcrumbs_lib.paths import PROJECT_ROOT
from breadcrumbs_lib.workbook.notebook import markdown_table

NOTEBOOKS = runner.notebooks()


def test_the_sequence_is_numbered_and_complete():
    assert [path.name[:2] for path in NOTEBOOKS] == [f"{i:02d}" for i in range(1, 12)]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebooks_are_stored_without_outputs_and_have_a_parameters_cell(path):
    notebook = nbformat.read(path, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    dirty = [index for index, cell in enumerate(code) if cell.outputs or cell.execution_count is not None]
    assert not dirty, f"{path.name}: code cells {dirty} hold outputs; clear them before committing"
    tagged = [cell for cell in code if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1 and "preset = " in tagged[0].source, f"{path.name}: needs one 'parameters' cell"
    assert notebook.cells[0].cell_type == "markdown" and notebook.cells[0].source.startswith("# ")


def test_smoke_copies_carry_the_smoke_parameters_right_after_the_parameters_cell(tmp_path):
    for original, copy in zip(NOTEBOOKS, runner.prepare_smoke_copies(tmp_path)):
        cells = nbformat.read(copy, as_version=4).cells
        tags = [cell.metadata.get("tags", []) for cell in cells]
        position = next(index for index, tag in enumerate(tags) if "parameters" in tag)
        assert "injected-parameters" in tags[position + 1], copy.name
        assert 'preset = "smoke"' in cells[position + 1].source and 'executor = "inline"' in cells[position + 1].source
        assert len(cells) == len(nbformat.read(original, as_version=4).cells) + 1
        assert nbformat.read(original, as_version=4).metadata.kernelspec.name == runner.KERNEL_NAME


def test_the_smoke_grids_name_parameters_their_notebooks_have():
    by_number = {path.name[:2]: path for path in NOTEBOOKS}
    for number, grids in runner.SMOKE_GRIDS.items():
        cell = next(cell for cell in nbformat.read(by_number[number], as_version=4).cells
                    if "parameters" in cell.metadata.get("tags", []))
        assigned = {line.split("=")[0].strip() for line in cell.source.splitlines() if "=" in line}
        assert set(grids) <= assigned, f"{by_number[number].name}: no parameter(s) {sorted(set(grids) - assigned)}"


def test_parameters_pass_through_papermill(tmp_path):
    """papermill -p on the breadcrumbs notebook: other beta and gamma reach the masks."""
    import papermill

    executed = tmp_path / "03.ipynb"
    papermill.execute_notebook(str(NOTEBOOKS[2]), str(executed), parameters={**runner.SMOKE_PARAMETERS, "beta": 0.5, "gamma": 0.1},
                               kernel_name="python3", cwd=str(NOTEBOOKS[2].parent), progress_bar=False)
    notebook = nbformat.read(executed, as_version=4)
    injected = [cell for cell in notebook.cells if "injected-parameters" in cell.metadata.get("tags", [])]
    assert injected and "beta = 0.5" in injected[0].source
    layers = pd.read_csv(PROJECT_ROOT / "outputs" / "smoke" / "tables" / "03-breadcrumbs-layers-digits.csv")
    large = layers[layers["entries"] >= 1000]
    assert (abs(large["kept_share"] - 0.4) < 0.01).all()


def test_runner_reads_parameters_like_papermill(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("seed: 3\nalphas: [0.1, 0.2]\n")
    parsed = runner.parse_parameters([["beta", "0.5"], ["executor", "inline"], ["sizes", '["B-32", "L-14"]'],
                                               ["workers", "None"]], [str(params)])
    assert parsed == {"seed": 3, "alphas": [0.1, 0.2], "beta": 0.5, "executor": "inline", "sizes": ["B-32", "L-14"],
                      "workers": None}
    with pytest.raises(SystemExit, match="no notebook matches"):
        runner.run("smoke", {}, only=["42"], outputs_root=tmp_path)
    with pytest.raises(SystemExit, match="missing.yaml: no such file"):
        runner.parse_parameters([], [str(tmp_path / "missing.yaml")])
    (tmp_path / "broken.yaml").write_text("alphas: [0.1\n")
    with pytest.raises(SystemExit, match="broken.yaml: not valid YAML"):
        runner.parse_parameters([], [str(tmp_path / "broken.yaml")])
    with pytest.raises(SystemExit, match="-p sizes: not valid YAML"):
        runner.parse_parameters([["sizes", "[B-32"]], [])


def _notebook(path, source):
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["parameters"]}),
                      nbformat.v4.new_code_cell(source)]
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, path)


def test_the_runner_stops_at_the_first_failing_notebook_and_keeps_it(tmp_path, capsys):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    _notebook(folder / "01-fine.ipynb", "import os\nprint('x is', x, 'outputs at', os.environ['BREADCRUMBS_OUTPUTS'])")
    _notebook(folder / "02-broken.ipynb", "raise RuntimeError('broken on purpose')")
    _notebook(folder / "03-never.ipynb", "print('never')")
    assert runner.run("smoke", {"x": 5}, outputs_root=tmp_path / "outputs", folder=folder) is False
    executed = tmp_path / "outputs" / "smoke" / "notebooks"
    assert sorted(path.name for path in executed.iterdir()) == ["01-fine.ipynb", "02-broken.ipynb"]
    assert f"x is 5 outputs at {tmp_path / 'outputs'}" in (executed / "01-fine.ipynb").read_text()
    assert "BREADCRUMBS_OUTPUTS" not in os.environ  # restored after the run
    assert "broken on purpose" in (executed / "02-broken.ipynb").read_text()
    printed = capsys.readouterr().out
    assert "[2/3] 02-broken FAILED" in printed and str(executed / "02-broken.ipynb") in printed


def test_opt_in_notebooks_run_only_when_asked_for(tmp_path, monkeypatch):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    for name in ("01-first", "10-long", "11-last"):
        _notebook(folder / f"{name}.ipynb", "print('ran')")
    monkeypatch.setattr(runner, "OPT_IN", ("10",))
    executed = tmp_path / "outputs" / "smoke" / "notebooks"
    assert runner.run("smoke", {}, outputs_root=tmp_path / "outputs", folder=folder)
    assert sorted(path.name for path in executed.iterdir()) == ["01-first.ipynb", "11-last.ipynb"]
    assert runner.run("smoke", {}, outputs_root=tmp_path / "outputs", folder=folder, only=["10"])
    assert (executed / "10-long.ipynb").exists()


def test_markdown_table():
    table = pd.DataFrame({"model": ["a", "b"], "accuracy (%)": [50.0, 61.25]})
    assert markdown_table(table) == "| model | accuracy (%) |\n|---|---|\n| a | 50.0 |\n| b | 61.2 |"


@pytest.mark.parametrize("path", [path for path in NOTEBOOKS if not path.name.startswith("10-")], ids=lambda p: p.name[:2])
def test_the_vision_notebooks_take_the_paper_presets_weights_and_download(path):
    cells = nbformat.read(path, as_version=4).cells
    parameters = next(cell.source for cell in cells if "parameters" in cell.metadata.get("tags", []))
    assert "\nweights = None " in parameters and "\ndownload = False " in parameters
    assert any("weights=weights, download=download)" in cell.source for cell in cells if cell.cell_type == "code")


def test_weights_and_download_reach_the_sweep_workers(tmp_path):
    from breadcrumbs_lib.workbook.notebook import start

    nb = start("04-merging", preset="smoke", executor="inline", outputs_root=tmp_path, weights="/w/ViT-B-32.pt",
               download=True)
    context = nb.context()
    assert context.weights == (("B-32", "/w/ViT-B-32.pt"),) and context.download is True
