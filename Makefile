# The habits CI runs unchanged. `make serve` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# `make serve` listens on PORT when given (`make serve PORT=9000`, or PORT in the
# environment); else `genai-jobs serve` reads GENAI_JOBS_PORT itself, and defaults to 8080.
PORT ?=

.PHONY: serve test bench lint typecheck unit install install-dev clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install --quiet -e .

install-dev: $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev,embeddings,ann]'

## Install and start the service on the embedded SQLite store (./genai-jobs.db).
serve: install
	$(BIN)/genai-jobs serve $(if $(PORT),--port $(PORT))

lint: install-dev
	$(BIN)/ruff check src tests

typecheck: install-dev
	$(BIN)/mypy

unit: install-dev
	$(BIN)/pytest

## Install everything and run the whole suite: lint, types, tests.
test: install-dev
	$(BIN)/ruff check src tests
	$(BIN)/mypy
	$(BIN)/pytest

## Measure genai-jobs beside Celery, RQ and Procrastinate; writes BENCHMARKS.md.
bench: $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev,embeddings,bench]'
	@command -v wrk >/dev/null || echo "wrk is not installed: the status GET section needs it (apt-get install wrk)"
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache src/*.egg-info
