# Two entry points, both self-contained on a fresh machine:
#   make main   - the main job: the `demo` workflow of project.yml (raw text -> packaged, evaluated pipeline)
#                 on the data committed under data/demo; VARS="--vars.NAME VALUE ..." overrides project.yml vars
#   make test   - the test suite (what .ci/run calls)
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

$(VENV)/.installed: setup.cfg pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e ".[dev,ray,onnx]"
	touch $@

.PHONY: main test lint fast
main: $(VENV)/.installed
	$(PY) -m spacy project run demo . $(VARS)

# The linter and the type checker run first, on the package: CI fails on either.
lint: $(VENV)/.installed
	$(PY) -m ruff check spacy_electra
	$(PY) -m mypy

test: lint
	$(PY) -m pytest -q --durations=15 tests

# The development subset: everything but the end-to-end tests marked slow (about 3 minutes).
fast: $(VENV)/.installed
	$(PY) -m pytest -q -m "not slow" tests
