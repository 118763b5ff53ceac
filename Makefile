# The two commands of the README:
#   make run    the main job: every notebook, in order, through papermill, on the mini preset
#               (outputs/mini/); pass papermill parameters with ARGS, e.g.
#               make run ARGS="-p seed 1"   or   make run ARGS="--preset paper -f params.yaml"
#   make test   the test suite
# Also: make bench (the benchmarks: merge speed, mini from scratch, the 255-subset sweep, model sizes).
# Both create a project-local virtual environment in .venv on first use and reuse it after;
# it is rebuilt when pyproject.toml changes.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test bench clean-venv

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	touch $(STAMP)

ARGS ?=

run: $(STAMP)
	$(PY) -m breadcrumbs_lib.notebook_runner --preset mini $(ARGS)

bench: $(STAMP)
	$(PY) benchmarks/bench_merge.py
	$(PY) benchmarks/bench_mini.py
	$(PY) benchmarks/bench_sweep.py
	$(PY) benchmarks/bench_sizes.py

test: $(STAMP)
	$(PY) -m pytest

clean-venv:
	rm -rf $(VENV)
