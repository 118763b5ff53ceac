# The three commands of the README:
#   make run    the main job: every notebook, in order, through papermill, on the mini preset
#               (outputs/mini/); pass papermill parameters with ARGS, e.g.
#               make run ARGS="-p seed 1"   or   make run ARGS="--preset paper -f params.yaml"
#   make test   the test suite
#   make lab    JupyterLab on notebooks/, to open and run a notebook by hand
# Also: make bench (the benchmarks: merge speed, mini from scratch, the 255-subset sweep, model sizes).
# All three create a project-local virtual environment in .venv on first use and reuse it after;
# it is rebuilt when pyproject.toml changes.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test lab bench clean-venv

# A new .venv takes about 6,500 MiB (6,653,708 KiB measured): torch 2.14.1 from PyPI is a CUDA
# build whose nvidia-* and triton wheels make up 4 GiB of it, even on a CPU-only machine.
# With less free space than this, pip would fail halfway: say so before starting.
VENV_MIB := 6650

$(STAMP): pyproject.toml
	@if [ ! -d $(VENV) ]; then \
	  free_mib=$$(df -Pm . | awk 'NR == 2 {print $$4}'); \
	  if [ "$$free_mib" -lt $(VENV_MIB) ]; then \
	    echo "make: $(VENV) needs about $(VENV_MIB) MiB of disk (torch's CUDA build), but only" \
	         "$$free_mib MiB are free on $$(df -P . | awk 'NR == 2 {print $$6}')." \
	         "Free some space and run the command again." >&2; \
	    exit 1; \
	  fi; \
	fi
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	$(PY) -m ipykernel install --sys-prefix --name breadcrumbs-workbook \
	  --display-name "Python (breadcrumbs-workbook)" > /dev/null
	touch $(STAMP)

ARGS ?=

run: $(STAMP)
	$(PY) -m breadcrumbs_lib.workbook.runner --preset mini $(ARGS)

bench: $(STAMP)
	$(PY) benchmarks/bench_merge.py
	$(PY) benchmarks/bench_mini.py
	$(PY) benchmarks/bench_sweep.py
	$(PY) benchmarks/bench_sizes.py

test: $(STAMP)
	$(PY) -m pytest

# JupyterLab on the notebooks; they select the kernel breadcrumbs-workbook (this .venv), registered above
lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/

clean-venv:
	rm -rf $(VENV)
