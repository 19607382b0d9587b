# `make run` and `make test` do all set-up on a fresh machine.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint check services bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

# ARGS: more options of `andon serve`, e.g. make run ARGS="--port 8001 --on-disconnect cancel"
run: $(STAMP)
	$(BIN)/andon serve $(ARGS)

services:
	@scripts/ensure-services.sh

lint: $(STAMP)
	$(BIN)/ruff check andon tests bench examples
	$(BIN)/ruff format --check andon tests bench examples
	$(BIN)/mypy

test: $(STAMP) services lint
	$(BIN)/pytest -q

# andon side by side with a2a-sdk and Bindu (creates their venvs under bench/.venvs on
# first use) and writes docs/BENCHMARKS.md's comparison section; see bench/compare.py.
bench: $(STAMP)
	$(BIN)/python -m bench.compare

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
