# Two commands do all the set-up on a fresh machine:
#   make demo   simulate a cohort, ingest, train, score, report (the main job)
#   make test   the test suite CI runs
# Both create or refresh the virtual environment in $(VENV) from pyproject.toml.

VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.sozkit-installed
PYTEST_ARGS ?= -m "not slow and not gpu"
DEMO_ARGS ?=

.PHONY: venv demo test test-all lint bench clean

venv: $(STAMP)

# torch first, from the CPU wheel (an open range would pull a multi-GB CUDA build), then the rest.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "torch==2.13.0"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

demo: venv
	$(BIN)/soz demo $(DEMO_ARGS)

test: venv
	RAY_AUTH_MODE=disabled $(BIN)/python -m pytest $(PYTEST_ARGS)

test-all: venv
	RAY_AUTH_MODE=disabled $(BIN)/python -m pytest -m "not gpu"

lint: venv
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

# Every benchmark (tens of minutes: the ingest one writes 4.5 GB of EDF under /tmp).
bench: venv
	for b in simulate ingest beam_runners training neural_models gpu serving abuse accuracy demo; do \
	  $(BIN)/python -m benchmarks.$$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache
