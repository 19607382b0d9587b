# `make run` and `make test` do all set-up on a fresh machine.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint check services bench clean proto

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

# The gRPC binding's descriptors, compiled from the .proto files written for andon (the
# result, andon/grpc_binding/descriptors.pb, is committed: installing needs no protoc).
proto: $(STAMP)
	$(BIN)/python -m grpc_tools.protoc -I . --include_imports \
		--descriptor_set_out=andon/grpc_binding/descriptors.pb \
		andon/grpc_binding/a2a.proto andon/grpc_binding/status.proto

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
