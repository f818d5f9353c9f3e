# The user interface of the repository. `make demo` and `make test` set everything up.
SHELL := /bin/bash
UV_VERSION := 0.13.9
VENV := .venv
RUN := $(VENV)/bin
export UV_PYTHON := 3.11

.PHONY: help setup demo test lint format bench clean

UV := python3 -m uv

$(VENV)/.synced: pyproject.toml uv.lock
	@$(UV) --version >/dev/null 2>&1 || python3 -m pip install --quiet "uv==$(UV_VERSION)"
	$(UV) sync --frozen --extra bgnbd
	@touch $@

## help: list the targets
help:
	@grep -E '^## [a-z-]+:' $(MAKEFILE_LIST) | sed -E 's/^## ([a-z-]+): /  make \1\t/' | expand -t 16

## setup: create .venv/ with the locked dependencies (idempotent)
setup: $(VENV)/.synced

## demo: the whole pipeline on the embedded Complete Journey data (DEMO_ARGS="--port 3001 ...")
demo: setup
	$(RUN)/python -m crmscore.demo $(DEMO_ARGS)

## test: lint, types and the test suite
test: setup lint
	$(RUN)/pytest

## lint: ruff (lint + format check) and mypy
lint: setup
	$(RUN)/ruff check .
	$(RUN)/ruff format --check .
	$(RUN)/mypy crmscore features training serving monitoring benchmarks

## format: ruff format and autofix
format: setup
	$(RUN)/ruff format .
	$(RUN)/ruff check --fix .

## bench: every benchmark (figures go to BENCHMARKS.md by hand)
bench: setup
	$(RUN)/python benchmarks/features.py
	$(RUN)/python benchmarks/training.py
	$(RUN)/python benchmarks/batch.py
	$(RUN)/python benchmarks/serving.py
	$(RUN)/python benchmarks/monitoring.py

## clean: remove .venv, the workspace and the tool caches
clean:
	rm -rf $(VENV) workspace .pytest_cache .mypy_cache .ruff_cache
