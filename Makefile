# Two entry points, both self-contained on a fresh machine:
#   make main   - the most complete end-to-end job the package can run
#   make test   - the test suite (what .ci/run calls)
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

$(VENV)/.installed: setup.cfg pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e ".[dev]"
	touch $@

.PHONY: main test
main: $(VENV)/.installed
	$(VENV)/bin/spacy-electra demo --output training/demo

test: $(VENV)/.installed
	$(PY) -m pytest -q tests
