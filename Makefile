# The two commands of the README:
#   make run    the main job (for now: the mini preset end to end, with its table; later: every
#               notebook via papermill)
#   make test   the test suite
# Also: make bench (both benchmarks, timed from scratch).
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

run: $(STAMP)
	$(PY) benchmarks/bench_mini.py --cache data/cache

bench: $(STAMP)
	$(PY) benchmarks/bench_merge.py --repeats 7
	$(PY) benchmarks/bench_mini.py

test: $(STAMP)
	$(PY) -m pytest

clean-venv:
	rm -rf $(VENV)
